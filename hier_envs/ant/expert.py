"""The HierAnt-v0 expert: a grid-level shortest-path planner driving a trained walker.

The planner finds the shortest grid path from the torso's cell to the next colour of
the task that avoids walls and other colours, and points the walker at the centre of
the path's next cell: the straight line from anywhere in a cell to the centre of a
neighbour stays within the two cells. The walker (``hier_envs.ant.walker``) turns that
world-frame direction into torques.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Sequence
from typing import Any

import numpy as np

from hier_envs.ant.env import HierAntEnv
from hier_envs.ant.walker import WalkerPolicy, walker_features
from hier_envs.grid.core import shortest_path

WALKER_WEIGHTS = "ant_walker.npz"
DAMPING = 0.25  # s/m: weight of the velocity across the aim line subtracted from the command


def load_walker() -> WalkerPolicy:
    """The walker weights shipped in ``assets/``."""
    return WalkerPolicy.load(importlib.resources.files("hier_envs.assets") / WALKER_WEIGHTS)


class AntExpert:
    """Planner + walker for one :class:`HierAntEnv`; reads the env's layout and state."""

    def __init__(
        self,
        env: HierAntEnv,
        walker: WalkerPolicy | None = None,
        sample: bool = False,
        seed: int | None = None,
    ) -> None:
        self.env = env
        self.walker = walker if walker is not None else load_walker()
        self.rng = np.random.default_rng(seed) if sample else None

    def act(self, obs: np.ndarray | None = None, info: dict[str, Any] | None = None) -> np.ndarray:
        """Torques in [-1, 1]: the walker's mean (or a sample when made with ``sample=True``)."""
        data = self.env.data
        features = walker_features(data.qpos[None], data.qvel[None], self.direction()[None])
        return self.walker.act(features, self.rng)[0].astype(np.float32)

    def direction(self) -> np.ndarray:
        """The world-frame unit vector the walker is told to follow: towards the centre of
        the next cell of the path, minus the velocity across that line, so that the ant
        does not drift into a neighbouring cell."""
        env = self.env
        if env.layout is None:
            raise RuntimeError("Reset the env before asking the expert for an action.")
        xy, velocity = env.data.qpos[:2], env.data.qvel[:2]
        heading = _unit(self._aim() - xy)
        across = velocity - np.dot(velocity, heading) * heading
        return _unit(heading - DAMPING * across)

    def _aim(self) -> np.ndarray:
        """The centre of the next cell on a shortest safe grid path to the next colour."""
        env = self.env
        layout, geometry = env.layout, env.config.geometry
        target = layout.next_colour_cell(env.progress)
        here = env.cell_of(env.data.qpos[:2])
        _, next_cells = shortest_path(
            1 << here, 1 << target, geometry.full ^ layout.occupied, geometry
        )
        options = [
            c
            for c in range(geometry.num_cells)
            if (next_cells >> c) & 1 and c in geometry.move_lists[here]
        ]
        centres = env.arena.centres
        xy = env.data.qpos[:2]
        aims = centres[options] if options else centres[[target]]
        return aims[np.argmin(np.linalg.norm(aims - xy, axis=1))]


class BatchedAntExpert:
    """The expert of many :class:`HierAntEnv` at once (e.g. a ``SyncVectorEnv``'s ``envs``):
    one planner per env, one walker call for the whole batch."""

    def __init__(
        self,
        envs: Sequence[HierAntEnv],
        walker: WalkerPolicy | None = None,
        sample: bool = False,
        seed: int | None = None,
    ) -> None:
        self.walker = walker if walker is not None else load_walker()
        self.experts = [AntExpert(env, self.walker) for env in envs]
        self.rng = np.random.default_rng(seed) if sample else None

    def act(self, obs: np.ndarray | None = None, info: dict[str, Any] | None = None) -> np.ndarray:
        """``(N, 8)`` torques in [-1, 1], one row per env (an env whose episode just ended
        gets its planner's aim too: the vector env ignores that action when it resets)."""
        states = [expert.env.data for expert in self.experts]
        features = walker_features(
            np.stack([data.qpos for data in states]),
            np.stack([data.qvel for data in states]),
            np.stack([expert.direction() for expert in self.experts]),
        )
        return self.walker.act(features, self.rng).astype(np.float32)


def _unit(vector: np.ndarray) -> np.ndarray:
    return vector / max(float(np.linalg.norm(vector)), 1e-6)
