"""Gridworld-pinpad rules shared by the single env, the batched env and the expert.

Layouts are bitboards: cell ``r * size + c`` is bit ``1 << cell`` of an integer.
:func:`draws` and :func:`shortest_path` work elementwise on Python ints (the single
env: fastest for one board) and on numpy ``uint64`` arrays (the vector env), so that
both envs run the very same code and stay step-for-step identical.

Randomness is counter based: the layout of episode ``n`` of a stream with key ``k``
is a pure function of ``(k, n)``. A batch of envs can then sample their layouts
together while each matches the single env that has the same seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

UP, DOWN, LEFT, RIGHT = 0, 1, 2, 3
ACTION_NAMES = ("up", "down", "left", "right")
MAX_SIZE = 8  # size * size cells must fit a 64-bit board
UNREACHABLE = 1 << 30
MAX_LAYOUT_ATTEMPTS = 1000

_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15


def _mix64(x):
    """splitmix64's finaliser: a bijective scramble of 64-bit words."""
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def _mix(h, counter):
    return _mix64((h + ((counter + 1) * _GOLDEN & _MASK64)) & _MASK64)


def stream(key, episode, attempt):
    """The random stream of one layout attempt of one episode."""
    return _mix(_mix(key, episode), attempt)


def word(stream_, index):
    """The ``index``-th pseudo-random 64-bit word of a stream."""
    return _mix(stream_, index)


@dataclass(frozen=True)
class Geometry:
    """Bit masks and the move table of a ``size`` x ``size`` grid."""

    size: int

    @cached_property
    def num_cells(self) -> int:
        return self.size * self.size

    @cached_property
    def full(self) -> int:
        return (1 << self.num_cells) - 1

    @cached_property
    def not_first_col(self) -> int:
        return self.full ^ sum(1 << (r * self.size) for r in range(self.size))

    @cached_property
    def not_last_col(self) -> int:
        return self.full ^ sum(1 << (r * self.size + self.size - 1) for r in range(self.size))

    @cached_property
    def moves(self) -> np.ndarray:
        """``moves[cell, action]``: the cell reached ignoring walls (off-grid: stay)."""
        table = np.empty((self.num_cells, 4), dtype=np.intp)
        for cell in range(self.num_cells):
            r, c = divmod(cell, self.size)
            table[cell, UP] = cell - self.size if r > 0 else cell
            table[cell, DOWN] = cell + self.size if r < self.size - 1 else cell
            table[cell, LEFT] = cell - 1 if c > 0 else cell
            table[cell, RIGHT] = cell + 1 if c < self.size - 1 else cell
        return table

    @cached_property
    def move_lists(self) -> tuple[tuple[int, ...], ...]:
        """:attr:`moves` as nested tuples of ints, for scalar code."""
        return tuple(tuple(int(c) for c in row) for row in self.moves)

    def neighbours(self, board):
        """Cells 4-adjacent to any cell of ``board``."""
        return (
            (board >> self.size)
            | (board << self.size)
            | ((board >> 1) & self.not_last_col)
            | ((board << 1) & self.not_first_col)
        ) & self.full


def moved(cell: int, action: int, moves: tuple[tuple[int, ...], ...], wall_board: int) -> int:
    """The cell an agent at ``cell`` reaches with a move ``action`` (0..3).

    A wall or the border leaves it in place. ``moves`` is :attr:`Geometry.move_lists`
    and ``wall_board`` the board of the wall cells.
    """
    target = moves[cell][action]
    return cell if (wall_board >> target) & 1 else target


def visit(colour: int, task: tuple[int, ...], progress: int) -> int | None:
    """The task's progress after an agent steps onto ``colour`` from another cell.

    ``progress + 1`` when ``colour`` is the next one the task requires, ``None`` when it
    is a wrong colour (one not required next, including one already visited).
    """
    return progress + 1 if colour == task[progress] else None


def shortest_path(start: int, target: int, empty: int, geometry: Geometry) -> tuple[int, int]:
    """Fewest steps from ``start`` to step onto ``target``, crossing only ``empty`` cells.

    ``start`` and ``target`` are one-cell boards; ``start`` may be any cell, including
    ``target`` itself (the agent then has to leave and come back). Returns
    ``(distance, next_cells)``: ``distance`` is :data:`UNREACHABLE` where no path
    exists, and ``next_cells`` is the board of cells that an optimal first move may
    enter. It is a breadth-first search backwards from the target, stopped at ``start``.
    """
    layer = seen = target
    step = 1
    while True:
        reach = geometry.neighbours(layer)
        if reach & start:
            return step, layer
        layer = reach & empty & ~seen
        if not layer:
            return UNREACHABLE, 0
        seen |= layer
        step += 1


def shortest_paths(
    start: np.ndarray, target: np.ndarray, empty: np.ndarray, geometry: Geometry
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`shortest_path` elementwise over broadcastable ``uint64`` board arrays.

    All searches advance together, one layer per iteration; finished ones are
    dropped once they make up half the batch, so the cost follows the typical path,
    not the longest.
    """
    start, target, empty = np.broadcast_arrays(start, target, empty)
    shape = start.shape
    distance = np.full(start.size, UNREACHABLE, dtype=np.int64)
    next_cells = np.zeros(start.size, dtype=np.uint64)
    live = np.arange(start.size)
    start, layer = start.ravel(), target.ravel()
    unvisited = empty.ravel().copy()
    size, left, right = np.uint64(geometry.size), geometry.not_last_col, geometry.not_first_col
    one = np.uint64(1)
    for step in range(1, geometry.num_cells + 1):
        # Cells beyond the board may appear in ``reach``; ``start`` and ``unvisited`` mask them.
        reach = (
            (layer >> size) | (layer << size) | ((layer >> one) & left) | ((layer << one) & right)
        )
        found = (reach & start) != 0
        if found.any():
            distance[live[found]] = step
            next_cells[live[found]] = layer[found]
            reach[found] = 0
        layer = reach & unvisited
        unvisited ^= layer
        keep = layer != 0
        alive = np.count_nonzero(keep)
        if not alive:
            break
        if 2 * alive < live.size:
            live, start, layer, unvisited = live[keep], start[keep], layer[keep], unvisited[keep]
    return distance.reshape(shape), next_cells.reshape(shape)
