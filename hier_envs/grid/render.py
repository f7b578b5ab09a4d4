"""Pictures of gridworld-pinpad: the board and, below it, the task with its progress."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from hier_envs.grid.layout import GridConfig, Layout

TILE = 48
MARGIN = 4
STRIP = 40

FLOOR = (236, 236, 232)
GRID_LINE = (200, 200, 196)
WALL = (70, 70, 78)
BACKGROUND = (30, 30, 36)
AGENT = (255, 255, 255)
AGENT_EDGE = (20, 20, 20)
COLOURS = (
    (230, 25, 75),  # 0 red
    (245, 130, 48),  # 1 orange
    (255, 225, 25),  # 2 yellow
    (60, 180, 75),  # 3 green
    (70, 240, 240),  # 4 cyan
    (0, 130, 200),  # 5 blue
    (145, 30, 180),  # 6 purple
    (240, 50, 230),  # 7 magenta
)


def colour_rgb(colour: int) -> tuple[int, int, int]:
    """A distinct hue per colour id (the palette cycles past eight colours)."""
    return COLOURS[colour % len(COLOURS)]


def draw_grid(config: GridConfig, layout: Layout, agent_cell: int, progress: int) -> np.ndarray:
    """An ``(H, W, 3)`` uint8 picture of the board, the agent and the task strip."""
    frame = _board(config, layout).copy()
    row, col = divmod(agent_cell, config.size)
    _disc(frame, row * TILE + TILE // 2, col * TILE + TILE // 2, TILE * 0.3, AGENT, AGENT_EDGE)
    _task_strip(frame, config, layout.task, progress)
    return frame


@lru_cache(maxsize=64)
def _board(config: GridConfig, layout: Layout) -> np.ndarray:
    """The static part of a frame: floor, walls and colours, with an empty strip."""
    side = config.size * TILE
    frame = np.empty((side + STRIP, side, 3), dtype=np.uint8)
    frame[:] = BACKGROUND
    frame[:side] = GRID_LINE
    for cell in range(config.size**2):
        _fill_tile(frame, cell, config.size, FLOOR)
    for cell in layout.walls:
        _fill_tile(frame, cell, config.size, WALL)
    for colour, cell in enumerate(layout.colours):
        _fill_tile(frame, cell, config.size, colour_rgb(colour))
    frame.setflags(write=False)
    return frame


def _fill_tile(frame: np.ndarray, cell: int, size: int, rgb: tuple[int, int, int]) -> None:
    row, col = divmod(cell, size)
    frame[row * TILE + 1 : (row + 1) * TILE - 1, col * TILE + 1 : (col + 1) * TILE - 1] = rgb


def _task_strip(frame: np.ndarray, config: GridConfig, task: tuple[int, ...], progress: int) -> None:
    """One square per colour of the task; done ones carry a dark dot, the next is framed."""
    side = config.size * TILE
    slot = min(STRIP, side // len(task))
    square = slot - 2 * MARGIN
    top = side + (STRIP - square) // 2
    for i, colour in enumerate(task):
        left = i * slot + MARGIN
        if i == progress:
            frame[top - 3 : top + square + 3, left - 3 : left + square + 3] = AGENT
        frame[top : top + square, left : left + square] = colour_rgb(colour)
        if i < progress:
            _disc(frame, top + square // 2, left + square // 2, square * 0.22, AGENT_EDGE, AGENT_EDGE)


def _disc(
    frame: np.ndarray,
    cy: int,
    cx: int,
    radius: float,
    fill: tuple[int, int, int],
    edge: tuple[int, int, int],
) -> None:
    """Draw a filled disc with a one-pixel-wide edge, centred at (cy, cx)."""
    r = int(np.ceil(radius)) + 1
    ys, xs = np.ogrid[-r : r + 1, -r : r + 1]
    distance = np.sqrt(ys**2 + xs**2)
    patch = frame[cy - r : cy + r + 1, cx - r : cx + r + 1]
    patch[distance <= radius] = edge
    patch[distance <= radius - 2] = fill
