"""HierGrid-v0: the gridworld-pinpad of the paper as a Gymnasium env."""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any

import numpy as np
from gymnasium import spaces

from hier_envs.grid.core import ACTION_NAMES, moved, visit
from hier_envs.grid.layout import GridConfig
from hier_envs.grid.render import draw_grid
from hier_envs.pinpad_env import PinpadEnv

NUM_ACTIONS = len(ACTION_NAMES)


class HierGridEnv(PinpadEnv):
    """Visit coloured cells in the order of a task; reward 1 on completing it.

    ## Rules
    A ``size`` x ``size`` grid holds ``num_walls`` walls, ``num_colors`` coloured cells
    and the agent, placed anew at each reset. Actions move the agent up, down, left or
    right; moving into a wall or off the grid leaves it in place. A colour counts as
    visited when the agent steps onto it from another cell. The episode terminates on
    completing the task (reward 1) or on visiting any colour that is not the next one
    required (reward 0), and is truncated after ``max_steps`` steps. Reset resamples
    the layout until the task can be completed within ``max_steps`` without touching a
    wrong colour, so every episode is solvable.

    ## Observation
    ``Box(0, 1, (size * size * (num_walls + num_colors + 1),), uint8)``: cell-major
    one-hot, per cell ``[wall 0..W-1, colour 0..O-1, agent]`` (637 values by default).
    ``uint8`` rather than ``float32``: a quarter of the memory traffic for the batched
    env and for datasets of millions of steps; cast to float on the model side.

    ## Info
    ``task`` (tuple of colour ids), ``progress`` (colours done), ``subgoal`` (the colour
    pair 0..3 = A..D of the next colour required; the last one once done),
    ``subgoal_index`` (its position in the task, read as consecutive pairs),
    ``agent_pos`` (row, col), ``success``, ``visited`` (the colour entered at this step,
    -1 if none).

    ## Arguments
    ``task``: ``"post"`` (default, 0-1-2-3-4-5-6-7-0-1-2-3), ``"pretrain"`` (one of the
    16 pretraining tasks drawn at each reset) or a sequence of colour ids.
    ``size=7``, ``num_colors=8``, ``num_walls=4``, ``max_steps=100``, ``render_mode``;
    ``end_on_wrong_colour=False`` turns the failure rule off (free play, for evaluating
    policies that do not know the task).
    """

    metadata = {"render_modes": ["human", "rgb_array"], "render_fps": 8}

    def __init__(
        self,
        task: str | Sequence[int] = "post",
        size: int = 7,
        num_colors: int = 8,
        num_walls: int = 4,
        max_steps: int = 100,
        render_mode: str | None = None,
        end_on_wrong_colour: bool = True,
    ) -> None:
        self.config = GridConfig(
            task, size, num_colors, num_walls, max_steps, end_on_wrong_colour=end_on_wrong_colour
        )
        super().__init__(render_mode)
        num_cells, num_features = self.config.geometry.num_cells, self.config.num_features
        self.observation_space = spaces.Box(0, 1, (num_cells * num_features,), np.uint8)
        self.action_space = spaces.Discrete(NUM_ACTIONS)
        self._agent_feature = num_features - 1
        self._moves = self.config.geometry.move_lists
        self.agent_cell = 0
        self.progress = 0
        self.visited = -1
        self.steps = 0
        self._over = True

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        layout = self._next_layout(seed)
        self._colour_at = [-1] * self.config.geometry.num_cells
        for colour, cell in enumerate(layout.colours):
            self._colour_at[cell] = colour
        self._wall_board = sum(1 << cell for cell in layout.walls)
        self.agent_cell, self.progress, self.steps, self._over = layout.agent, 0, 0, False
        self.visited = -1
        self._obs = np.zeros(self.observation_space.shape, dtype=np.uint8)
        features = self.config.num_features
        for wall_id, cell in enumerate(layout.walls):
            self._obs[cell * features + wall_id] = 1
        for colour, cell in enumerate(layout.colours):
            self._obs[cell * features + self.config.num_walls + colour] = 1
        self._obs[layout.agent * features + self._agent_feature] = 1
        if self.render_mode == "human":
            self.render()
        return self._obs.copy(), self._info()

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        try:
            move = operator.index(action)  # ints and numpy integers; not floats or arrays
        except TypeError:
            move = -1
        if not 0 <= move < NUM_ACTIONS:
            raise ValueError(
                f"Invalid action {action!r}: expected an integer in [0, {NUM_ACTIONS}) "
                f"({', '.join(f'{i}={name}' for i, name in enumerate(ACTION_NAMES))})."
            )
        if self._over:
            raise RuntimeError("The episode is over (or was never started): call reset().")
        cell = self.agent_cell
        target = moved(cell, move, self._moves, self._wall_board)
        self.steps += 1
        reward, terminated = 0.0, False
        self.visited = -1
        if target != cell:
            features = self.config.num_features
            self._obs[cell * features + self._agent_feature] = 0
            self._obs[target * features + self._agent_feature] = 1
            self.agent_cell = target
            colour = self._colour_at[target]
            if colour >= 0:
                self.visited = int(colour)
                task = self.layout.task
                progress = visit(colour, task, self.progress)
                if progress is None:
                    terminated = self.config.end_on_wrong_colour
                else:
                    self.progress = progress
                    if progress == len(task):
                        reward, terminated = 1.0, True
        truncated = not terminated and self.steps >= self.config.max_steps
        self._over = terminated or truncated
        if self.render_mode == "human":
            self.render()
        return self._obs.copy(), reward, terminated, truncated, self._info()

    def _info(self) -> dict[str, Any]:
        task = self.layout.task
        current = min(self.progress, len(task) - 1)
        return {
            "task": task,
            "progress": self.progress,
            "subgoal": task[current] // 2,
            "subgoal_index": current // 2,
            "agent_pos": np.array(divmod(self.agent_cell, self.config.size)),
            "success": self.progress == len(task),
            "visited": self.visited,
        }

    def _draw(self) -> np.ndarray:
        return draw_grid(self.config, self.layout, self.agent_cell, self.progress)
