"""Navigation features of gridworld observations: the base model's spatial encoder.

A causal transformer that reads the raw 637-value one-hot must first learn shortest
paths on a 7x7 board with obstacles before it can learn anything about tasks: on this
CPU that alone eats the training budget (``shared/calibration.md``: 0.58-0.77 action
accuracy, almost no valid rollouts). This encoder computes, from the observation only,
what the board says about navigation, and leaves to the model what the paper is about:
inferring the current subgoal from the history and acting on it.

For each colour ``c`` a breadth-first search backwards from ``c`` over empty cells
(walls and the other colours block, as for the expert) gives, per step:

* ``toward[c, a]``: 1 if action ``a`` is a first move of a shortest path onto ``c``;
* ``distance[c]``: that path's length, divided by :data:`DISTANCE_SCALE`;
* ``on[c]``: 1 if the agent stands on ``c`` (how a visit shows in the observation);

plus the agent's cell (one-hot), the target of the next-observation loss. All of it is
a function of the current observation alone; the layout is constant within an episode,
so the searches run once per episode.
"""

from __future__ import annotations

import numpy as np

from hier_envs.grid.core import UNREACHABLE, Geometry

DISTANCE_SCALE = 16.0


def decode_layouts(
    obs: np.ndarray, size: int, num_walls: int, num_colors: int
) -> tuple[np.ndarray, np.ndarray]:
    """Wall boards ``(E,)`` uint64 and colour cells ``(E, num_colors)`` of first observations ``(E, D)``."""
    cells = obs.reshape(len(obs), size * size, num_walls + num_colors + 1)
    bits = np.uint64(1) << np.arange(size * size, dtype=np.uint64)
    walls = (cells[:, :, :num_walls].any(axis=2) * bits).sum(axis=1, dtype=np.uint64)
    colours = cells[:, :, num_walls : num_walls + num_colors].argmax(axis=1)
    return walls, colours


def distance_fields(walls: np.ndarray, colours: np.ndarray, geometry: Geometry) -> np.ndarray:
    """``(E, O, cells)`` int: steps to step onto colour ``o`` from an empty neighbour chain.

    ``field[e, o, x]`` is 0 on colour ``o``'s cell, the breadth-first distance to it over
    empty cells for an empty cell ``x``, and :data:`UNREACHABLE` on walls, on the other
    colours and where no path exists.
    """
    num_episodes, num_colors = colours.shape
    n = geometry.num_cells
    colour_bits = np.uint64(1) << colours.astype(np.uint64)  # (E, O)
    occupied = walls | np.bitwise_or.reduce(colour_bits, axis=1)
    empty = np.broadcast_to((geometry.full ^ occupied)[:, None], colour_bits.shape)
    field = np.full((num_episodes, num_colors, n), UNREACHABLE, dtype=np.int64)
    cell_bits = np.uint64(1) << np.arange(n, dtype=np.uint64)
    layer, seen, step = colour_bits, colour_bits, 0
    while layer.any():
        inside = (layer[..., None] & cell_bits) != 0
        field[inside] = step
        layer = geometry.neighbours(layer) & empty & ~seen
        seen = seen | layer
        step += 1
    return field


def distances_ahead(
    field: np.ndarray, agent: np.ndarray, geometry: Geometry
) -> tuple[np.ndarray, np.ndarray]:
    """``(N, O, 4)`` distance to each colour from the cell each move of agents at cells
    ``agent (N,)`` enters (:data:`UNREACHABLE` for a move off the grid, which stays), and
    those cells ``(N, 4)``. ``field (N or 1, O, cells)`` from :func:`distance_fields`."""
    destination = geometry.moves[agent]  # (N, 4); off-grid moves stay
    index = np.broadcast_to(destination[:, None, :], (len(agent), field.shape[1], 4))
    ahead = np.take_along_axis(field, index, axis=2)
    return np.where((destination == agent[:, None])[:, None, :], UNREACHABLE, ahead), destination


def step_features(
    field: np.ndarray, agent: np.ndarray, colours: np.ndarray, geometry: Geometry
) -> np.ndarray:
    """Features ``(N, 4 * O + O + O + cells)`` float32 of agents at cells ``agent (N,)``.

    ``field (N, O, cells)`` and ``colours (N, O)`` belong to each step's episode.
    """
    rows = np.arange(len(agent))
    ahead, _ = distances_ahead(field, agent, geometry)
    best = ahead.min(axis=2, keepdims=True)
    toward = (ahead == best) & (best < UNREACHABLE)
    distance = np.minimum(best[..., 0] + 1, UNREACHABLE) / DISTANCE_SCALE
    distance = np.where(best[..., 0] < UNREACHABLE, distance, -1.0)
    on = colours == agent[:, None]
    position = np.zeros((len(agent), geometry.num_cells), dtype=np.float32)
    position[rows, agent] = 1.0
    return np.concatenate(
        [toward.reshape(len(agent), -1), distance, on, position], axis=1, dtype=np.float32
    )
