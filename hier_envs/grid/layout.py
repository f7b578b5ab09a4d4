"""Configuration and layout sampling of gridworld-pinpad.

A layout is ``num_walls + num_colors + 1`` distinct cells: the walls (in identity
order), the coloured cells (colour ``i`` at ``cells[num_walls + i]``) and the agent's
start. Reset draws the task, then draws layouts until the task can be completed
within ``max_steps`` without touching a wrong colour (rejection sampling: solvable by
construction). Every draw is a pure function of ``(key, episode, attempt)``, so the
single env (:func:`sample_layout`) and the batched env (:func:`sample_layouts`) agree.
"""

from __future__ import annotations

import operator
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property, lru_cache

import numpy as np

from hier_envs.grid.core import (
    MAX_LAYOUT_ATTEMPTS,
    MAX_SIZE,
    Geometry,
    shortest_path,
    shortest_paths,
    stream,
    word,
)
from hier_envs.tasks import GRID_POST_TRAINING, GRID_PRETRAINING, resolve_tasks


@dataclass(frozen=True)
class GridConfig:
    """Validated settings of a pinpad layout (the paper's gridworld by default).

    ``pretraining`` and ``post_training`` are the task tables that ``task="pretrain"``
    and ``task="post"`` name: the ant-pinpad passes its own. ``end_on_wrong_colour=False``
    is free play, for evaluation: a wrong colour is just a cell (no progress, no end).
    """

    task: str | Sequence[int] = "post"
    size: int = 7
    num_colors: int = 8
    num_walls: int = 4
    max_steps: int = 100
    pretraining: tuple[tuple[int, ...], ...] = GRID_PRETRAINING
    post_training: tuple[int, ...] = GRID_POST_TRAINING
    end_on_wrong_colour: bool = True
    tasks: tuple[tuple[int, ...], ...] = field(init=False)

    def __post_init__(self) -> None:
        for name, low in (("size", 2), ("num_colors", 1), ("num_walls", 0), ("max_steps", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer):
                raise ValueError(f"{name} must be an integer, got {value!r}.")
            object.__setattr__(self, name, operator.index(value))
            if value < low:
                raise ValueError(f"{name} must be >= {low}, got {value}.")
        if self.size > MAX_SIZE:
            raise ValueError(f"size must be <= {MAX_SIZE} (boards are 64-bit), got {self.size}.")
        objects = self.num_walls + self.num_colors + 1
        if objects > self.size**2:
            raise ValueError(
                f"{self.num_walls} walls + {self.num_colors} colours + the agent = {objects} "
                f"objects do not fit in {self.size}x{self.size} = {self.size**2} cells."
            )
        tasks = resolve_tasks(self.task, self.num_colors, self.pretraining, self.post_training)
        if not isinstance(self.task, str):
            object.__setattr__(self, "task", tasks[0])
        longest = max(len(t) for t in tasks)
        if self.max_steps < longest:
            raise ValueError(
                f"max_steps={self.max_steps} is shorter than the task ({longest} colours, "
                f"at least one step each)."
            )
        if len({len(t) for t in tasks}) != 1:
            raise ValueError("All tasks of an env must have the same length.")
        object.__setattr__(self, "tasks", tasks)

    @cached_property
    def geometry(self) -> Geometry:
        return Geometry(self.size)

    @property
    def num_features(self) -> int:
        """Per-cell one-hot width: wall identities, colours, agent."""
        return self.num_walls + self.num_colors + 1

    @property
    def task_length(self) -> int:
        return len(self.tasks[0])


@dataclass(frozen=True)
class Layout:
    """One episode's task and cells."""

    task: tuple[int, ...]
    walls: tuple[int, ...]
    colours: tuple[int, ...]
    agent: int

    def next_colour_cell(self, progress: int) -> int:
        """The cell of the colour sought after ``progress`` colours (the last one once done)."""
        return self.colours[self.task[min(progress, len(self.task) - 1)]]

    @cached_property
    def occupied(self) -> int:
        """Board of the cells that hold a wall or a colour."""
        return sum(1 << cell for cell in self.walls + self.colours)


def _task_index(config: GridConfig, key, episode):
    return word(stream(key, episode, 0), 0) % len(config.tasks)


@lru_cache(maxsize=16)
def _moves(tasks: tuple[tuple[int, ...], ...], num_colors: int) -> np.ndarray:
    """The distinct moves of each task and how often each occurs, ``(T, M, 3)``.

    A move is ``(from, to, count)`` over the boards ``[colour 0..O-1, agent start,
    nothing]``: the path length of a layout is the count-weighted sum of its moves'
    shortest paths. Rows are padded with moves from nothing to nothing.
    """
    start, nothing = num_colors, num_colors + 1
    counted = [Counter(zip((start, *task[:-1]), task)) for task in tasks]
    table = np.zeros((len(tasks), max(map(len, counted)), 3), dtype=np.intp)
    table[..., :2] = nothing
    for row, counts in zip(table, counted):
        row[: len(counts)] = [(a, b, n) for (a, b), n in counts.items()]
    return table


def sample_layout(config: GridConfig, key: int, episode: int) -> Layout:
    """The layout of episode ``episode`` of the stream ``key`` (Python ints)."""
    geometry = config.geometry
    task_index = _task_index(config, key, episode)
    moves = _moves(config.tasks, config.num_colors)[task_index].tolist()
    n, k = geometry.num_cells, config.num_features
    for attempt in range(1, MAX_LAYOUT_ATTEMPTS + 1):
        cells, attempt_stream = list(range(n)), stream(key, episode, attempt)
        for j in range(k):
            r = j + word(attempt_stream, j) % (n - j)
            cells[j], cells[r] = cells[r], cells[j]
        walls, colours, agent = _split(config, cells)
        boards = [1 << c for c in colours] + [1 << agent, 0]
        empty = geometry.full ^ sum(1 << c for c in walls) ^ sum(boards[: config.num_colors])
        total = 0
        for source, target, count in moves:
            if count:
                total += count * shortest_path(boards[source], boards[target], empty, geometry)[0]
            if total > config.max_steps:
                break
        else:
            return Layout(config.tasks[task_index], tuple(walls), tuple(colours), agent)
    raise _unsolvable(config)


def sample_layouts(
    config: GridConfig, keys: np.ndarray, episodes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Batched :func:`sample_layout`: returns ``tasks (B, L)`` and ``cells (B, k)``.

    ``keys`` and ``episodes`` are ``uint64`` arrays of shape ``(B,)``. The first round
    tries one layout per env; the few envs left try several attempts per round (the
    first solvable one in attempt order wins, as in :func:`sample_layout`), which keeps
    the number of rounds, each a fixed cost, small.
    """
    task_index = _task_index(config, keys, episodes).astype(np.intp)
    moves = _moves(config.tasks, config.num_colors)[task_index]
    cells = np.empty((len(keys), config.num_features), dtype=np.intp)
    pending = np.arange(len(keys))
    first = 1
    while pending.size:
        if first > MAX_LAYOUT_ATTEMPTS:
            raise _unsolvable(config)
        count = min(1 if first == 1 else _ATTEMPTS_PER_ROUND, MAX_LAYOUT_ATTEMPTS + 1 - first)
        attempts = np.arange(first, first + count, dtype=np.uint64)
        candidate, solved = _try_layouts(
            config, keys[pending, None], episodes[pending, None], attempts, moves[pending]
        )
        done = solved.any(axis=1)
        choice = solved.argmax(axis=1)
        rows = np.flatnonzero(done)
        cells[pending[rows]] = candidate[rows, choice[rows]]
        pending = pending[~done]
        first += count
    return np.asarray(config.tasks, dtype=np.intp)[task_index], cells


_ATTEMPTS_PER_ROUND = 4


def _try_layouts(config: GridConfig, keys, episodes, attempts, moves):
    """Candidate cells ``(P, A, k)`` of the given attempts and whether each is solvable."""
    geometry = config.geometry
    n, k = geometry.num_cells, config.num_features
    index = np.arange(k, dtype=np.uint64)
    words = word(stream(keys[..., None], episodes[..., None], attempts[:, None]), index)
    shuffled = np.broadcast_to(np.arange(n), (*words.shape[:2], n)).reshape(-1, n).copy()
    words = words.reshape(-1, k)
    rows = np.arange(len(shuffled))
    for j in range(k):
        r = j + (words[:, j] % np.uint64(n - j)).astype(np.intp)
        shuffled[rows, j], shuffled[rows, r] = shuffled[rows, r], shuffled[rows, j]
    candidate = shuffled[:, :k]
    bits = np.left_shift(np.uint64(1), candidate.astype(np.uint64))
    walls, colour_bits, agent = _split(config, bits.T)
    wall_board = np.bitwise_or.reduce(walls, axis=0) if config.num_walls else 0
    empty = geometry.full ^ wall_board ^ np.bitwise_or.reduce(colour_bits, axis=0)
    boards = np.concatenate([colour_bits.T, agent[:, None], np.zeros_like(agent)[:, None]], axis=1)
    moves = np.repeat(moves, len(attempts), axis=0)
    sources = np.take_along_axis(boards, moves[..., 0], axis=1)
    targets = np.take_along_axis(boards, moves[..., 1], axis=1)
    distance, _ = shortest_paths(sources, targets, empty[:, None], geometry)
    solved = (distance * moves[..., 2]).sum(axis=1) <= config.max_steps
    shape = (len(keys), len(attempts))
    return candidate.reshape(*shape, k), solved.reshape(shape)


def _split(config: GridConfig, cells):
    """Walls, colours and agent of a layout's cell sequence."""
    w, o = config.num_walls, config.num_colors
    return cells[:w], cells[w : w + o], cells[w + o]


def _unsolvable(config: GridConfig) -> RuntimeError:
    return RuntimeError(
        f"No solvable layout found in {MAX_LAYOUT_ATTEMPTS} attempts for {config}: "
        "raise max_steps or size, or lower num_walls/num_colors."
    )
