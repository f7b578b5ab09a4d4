"""Navigation features of ant-pinpad observations: the ant base model's spatial encoder.

The grid's encoder (``features.py``) leaves the model what the paper is about, inferring
the current subgoal from the history, by computing from each observation what the board
says about navigation. This is the same for the ant. For each colour ``c`` the grid-level
planner of the expert (shortest path over empty cells; walls and the other colours block)
gives, per step:

* ``command[c]``: the unit vector the expert's walker would be told to follow if ``c`` were
  its target (towards the centre of the next cell on the path, minus the velocity across
  that line), in the torso's frame as the walker sees it;
* ``distance[c]``: the path's length in cells, divided by :data:`DISTANCE_SCALE` (-1 when
  no path exists);
* ``on[c]``: 1 if the torso centre is on ``c``'s cell;
* ``speed[c]``: the torso's velocity along the path's first leg (towards that centre), m/s.

All of it is a function of the current observation alone (torso position, yaw and
velocity; offsets to the colours and walls). The layout is constant within an episode,
so the searches run once per episode. The model still has to learn to walk (the walker's
map from state and command to torques) and which colour to seek. ``speed`` says which
colours the ant is getting closer to at this step, as the grid's features say which moves
start a path onto each colour: the product of velocity and command that a linear readout
of the other features cannot form.
"""

from __future__ import annotations

import numpy as np

from agents.internal_rl.features import distance_fields, distances_ahead
from hier_envs.ant.env import PROPRIO_SIZE, HierAntEnv
from hier_envs.ant.expert import DAMPING
from hier_envs.ant.walker import rotate_into_body
from hier_envs.grid.core import UNREACHABLE, Geometry

DISTANCE_SCALE = 8.0
QUATERNION = slice(1, 5)  # symlog of qpos[3:7] in the observation
VELOCITY = slice(13, 15)  # symlog of qvel[0:2]
XY = slice(PROPRIO_SIZE, PROPRIO_SIZE + 2)


def symexp(x: np.ndarray) -> np.ndarray:
    """The inverse of the env's ``symlog``."""
    return np.sign(x) * np.expm1(np.abs(x))


class AntNavigation:
    """The planner's view of an arena: cells, centres and neighbours of its grid."""

    def __init__(self, env: HierAntEnv) -> None:
        config, arena = env.config, env.arena
        self.size, self.cell_size, self.reach = config.size, arena.cell_size, arena.reach
        self.num_colors, self.num_walls = config.num_colors, config.num_walls
        self.geometry: Geometry = config.geometry
        self.centres = arena.centres  # (cells, 2) m
        self.num_features = 5 * self.num_colors

    def cells(self, xy: np.ndarray) -> np.ndarray:
        """Grid cells under points ``(..., 2)`` (clamped to the border cells, as the env)."""
        half = self.size * self.cell_size / 2
        col = np.clip(np.floor((xy[..., 0] + half) / self.cell_size), 0, self.size - 1)
        row = np.clip(np.floor((half - xy[..., 1]) / self.cell_size), 0, self.size - 1)
        return (row * self.size + col).astype(np.int64)

    def fields(self, obs: np.ndarray) -> np.ndarray:
        """``(E, O, cells)`` distance fields (``features.distance_fields``) of the layouts
        seen in observations ``(E, D)``, one per episode."""
        xy = obs[:, XY] * self.reach
        objects = (
            xy[:, None]
            + obs[:, XY.stop : XY.stop + 2 * (self.num_colors + self.num_walls)].reshape(
                len(obs), -1, 2
            )
            * self.reach
        )
        cells = self.cells(objects)
        colours, walls = cells[:, : self.num_colors], cells[:, self.num_colors :]
        wall_boards = np.bitwise_or.reduce(
            np.uint64(1) << walls.astype(np.uint64), axis=1, initial=np.uint64(0)
        )
        return distance_fields(wall_boards, colours, self.geometry)

    def features(self, obs: np.ndarray, fields: np.ndarray) -> np.ndarray:
        """``(N, 5 * O)`` float32: command (2), distance, on, speed, per colour, of observations
        ``obs (N, D)`` whose episodes have ``fields (N, O, cells)``."""
        n = len(obs)
        xy = obs[:, XY] * self.reach
        here = self.cells(xy)
        ahead, destination = distances_ahead(fields, here, self.geometry)  # (N, O, 4), (N, 4)
        best = ahead.min(axis=2)
        reachable = best < UNREACHABLE
        # The aim: the nearest centre among the neighbours that start a shortest path, or
        # the colour itself where there is none.
        centres = self.centres[destination]  # (N, 4, 2)
        gap = np.linalg.norm(centres - xy[:, None], axis=2)  # (N, 4)
        gap = np.where(ahead == best[..., None], gap[:, None], np.inf)  # (N, O, 4)
        aim = centres[np.arange(n)[:, None], gap.argmin(axis=2)]  # (N, O, 2)
        colour_cells = fields.argmin(axis=2)  # the colour's own cell holds 0
        aim = np.where(reachable[..., None], aim, self.centres[colour_cells])
        heading = _unit(aim - xy[:, None])
        velocity = symexp(obs[:, VELOCITY])[:, None]
        speed = (velocity * heading).sum(-1)  # (N, O) m/s
        across = velocity - speed[..., None] * heading
        command = _unit(heading - DAMPING * across)  # (N, O, 2) world frame
        quat = np.repeat(symexp(obs[:, QUATERNION]), self.num_colors, axis=0)
        flat = np.concatenate([command.reshape(-1, 2), np.zeros((len(quat), 1))], axis=1)
        body = rotate_into_body(quat, flat)[:, :2].reshape(n, self.num_colors, 2)
        body = _unit(body)
        distance = np.where(reachable, (best + 1) / DISTANCE_SCALE, -1.0)
        on = colour_cells == here[:, None]
        return np.concatenate(
            [body, distance[..., None], on[..., None], speed[..., None]], axis=2, dtype=np.float32
        ).reshape(n, -1)


def _unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.linalg.norm(vectors, axis=-1, keepdims=True).clip(1e-6)
