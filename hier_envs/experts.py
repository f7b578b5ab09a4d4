"""``make_expert``: the expert policy of any hier-envs environment."""

from __future__ import annotations

import sys
from typing import Any, Protocol

import gymnasium as gym
import numpy as np

from hier_envs.grid.env import HierGridEnv
from hier_envs.grid.expert import BatchedGridExpert, GridExpert
from hier_envs.grid.vector import HierGridVectorEnv


class Expert(Protocol):
    """A policy that may read the env's internal state."""

    def act(self, obs: np.ndarray, info: dict[str, Any]) -> Any: ...


def make_expert(
    env: gym.Env | gym.vector.VectorEnv,
    eps: float = 0.0,
    seed: int | None = None,
    sample: bool = False,
    ties: str = "uniform",
) -> Expert:
    """The expert of ``env`` (a single env; for the grid, its ``vector_entry_point`` batch;
    for the ant, its ``sync`` batch, whose expert returns ``(num_envs, 8)`` torques; or a
    ``hier_envs.multiagent.pinpad_v0`` env, parallel or AEC, whose expert's ``act`` returns
    a dict of actions, one per agent).

    Grid: ``eps`` is the probability of a random action that does not fail the task;
    ``ties`` picks among equally short moves: ``"uniform"`` (the paper's) or ``"ordered"``
    (the first in action order, a deterministic expert).
    Ant: the shipped walker acts with its Gaussian mean, or samples when ``sample``.
    ``seed`` seeds the expert's own choices (ties between optimal moves, exploration).
    """
    base = env.unwrapped
    if isinstance(base, HierGridEnv):
        return GridExpert(base, eps, seed, ties)
    if isinstance(base, HierGridVectorEnv):
        return BatchedGridExpert(base, eps, seed, ties)
    if ties != "uniform":
        raise ValueError("ties applies to the grid expert only.")
    team_env = sys.modules.get("hier_envs.multiagent.env")  # loaded iff a PettingZoo env exists
    if team_env is not None and isinstance(base, team_env.PinpadParallelEnv):
        from hier_envs.multiagent.expert import TeamExpert

        if eps or sample:
            raise ValueError("The multi-agent pinpad expert takes only a seed (no eps, no sample).")
        return TeamExpert(base, seed)
    ant_env = sys.modules.get(
        "hier_envs.ant.env"
    )  # loaded iff an ant exists: grid users skip MuJoCo
    ants = _ant_batch(base, ant_env)
    if ant_env is not None and (isinstance(base, ant_env.HierAntEnv) or ants):
        from hier_envs.ant.expert import AntExpert, BatchedAntExpert

        if eps:
            raise ValueError("eps applies to the grid expert; for HierAnt-v0 use sample=True.")
        if ants:
            return BatchedAntExpert(ants, sample=sample, seed=seed)
        return AntExpert(base, sample=sample, seed=seed)
    raise TypeError(
        f"No expert for {type(base).__name__}: make_expert takes a hier-envs env made with "
        "gym.make, a grid batch made with "
        "gym.make_vec(..., vectorization_mode='vector_entry_point'), an ant batch made with "
        "gym.make_vec(..., vectorization_mode='sync') "
        "or a hier_envs.multiagent.pinpad_v0 env."
    )


def _ant_batch(env: Any, ant_env: Any) -> list:
    """The HierAntEnvs of a ``SyncVectorEnv`` of ants, else an empty list."""
    if ant_env is None or not isinstance(env, gym.vector.SyncVectorEnv):
        return []
    ants = [sub.unwrapped for sub in env.envs]
    return ants if all(isinstance(a, ant_env.HierAntEnv) for a in ants) else []
