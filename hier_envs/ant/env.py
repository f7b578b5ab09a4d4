"""HierAnt-v0: the ant-pinpad of the paper, on MuJoCo."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import mujoco
import numpy as np
from gymnasium import spaces

from hier_envs.ant.arena import MARGIN, build_arena
from hier_envs.grid.layout import GridConfig
from hier_envs.pinpad_env import PinpadEnv
from hier_envs.tasks import ANT_POST_TRAINING, ANT_PRETRAINING

HEALTHY_Z = (0.2, 1.0)
RESET_NOISE = 0.1
START_SPREAD = 0.8  # the start is uniform over this central fraction of the cell
PROPRIO_SIZE = 27  # qpos without xy (13) and qvel (14)
SYMLOG_BOUND = 30.0  # symlog(x) <= 30 for |x| < 1e13: only a diverged simulation exceeds it


def symlog(x: np.ndarray) -> np.ndarray:
    """``sign(x) * log(1 + |x|)``: squashes large velocities, keeps small values as they are."""
    return np.sign(x) * np.log1p(np.abs(x))


class HierAntEnv(PinpadEnv):
    """Walk the MuJoCo ant onto coloured floor cells in the order of a task.

    ## Rules
    The ant stands on a ``size`` x ``size`` grid of ``cell_size`` m cells with
    ``num_colors`` coloured cells and ``num_walls`` wall cells, placed anew at each
    reset (layouts in which a wall cuts a target off are redrawn). A coloured cell is
    visited when the torso centre enters it from another cell. The episode terminates
    with reward 1 when the task is complete, and with reward 0 on visiting a colour
    that is not the next one required, on the torso centre entering a wall cell, or
    on the torso height leaving [0.2, 1.0]; it is truncated after ``max_steps``.
    ``end_on_wrong_colour=False`` is free play, for evaluation: a wrong colour is just a
    cell (no progress, no end).
    Reset puts the torso over a free cell (uniform within the cell), with a random yaw
    and joint angles and velocities perturbed uniformly within +-0.1.

    ## Observation (float32)
    ``symlog`` of the proprioception (``qpos`` without xy: 13, ``qvel``: 14), the torso
    xy scaled to [-1, 1] (by the half-width inside the boundary walls), the offset from
    the torso to every coloured cell then every wall cell (same scale), and the torso's
    position within its cell, in [-1, 1] on the grid (a little beyond in the margin
    between grid and walls): 27 + 2 + 2 * (num_colors + num_walls) + 2 = 41 values.

    ## Action
    ``Box(-1, 1, (8,))``: the ant's eight joint torques (hip and ankle of each leg, in
    the order of Gymnasium's Ant). Held for ``frame_skip`` = 5 physics steps of 0.01 s.

    ## Info
    ``task``, ``progress``, ``subgoal`` (the colour being sought; the last once done),
    ``subgoal_index``, ``success``, ``xy`` (torso position, m), ``agent_pos`` (row, col),
    ``visited`` (the colour entered at this step, -1 if none).
    """

    metadata = {"render_modes": ["human", "rgb_array"], "render_fps": 20}

    def __init__(
        self,
        task: str | Sequence[int] = "post",
        size: int = 4,
        num_colors: int = 4,
        num_walls: int = 1,
        max_steps: int = 500,
        cell_size: float = 2.0,
        end_on_wrong_colour: bool = True,
        render_mode: str | None = None,
        width: int = 480,
        height: int = 480,
    ) -> None:
        self.config = GridConfig(
            task,
            size,
            num_colors,
            num_walls,
            max_steps,
            ANT_PRETRAINING,
            ANT_POST_TRAINING,
            end_on_wrong_colour,
        )
        if not isinstance(cell_size, int | float) or not 1.0 <= cell_size <= 10.0:
            raise ValueError(f"cell_size must be a number of metres in [1, 10], got {cell_size!r}.")
        super().__init__(render_mode)
        self.arena = build_arena(size, cell_size, num_walls)
        self.model = self.arena.model
        self.data = mujoco.MjData(self.model)
        self.frame_skip = 5
        self.dt = self.model.opt.timestep * self.frame_skip
        self._half = size * cell_size / 2
        num_objects = num_colors + num_walls
        obs_size = PROPRIO_SIZE + 2 + 2 * num_objects + 2
        local_bound = 1.0 + 2.0 * MARGIN / cell_size  # off the grid, in the margin
        bound = np.concatenate(
            [
                np.full(PROPRIO_SIZE, SYMLOG_BOUND),
                np.ones(2),
                np.full(2 * num_objects, 2.0),
                np.full(2, local_bound),
            ]
        ).astype(np.float32)
        self.observation_space = spaces.Box(-bound, bound, (obs_size,), np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (self.model.nu,), np.float32)
        self._width, self._height = width, height
        self._renderer: mujoco.Renderer | None = None
        self.cell = 0
        self.progress = 0
        self.visited = -1
        self.steps = 0
        self._over = True

    # -- geometry -----------------------------------------------------------------
    def cell_of(self, xy: np.ndarray) -> int:
        """The grid cell under a point (points outside are clamped to the border cells)."""
        size, cell_size = self.config.size, self.arena.cell_size
        col = min(max(int(math.floor((xy[0] + self._half) / cell_size)), 0), size - 1)
        row = min(max(int(math.floor((self._half - xy[1]) / cell_size)), 0), size - 1)
        return row * size + col

    @property
    def xy(self) -> np.ndarray:
        """The torso centre's position (m)."""
        return self.data.qpos[:2].copy()

    # -- gym API --------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        layout = self._next_layout(seed)
        self.arena.show_layout(layout.walls, layout.colours)
        self._colour_at = {cell: colour for colour, cell in enumerate(layout.colours)}
        self._walls = set(layout.walls)
        self._objects = self.arena.centres[list(layout.colours + layout.walls)]

        rng, model, data = self.np_random, self.model, self.data
        mujoco.mj_resetData(model, data)
        qpos = model.qpos0.copy()
        spread = START_SPREAD * self.arena.cell_size / 2
        qpos[:2] = self.arena.centres[layout.agent] + rng.uniform(-spread, spread, 2)
        yaw = rng.uniform(-math.pi, math.pi)
        qpos[3:7] = (math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2))
        qpos[7:] += rng.uniform(-RESET_NOISE, RESET_NOISE, model.nq - 7)
        data.qpos[:] = qpos
        data.qvel[:] = rng.uniform(-RESET_NOISE, RESET_NOISE, model.nv)
        mujoco.mj_forward(model, data)
        self.cell, self.progress, self.steps, self._over = layout.agent, 0, 0, False
        self.visited = -1
        if self.render_mode == "human":
            self.render()
        return self._observation(), self._info()

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        action = np.asarray(action, dtype=np.float64)
        if action.shape != self.action_space.shape or not np.all(np.abs(action) <= 1.0):
            raise ValueError(
                f"Invalid action {action!r}: expected {self.model.nu} finite torques in [-1, 1] "
                "(clip policy outputs, e.g. with gymnasium.wrappers.ClipAction)."
            )
        if self._over:
            raise RuntimeError("The episode is over (or was never started): call reset().")
        self.data.ctrl[:] = action
        mujoco.mj_step(self.model, self.data, nstep=self.frame_skip)
        self.steps += 1
        reward, terminated = 0.0, False
        self.visited = -1
        cell = self.cell_of(self.data.qpos[:2])
        if cell != self.cell:
            self.cell = cell
            if cell in self._walls:
                terminated = True
            elif cell in self._colour_at:
                self.visited = self._colour_at[cell]
                task = self.layout.task
                if self.visited == task[self.progress]:
                    self.progress += 1
                    if self.progress == len(task):
                        reward, terminated = 1.0, True
                else:
                    terminated = self.config.end_on_wrong_colour
        height = self.data.qpos[2]
        if not HEALTHY_Z[0] <= height <= HEALTHY_Z[1]:
            terminated = True
        truncated = not terminated and self.steps >= self.config.max_steps
        self._over = terminated or truncated
        if self.render_mode == "human":
            self.render()
        return self._observation(), reward, terminated, truncated, self._info()

    def _observation(self) -> np.ndarray:
        qpos, qvel = self.data.qpos, self.data.qvel
        xy = qpos[:2]
        local = (xy - self.arena.centres[self.cell_of(xy)]) / (self.arena.cell_size / 2)
        return (
            np.concatenate(
                [
                    symlog(np.concatenate([qpos[2:], qvel])),
                    xy / self.arena.reach,
                    ((self._objects - xy) / self.arena.reach).ravel(),
                    local,
                ]
            )
            .astype(np.float32)
            .clip(self.observation_space.low, self.observation_space.high)
        )

    def _info(self) -> dict[str, Any]:
        task = self.layout.task
        current = min(self.progress, len(task) - 1)
        return {
            "task": task,
            "progress": self.progress,
            "subgoal": task[current],
            "subgoal_index": current,
            "success": self.progress == len(task),
            "xy": self.xy,
            "agent_pos": np.array(divmod(self.cell, self.config.size)),
            "visited": self.visited,
        }

    # -- rendering ------------------------------------------------------------------
    def _draw(self) -> np.ndarray:
        if self._renderer is None:
            if os.environ.get("MUJOCO_GL", "").lower() in ("disable", "disabled", "off", "0"):
                raise RuntimeError(
                    "MuJoCo rendering is off (MUJOCO_GL=disable: no display and no EGL library "
                    "found). Install EGL (e.g. the libegl1 package) or OSMesa and set "
                    "MUJOCO_GL=egl or osmesa, or run with a display."
                )
            self._renderer = mujoco.Renderer(self.model, self._height, self._width)
        self._renderer.update_scene(self.data, camera="overview")
        return self._renderer.render()

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
        super().close()
