"""The gridworld expert of the paper: exact shortest paths, uniform over optimal moves.

With probability ``eps`` the expert instead takes a random action among those that do
not end the episode in failure (moves onto a wrong colour are never taken).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hier_envs.grid.core import shortest_path, shortest_paths
from hier_envs.grid.env import NUM_ACTIONS, HierGridEnv
from hier_envs.grid.vector import HierGridVectorEnv


def _check_eps(eps: float) -> float:
    if not 0.0 <= eps <= 1.0:
        raise ValueError(f"eps must be a probability in [0, 1], got {eps!r}.")
    return float(eps)


class GridExpert:
    """Shortest-path expert for one :class:`HierGridEnv`; reads the env's layout."""

    def __init__(self, env: HierGridEnv, eps: float = 0.0, seed: int | None = None) -> None:
        self.env = env
        self.eps = _check_eps(eps)
        self.rng = np.random.default_rng(seed)

    def act(self, obs: np.ndarray | None = None, info: dict[str, Any] | None = None) -> int:
        """An optimal action for the env's current state (or, w.p. ``eps``, a safe one)."""
        env = self.env
        if env.layout is None:
            raise RuntimeError("Reset the env before asking the expert for an action.")
        if self.eps and self.rng.random() < self.eps:
            choices = self.safe_actions()
        else:
            choices = self.optimal_actions()
        return choices[self.rng.integers(len(choices))] if choices else int(self.rng.integers(4))

    def optimal_actions(self) -> list[int]:
        """The actions on a shortest path to the next colour of the task."""
        env, geometry = self.env, self.env.config.geometry
        layout = env.layout
        task = layout.task
        target = 1 << layout.colours[task[min(env.progress, len(task) - 1)]]
        occupied = sum(1 << c for c in layout.walls + layout.colours)
        _, next_cells = shortest_path(
            1 << env.agent_cell, target, geometry.full ^ occupied, geometry
        )
        moves = geometry.move_lists[env.agent_cell]
        return [a for a in range(NUM_ACTIONS) if (next_cells >> moves[a]) & 1]

    def safe_actions(self) -> list[int]:
        """The actions that do not step onto a wrong colour."""
        env = self.env
        layout, cell = env.layout, env.agent_cell
        task = layout.task
        wanted = layout.colours[task[min(env.progress, len(task) - 1)]]
        moves = env.config.geometry.move_lists[cell]
        forbidden = set(layout.colours) - {wanted}
        return [a for a in range(NUM_ACTIONS) if moves[a] == cell or moves[a] not in forbidden]


class BatchedGridExpert:
    """The same expert for every env of a :class:`HierGridVectorEnv`, in numpy."""

    def __init__(
        self, env: HierGridVectorEnv, eps: float = 0.0, seed: int | None = None
    ) -> None:
        self.env = env
        self.eps = _check_eps(eps)
        self.rng = np.random.default_rng(seed)

    def act(self, obs: np.ndarray | None = None, info: dict[str, Any] | None = None) -> np.ndarray:
        """One action per env, shape ``(num_envs,)``."""
        env = self.env
        config, geometry = env.config, env.config.geometry
        rows = np.arange(env.num_envs)
        cells = np.concatenate([env.cells[:, :-1], env.agent_cell[:, None]], axis=1)
        bits = np.left_shift(np.uint64(1), cells.astype(np.uint64))  # walls, colours, agent
        w, o = config.num_walls, config.num_colors
        colour_bits = bits[:, w : w + o]
        empty = geometry.full ^ np.bitwise_or.reduce(bits[:, : w + o], axis=1)
        wanted = env.tasks[rows, np.minimum(env.progress, config.task_length - 1)]
        target = colour_bits[rows, wanted]
        _, next_cells = shortest_paths(bits[:, -1], target, empty, geometry)
        destination = geometry.moves[env.agent_cell]  # (B, 4)
        on_path = (next_cells[:, None] >> destination.astype(np.uint64)) & np.uint64(1)
        allowed = on_path.astype(bool)
        if self.eps:
            explore = self.rng.random(env.num_envs) < self.eps
            if explore.any():
                colour = np.take_along_axis(env.colour_at, destination, axis=1)
                stays = destination == env.agent_cell[:, None]
                safe = stays | (colour < 0) | (colour == wanted[:, None])
                allowed[explore] = safe[explore]
        scores = self.rng.random((env.num_envs, NUM_ACTIONS)) * allowed
        return scores.argmax(axis=1)
