"""Gridworld-pinpad: the discrete environment of the paper."""

from hier_envs.grid.env import HierGridEnv
from hier_envs.grid.layout import GridConfig, Layout
from hier_envs.grid.vector import HierGridVectorEnv

__all__ = ["GridConfig", "HierGridEnv", "HierGridVectorEnv", "Layout"]
