"""The gridworld expert of the paper: exact shortest paths, uniform over optimal moves.

With ``ties="ordered"`` it takes instead the first optimal move in action order (up,
down, left, right): a deterministic expert, whose demonstrations carry no coin flips.

With probability ``eps`` the expert instead takes a uniformly random *safe* action: one
that neither steps onto a wrong colour nor walks into a dead end from which the next
colour can no longer be reached. Exploration therefore never fails the task by itself
(it may still run out of time).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hier_envs.grid.core import UNREACHABLE, shortest_path, shortest_paths
from hier_envs.grid.env import NUM_ACTIONS, HierGridEnv
from hier_envs.grid.vector import HierGridVectorEnv

TIES = ("uniform", "ordered")  # how the expert picks among equally short moves


def _check_eps(eps: float) -> float:
    if not 0.0 <= eps <= 1.0:
        raise ValueError(f"eps must be a probability in [0, 1], got {eps!r}.")
    return float(eps)


def _check_ties(ties: str) -> str:
    if ties not in TIES:
        raise ValueError(f"ties must be one of {TIES}, got {ties!r}.")
    return ties


class GridExpert:
    """Shortest-path expert for one :class:`HierGridEnv`; reads the env's layout."""

    def __init__(
        self, env: HierGridEnv, eps: float = 0.0, seed: int | None = None, ties: str = "uniform"
    ) -> None:
        self.env = env
        self.eps = _check_eps(eps)
        self.ties = _check_ties(ties)
        self.rng = np.random.default_rng(seed)

    def act(self, obs: np.ndarray | None = None, info: dict[str, Any] | None = None) -> int:
        """An optimal action for the env's current state (or, w.p. ``eps``, a safe one)."""
        if self.env.layout is None:
            raise RuntimeError("Reset the env before asking the expert for an action.")
        explore = self.eps and self.rng.random() < self.eps
        optimal = [] if explore else self.optimal_actions()
        if optimal and self.ties == "ordered":
            return optimal[0]
        choices = optimal or self.safe_actions()
        return choices[self.rng.integers(len(choices))] if choices else int(self.rng.integers(4))

    def _boards(self) -> tuple[int, int]:
        """The next colour's one-cell board and the board of empty cells."""
        layout = self.env.layout
        target = 1 << layout.next_colour_cell(self.env.progress)
        return target, self.env.config.geometry.full ^ layout.occupied

    def optimal_actions(self) -> list[int]:
        """The actions on a shortest path to the next colour of the task."""
        env, geometry = self.env, self.env.config.geometry
        target, empty = self._boards()
        _, next_cells = shortest_path(1 << env.agent_cell, target, empty, geometry)
        moves = geometry.move_lists[env.agent_cell]
        return [a for a in range(NUM_ACTIONS) if (next_cells >> moves[a]) & 1]

    def safe_actions(self) -> list[int]:
        """The actions after which the next colour can still be reached without failing.

        Where none can (a state the expert never enters by itself), the actions that at
        least do not step onto a wrong colour.
        """
        env, geometry = self.env, self.env.config.geometry
        layout, cell = env.layout, env.agent_cell
        target, empty = self._boards()
        harmless, safe = [], []
        for action, destination in enumerate(geometry.move_lists[cell]):
            if destination in layout.walls:
                destination = cell
            if (
                destination != cell
                and destination in layout.colours
                and not (target >> destination) & 1
            ):
                continue
            harmless.append(action)
            if shortest_path(1 << destination, target, empty, geometry)[0] < UNREACHABLE:
                safe.append(action)
        return safe or harmless


class BatchedGridExpert:
    """The same expert for every env of a :class:`HierGridVectorEnv`, in numpy."""

    def __init__(
        self,
        env: HierGridVectorEnv,
        eps: float = 0.0,
        seed: int | None = None,
        ties: str = "uniform",
    ) -> None:
        self.env = env
        self.eps = _check_eps(eps)
        self.ties = _check_ties(ties)
        self.rng = np.random.default_rng(seed)

    def act(self, obs: np.ndarray | None = None, info: dict[str, Any] | None = None) -> np.ndarray:
        """One action per env, shape ``(num_envs,)``."""
        env = self.env
        config, geometry = env.config, env.config.geometry
        rows = np.arange(env.num_envs)
        w, o = config.num_walls, config.num_colors
        bits = np.left_shift(
            np.uint64(1), env.cells[:, : w + o].astype(np.uint64)
        )  # walls, colours
        empty = geometry.full ^ np.bitwise_or.reduce(bits, axis=1)
        wanted = env.next_colour()
        target = bits[rows, w + wanted]
        agent = env.agent_cell
        _, next_cells = shortest_paths(
            np.left_shift(np.uint64(1), agent.astype(np.uint64)), target, empty, geometry
        )
        destination = geometry.moves[agent]  # (B, 4), walls ignored
        allowed = ((next_cells[:, None] >> destination.astype(np.uint64)) & np.uint64(1)).astype(
            bool
        )
        explore = self.rng.random(env.num_envs) < self.eps
        explore = np.flatnonzero(explore | ~allowed.any(axis=1))
        if explore.size:
            allowed[explore] = self._safe(
                explore, destination[explore], wanted[explore], target[explore], empty[explore]
            )
        scores = self.rng.random((env.num_envs, NUM_ACTIONS))
        if self.ties == "ordered":  # exploration stays random, ties between optimal moves do not
            optimal = np.ones(env.num_envs, dtype=bool)
            optimal[explore] = False
            scores[optimal] = np.arange(NUM_ACTIONS, 0, -1)
        return (scores * allowed).argmax(axis=1)

    def _safe(self, envs, destination, wanted, target, empty) -> np.ndarray:
        """``(len(envs), 4)``: the actions of ``envs`` that keep the next colour reachable
        (where none do, those that do not step onto a wrong colour)."""
        env = self.env
        agent = env.agent_cell[envs, None]
        wall = (env.wall_board[envs, None] >> destination.astype(np.uint64)) & np.uint64(1)
        destination = np.where(wall.astype(bool), agent, destination)
        colour = np.take_along_axis(env.colour_at[envs], destination, axis=1)
        wrong = (destination != agent) & (colour >= 0) & (colour != wanted[:, None])
        start = np.left_shift(np.uint64(1), destination.astype(np.uint64))
        distance, _ = shortest_paths(start, target[:, None], empty[:, None], env.config.geometry)
        safe = ~wrong & (distance < UNREACHABLE)
        return np.where(safe.any(axis=1, keepdims=True), safe, ~wrong)
