"""Shared helpers of the HierGrid-v0 tests.

* :func:`install_layout` / :func:`env_from_picture`: put a hand-built layout into a
  ``HierGridEnv``, rebuilding its state exactly as ``reset`` does, so that a rule can be
  tested on a board drawn in the test.
* :func:`distances_to_enter` / :func:`oracle_optimal_actions` / :func:`oracle_path_length`:
  a plain breadth-first search on (row, col) cells, written independently of the
  package's bitboard code, used as the reference for shortest paths and the expert.
* :func:`rollout`: play one episode and keep every transition.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import pytest

import hier_envs  # noqa: F401  (registers HierGrid-v0)
from hier_envs.grid import HierGridEnv, Layout

UP, DOWN, LEFT, RIGHT = 0, 1, 2, 3
OFFSETS = {UP: (-1, 0), DOWN: (1, 0), LEFT: (0, -1), RIGHT: (0, 1)}


# --- hand-built layouts ------------------------------------------------------------


def install_layout(
    env: Any, task: Sequence[int], walls: Sequence[int], colours: Sequence[int], agent: int
) -> tuple[np.ndarray, dict[str, Any]]:
    """Replace the current episode of ``env`` (already reset) by a hand-built layout.

    Rebuilds the private state the way ``HierGridEnv.reset`` does and returns the
    episode's first ``(obs, info)``. ``env`` may be wrapped (``gym.make``).
    """
    base = env.unwrapped
    config = base.config
    num_cells, features = config.geometry.num_cells, config.num_features
    cells = [*walls, *colours, agent]
    assert len(walls) == config.num_walls and len(colours) == config.num_colors
    assert len(set(cells)) == len(cells) and all(0 <= c < num_cells for c in cells)
    layout = base.layout = Layout(tuple(task), tuple(walls), tuple(colours), agent)
    base._colour_at = [-1] * num_cells
    for colour, cell in enumerate(layout.colours):
        base._colour_at[cell] = colour
    base._wall_board = sum(1 << cell for cell in layout.walls)
    base.agent_cell, base.progress, base.steps, base._over = agent, 0, 0, False
    base._obs = np.zeros(base.observation_space.shape, dtype=np.uint8)
    for wall_id, cell in enumerate(layout.walls):
        base._obs[cell * features + wall_id] = 1
    for colour, cell in enumerate(layout.colours):
        base._obs[cell * features + config.num_walls + colour] = 1
    base._obs[agent * features + features - 1] = 1
    return base._obs.copy(), base._info()


def parse_picture(picture: str) -> tuple[int, list[int], list[int], int]:
    """``(size, walls, colours, agent)`` of a square picture.

    ``.`` floor, ``#`` a wall (wall ids in reading order), a digit the cell of that
    colour, ``@`` the agent. Colours present must be 0..k-1.
    """
    rows = [row.strip() for row in picture.strip().splitlines()]
    size = len(rows)
    assert all(len(row) == size for row in rows), "the picture must be square"
    walls, colour_cells, agent = [], {}, None
    for r, row in enumerate(rows):
        for c, char in enumerate(row):
            cell = r * size + c
            if char == "#":
                walls.append(cell)
            elif char.isdigit():
                colour_cells[int(char)] = cell
            elif char == "@":
                agent = cell
            else:
                assert char == ".", f"unknown character {char!r}"
    assert agent is not None and sorted(colour_cells) == list(range(len(colour_cells)))
    return size, walls, [colour_cells[i] for i in range(len(colour_cells))], agent


def env_from_picture(
    picture: str, task: Sequence[int], max_steps: int = 100
) -> tuple[HierGridEnv, np.ndarray, dict[str, Any]]:
    """A ``HierGridEnv`` playing ``task`` on the layout drawn in ``picture``."""
    size, walls, colours, agent = parse_picture(picture)
    env = HierGridEnv(
        task=task, size=size, num_colors=len(colours), num_walls=len(walls), max_steps=max_steps
    )
    env.reset(seed=0)
    obs, info = install_layout(env, task, walls, colours, agent)
    return env, obs, info


# --- independent shortest-path oracle ------------------------------------------------


def _neighbour(size: int, cell: int, action: int) -> int | None:
    r, c = divmod(cell, size)
    dr, dc = OFFSETS[action]
    r, c = r + dr, c + dc
    return r * size + c if 0 <= r < size and 0 <= c < size else None


def distances_to_enter(size: int, blocked: set[int], target: int) -> dict[int, int]:
    """Fewest steps from each cell to step onto ``target`` through cells not ``blocked``.

    A cell missing from the result cannot reach the target. ``target`` itself gets the
    length of leaving it and coming back.
    """
    distance: dict[int, int] = {}
    queue: deque[int] = deque()
    for action in OFFSETS:
        cell = _neighbour(size, target, action)
        if cell is not None:
            distance[cell] = 1
            queue.append(cell)
    while queue:
        cell = queue.popleft()
        if cell in blocked:  # standing there is possible (the start), stepping onto it is not
            continue
        for action in OFFSETS:
            previous = _neighbour(size, cell, action)
            if previous is not None and previous not in distance:
                distance[previous] = distance[cell] + 1
                queue.append(previous)
    return distance


def _blocked(layout: Layout) -> set[int]:
    return set(layout.walls) | set(layout.colours)


def oracle_optimal_actions(layout: Layout, size: int, agent: int, progress: int) -> set[int]:
    """Actions on a shortest path from ``agent`` to the next colour of the task."""
    target = layout.colours[layout.task[min(progress, len(layout.task) - 1)]]
    distance = distances_to_enter(size, _blocked(layout), target)
    best = set()
    for action in OFFSETS:
        cell = _neighbour(size, agent, action)
        onto_target = cell == target and distance.get(agent) == 1
        along_path = (
            cell is not None
            and cell not in _blocked(layout)
            and cell in distance
            and distance[cell] + 1 == distance.get(agent)
        )
        if onto_target or along_path:
            best.add(action)
    return best


def oracle_path_length(layout: Layout, size: int) -> float:
    """Fewest steps to complete the task from the layout's start (inf if impossible)."""
    total, position = 0, layout.agent
    for colour in layout.task:
        target = layout.colours[colour]
        distance = distances_to_enter(size, _blocked(layout), target)
        if position not in distance:
            return float("inf")
        total += distance[position]
        position = target
    return total


# --- episodes ---------------------------------------------------------------------------


def rollout(
    env: Any, policy: Callable[[np.ndarray, dict[str, Any]], int], seed: int | None = None
) -> tuple[tuple[np.ndarray, dict[str, Any]], list[tuple]]:
    """Play one episode; returns ``((obs, info) of reset, [(action, obs, reward,
    terminated, truncated, info), ...])``."""
    obs, info = env.reset(seed=seed)
    first, transitions = (obs, info), []
    while True:
        action = policy(obs, info)
        obs, reward, terminated, truncated, info = env.step(action)
        transitions.append((action, obs, reward, terminated, truncated, info))
        if terminated or truncated:
            return first, transitions


def agent_cells(obs: np.ndarray, env: Any) -> np.ndarray:
    """Cells whose agent bit is set in ``obs``."""
    features = env.unwrapped.config.num_features
    return np.flatnonzero(obs.reshape(-1, features)[:, -1])


@pytest.fixture
def env() -> Iterator[HierGridEnv]:
    """The paper's env (post-training task), unwrapped."""
    environment = HierGridEnv()
    yield environment
    environment.close()
