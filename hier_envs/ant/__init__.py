"""Ant-pinpad: the continuous-control environment of the paper (MuJoCo)."""

from hier_envs.ant.env import HierAntEnv

__all__ = ["HierAntEnv"]
