"""Pictures of gridworld-pinpad: the board and, below it, the task with its progress.

Pure numpy. The static part of a frame (floor, walls, colours, empty task strip) is
cached per layout; each frame copies it and draws the agent (or, for the multi-agent
pinpad, every agent of the team) and the task progress.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from hier_envs.grid.layout import GridConfig, Layout
from hier_envs.tasks import GRID_SUBGOALS

TILE = 48  # pixels per cell; a multiple of 16, like the strip, so videos need no resizing
VIDEO_BLOCK = 16  # video encoders work on 16x16 blocks: frame sides are multiples of it
STRIP_PAD = 8  # space around the task strip's squares
MAX_SQUARE = 30  # largest side of a task square
MIN_SQUARE = 12  # below this the strip wraps onto another row
PAIR_GAP = 12  # space between the pairs of a task (positions 0-1, 2-3, ...)
ITEM_GAP = 6  # space between the two colours of a pair
ROW_GAP = 8
FRAME_WIDTH = 2  # the frame around the next colour of the task

FLOOR = (236, 236, 232)
GRID_LINE = (204, 204, 198)
WALL = (62, 64, 74)
MORTAR = (92, 95, 108)
BACKGROUND = (30, 30, 36)
AGENT = (255, 255, 255)
AGENT_EDGE = (20, 20, 20)
NEXT_FRAME = (255, 255, 255)
DONE_MARK = (255, 255, 255)
DONE_OPACITY = 0.35  # colours already visited are drawn faded into the background
LETTER_SHADE = 0.6  # pair letters are the tile's colour, darkened
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


def _glyph(*rows: str) -> np.ndarray:
    """A boolean bitmap from rows of ``#`` (set) and ``.`` (clear)."""
    return np.array([[char == "#" for char in row] for row in rows])


PAIR_OF_COLOUR = {colour: pair for pair, colours in enumerate(GRID_SUBGOALS) for colour in colours}
PAIR_GLYPHS = (  # 3x5 letters A..D for the colour pairs (subgoals) of the paper
    _glyph(".#.", "#.#", "###", "#.#", "#.#"),
    _glyph("##.", "#.#", "##.", "#.#", "##."),
    _glyph(".##", "#..", "#..", "#..", ".##"),
    _glyph("##.", "#.#", "#.#", "#.#", "##."),
)
CHECK_GLYPH = _glyph("....#", "...#.", "#.#..", ".#...")
DIGIT_GLYPHS = (  # 3x5 digits 0..9, the numbers of the agents of a team
    _glyph("###", "#.#", "#.#", "#.#", "###"),
    _glyph(".#.", "##.", ".#.", ".#.", "###"),
    _glyph("###", "..#", "###", "#..", "###"),
    _glyph("###", "..#", ".##", "..#", "###"),
    _glyph("#.#", "#.#", "###", "..#", "..#"),
    _glyph("###", "#..", "###", "..#", "###"),
    _glyph("###", "#..", "###", "#.#", "###"),
    _glyph("###", "..#", "..#", ".#.", ".#."),
    _glyph("###", "#.#", "###", "#.#", "###"),
    _glyph("###", "#.#", "###", "..#", "###"),
)
TEAM_STYLES = (  # (fill, edge, number) of agents 0, 1, 2, then again: neutral tones, no hue
    (AGENT, AGENT_EDGE, AGENT_EDGE),
    (AGENT_EDGE, AGENT, AGENT),
    ((150, 150, 150), AGENT_EDGE, AGENT),
)


def colour_rgb(colour: int) -> tuple[int, int, int]:
    """A distinct hue per colour id (the palette cycles past eight colours)."""
    return COLOURS[colour % len(COLOURS)]


def draw_grid(config: GridConfig, layout: Layout, agent_cell: int, progress: int) -> np.ndarray:
    """An ``(H, W, 3)`` uint8 picture of the board, the agent and the task strip.

    Walls are dark bricks; each coloured cell carries the letter (A..D) of its colour
    pair. The strip lists the task's colours in pairs: visited ones are faded and
    ticked, the next one is framed.
    """
    frame = _board(config, layout).copy()
    row, col = divmod(agent_cell, config.size)
    _disc(frame, row * TILE + TILE // 2, col * TILE + TILE // 2, TILE * 0.3, AGENT, AGENT_EDGE)
    _task_strip(frame, config, layout.task, progress)
    return frame


def draw_team(
    config: GridConfig, layout: Layout, agent_cells: Sequence[int], progress: int
) -> np.ndarray:
    """:func:`draw_grid` for several agents: agent ``i`` is a numbered disc in style
    ``TEAM_STYLES[i % 3]`` (white, black, grey). Agents sharing a cell are drawn smaller,
    side by side, in agent order."""
    frame = _board(config, layout).copy()
    sharing: dict[int, list[int]] = {}
    for agent, cell in enumerate(agent_cells):
        sharing.setdefault(cell, []).append(agent)
    for cell, agents in sharing.items():
        per_side = math.ceil(math.sqrt(len(agents)))
        slot = TILE / per_side
        row, col = divmod(cell, config.size)
        for index, agent in enumerate(agents):
            slot_row, slot_col = divmod(index, per_side)
            cy = round(row * TILE + (slot_row + 0.5) * slot)
            cx = round(col * TILE + (slot_col + 0.5) * slot)
            _team_member(frame, cy, cx, 0.3 * TILE if per_side == 1 else 0.4 * slot, agent)
    _task_strip(frame, config, layout.task, progress)
    return frame


def _team_member(frame: np.ndarray, cy: int, cx: int, radius: float, agent: int) -> None:
    """Agent ``agent`` as a disc of its style, numbered when it is large enough."""
    fill, edge, number = TEAM_STYLES[agent % len(TEAM_STYLES)]
    _disc(frame, cy, cx, radius, fill, edge)
    scale = 2 if radius >= 12 else 1
    if agent < len(DIGIT_GLYPHS) and radius >= 6:
        glyph = DIGIT_GLYPHS[agent]
        top, left = cy - glyph.shape[0] * scale // 2, cx - glyph.shape[1] * scale // 2
        _stamp(frame, glyph, top, left, scale, number)


@lru_cache(maxsize=64)
def _board(config: GridConfig, layout: Layout) -> np.ndarray:
    """The static part of a frame: floor, walls and colours, with an empty strip."""
    side = config.size * TILE
    frame = np.empty((side + _strip_layout(config)[0], side, 3), dtype=np.uint8)
    frame[:] = BACKGROUND
    frame[:side] = GRID_LINE
    for cell in range(config.size**2):
        _tile(frame, cell, config.size)[:] = FLOOR
    for cell in layout.walls:
        _draw_wall(_tile(frame, cell, config.size))
    for colour, cell in enumerate(layout.colours):
        tile = _tile(frame, cell, config.size)
        tile[:] = colour_rgb(colour)
        pair = PAIR_OF_COLOUR.get(colour)
        if pair is not None:
            shade = tuple(int(v * LETTER_SHADE) for v in colour_rgb(colour))
            _stamp(tile, PAIR_GLYPHS[pair], 4, 4, scale=2, rgb=shade)
    frame.setflags(write=False)
    return frame


def _tile(frame: np.ndarray, cell: int, size: int) -> np.ndarray:
    """The view of a cell's pixels inside its one-pixel grid line."""
    row, col = divmod(cell, size)
    return frame[row * TILE + 1 : (row + 1) * TILE - 1, col * TILE + 1 : (col + 1) * TILE - 1]


def _draw_wall(tile: np.ndarray) -> None:
    """Dark bricks in staggered courses, unmistakable for floor or a colour."""
    tile[:] = WALL
    course = tile.shape[0] // 4
    for index, top in enumerate(range(0, tile.shape[0], course)):
        tile[top : top + 2] = MORTAR
        offset = course if index % 2 else 0
        tile[top : top + course, offset : offset + 2] = MORTAR
        tile[top : top + course, offset + 2 * course : offset + 2 * course + 2] = MORTAR


@lru_cache(maxsize=16)
def _strip_layout(config: GridConfig) -> tuple[int, int, tuple[tuple[int, int], ...]]:
    """The task strip: its height, the side of its squares and each square's (top, left).

    Squares are as large as fit, up to :data:`MAX_SQUARE`; below :data:`MIN_SQUARE`
    the strip wraps onto more rows, whole pairs at a time. The height is rounded up so
    that the frame's height is a multiple of 16.
    """
    side = config.size * TILE
    length = config.task_length
    per_row = length
    while True:
        square = min(MAX_SQUARE, (side - 2 * STRIP_PAD - _gaps_before(per_row - 1)) // per_row)
        if square >= MIN_SQUARE or per_row <= 2:
            break
        per_row = 2 * ((per_row - 1) // 2)  # the next even count: rows hold whole pairs
    rows = -(-length // per_row)
    rows_height = rows * square + (rows - 1) * ROW_GAP
    height = -(-(rows_height + 2 * STRIP_PAD) // VIDEO_BLOCK) * VIDEO_BLOCK
    first_top = side + (height - rows_height) // 2
    first_left = (side - per_row * square - _gaps_before(per_row - 1)) // 2
    positions = []
    for i in range(length):
        row, slot = divmod(i, per_row)
        top = first_top + row * (square + ROW_GAP)
        positions.append((top, first_left + slot * square + _gaps_before(slot)))
    return height, square, tuple(positions)


def _gaps_before(slot: int) -> int:
    """The width of the gaps left of square ``slot`` of a row: pairs sit closer together."""
    return (slot - slot // 2) * ITEM_GAP + (slot // 2) * PAIR_GAP


def _task_strip(
    frame: np.ndarray, config: GridConfig, task: tuple[int, ...], progress: int
) -> None:
    """One square per colour of the task, in pairs; done ones faded and ticked, next framed."""
    _, square, positions = _strip_layout(config)
    check_scale = max(1, square // 8)
    check_top, check_left = ((square - n * check_scale) // 2 for n in CHECK_GLYPH.shape)
    for i, (colour, (top, left)) in enumerate(zip(task, positions, strict=True)):
        item = _square(frame, top, left, square)
        if i < progress:
            item[:] = _blend(colour_rgb(colour), BACKGROUND, DONE_OPACITY)
            _stamp(item, CHECK_GLYPH, check_top, check_left, check_scale, DONE_MARK)
            continue
        if i == progress:
            _square(frame, top, left, square, margin=FRAME_WIDTH + 1)[:] = NEXT_FRAME
            _square(frame, top, left, square, margin=1)[:] = BACKGROUND  # a gap inside the frame
        item[:] = colour_rgb(colour)


def _square(frame: np.ndarray, top: int, left: int, side: int, margin: int = 0) -> np.ndarray:
    """The view of a ``side``-pixel square at (top, left), grown by ``margin`` all round."""
    return frame[top - margin : top + side + margin, left - margin : left + side + margin]


def _blend(rgb: tuple[int, ...], background: tuple[int, ...], opacity: float) -> np.ndarray:
    """``rgb`` seen with ``opacity`` over ``background``."""
    return opacity * np.array(rgb) + (1 - opacity) * np.array(background)


def _stamp(
    image: np.ndarray, glyph: np.ndarray, top: int, left: int, scale: int, rgb: tuple[int, ...]
) -> None:
    """Paint the set pixels of a boolean ``glyph``, each as a ``scale`` x ``scale`` block."""
    mask = glyph.repeat(scale, axis=0).repeat(scale, axis=1)
    image[top : top + mask.shape[0], left : left + mask.shape[1]][mask] = rgb


def _disc(
    frame: np.ndarray,
    cy: int,
    cx: int,
    radius: float,
    fill: tuple[int, int, int],
    edge: tuple[int, int, int],
) -> None:
    """Draw a filled disc with a two-pixel-wide edge, centred at (cy, cx)."""
    r = int(np.ceil(radius)) + 1
    ys, xs = np.ogrid[-r : r + 1, -r : r + 1]
    distance = np.sqrt(ys**2 + xs**2)
    patch = frame[cy - r : cy + r + 1, cx - r : cx + r + 1]
    patch[distance <= radius] = edge
    patch[distance <= radius - 2] = fill
