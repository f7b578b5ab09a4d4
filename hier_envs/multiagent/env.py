"""The cooperative gridworld-pinpad of several agents, as a PettingZoo ``ParallelEnv``."""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from pettingzoo import ParallelEnv

from hier_envs.grid.core import ACTION_NAMES, moved, visit
from hier_envs.grid.layout import GridConfig, Layout, sample_layout
from hier_envs.grid.render import draw_team
from hier_envs.viewer import Viewer, check_render_mode

STAY = len(ACTION_NAMES)
TEAM_ACTION_NAMES = (*ACTION_NAMES, "stay")


class PinpadParallelEnv(ParallelEnv[str, np.ndarray, int]):
    """``num_agents`` agents on one gridworld-pinpad board share one task and one reward.

    ## Rules
    The board, the tasks and the rules are HierGrid-v0's (``hier_envs.grid``): the
    layout is sampled by the same code, and every agent moves and visits colours by the
    same rules. One colour sequence is shared: any agent may advance it by stepping onto
    the next colour from another cell, and a wrong colour stepped onto by any agent ends
    the episode for all. Completing the task gives every agent reward 1. The episode is
    truncated after ``max_steps`` joint steps.

    * Agents may share a cell: they never block each other.
    * Within a step the agents' moves are applied one at a time in agent order
      (``agent_0`` first). Each move is judged against the progress left by the moves
      before it, so two agents can advance the task by two colours in one step. The
      first move that completes or fails the task ends the step: agents after it in the
      order do not move.
    * Agent ``i`` starts on the layout's agent cell for ``i = 0`` (from which the task
      can be completed within ``max_steps``, as in HierGrid-v0) and on distinct free
      cells drawn uniformly for the others.

    ## Spaces
    Action ``Discrete(5)``: 0 up, 1 down, 2 left, 3 right, 4 stay (HierGrid-v0's moves
    plus a no-op, so that an agent can wait while another works). Observation
    ``Box(0, 1, (size * size * (num_walls + num_colors + num_agents),), uint8)``: the
    cell-major one-hot of HierGrid-v0 with one agent channel per agent, ordered from the
    observer: per cell ``[wall 0..W-1, colour 0..O-1, self, agent i+1, ..., agent i-1]``
    (indices modulo ``num_agents``). With one agent it is HierGrid-v0's observation.

    ## Info (per agent)
    ``task``, ``progress``, ``subgoal``, ``subgoal_index``, ``success`` (shared, as in
    HierGrid-v0) and the agent's own ``agent_pos`` (row, col), all plain Python values.

    ## Arguments
    ``num_agents=2`` and HierGrid-v0's ``task``, ``size``, ``num_colors``, ``num_walls``,
    ``max_steps``, ``render_mode`` and ``end_on_wrong_colour``.
    """

    metadata = {
        "render_modes": ["human", "rgb_array"],
        "name": "pinpad_v0",
        "render_fps": 8,
        "is_parallelizable": True,
    }

    def __init__(
        self,
        num_agents: int = 2,
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
        if isinstance(num_agents, bool) or not isinstance(num_agents, int | np.integer):
            raise ValueError(f"num_agents must be an integer, got {num_agents!r}.")
        if num_agents < 1:
            raise ValueError(f"num_agents must be >= 1, got {num_agents}.")
        objects = num_walls + num_colors + num_agents
        if objects > self.config.geometry.num_cells:
            raise ValueError(
                f"{num_walls} walls + {num_colors} colours + {num_agents} agents = {objects} "
                f"objects do not fit in {size}x{size} = {size**2} cells."
            )
        self.render_mode = check_render_mode(render_mode, self.metadata["render_modes"])
        self.possible_agents = [f"agent_{i}" for i in range(num_agents)]
        self.agents: list[str] = []
        self._channels = num_walls + num_colors
        shape = (self.config.geometry.num_cells * (self._channels + num_agents),)
        self.observation_spaces = {
            agent: spaces.Box(0, 1, shape, np.uint8) for agent in self.possible_agents
        }
        self.action_spaces = {
            agent: spaces.Discrete(len(TEAM_ACTION_NAMES)) for agent in self.possible_agents
        }
        self.np_random: np.random.Generator | None = None
        self.layout: Layout | None = None
        self.cells: list[int] = []
        self.progress = 0
        self.steps = 0
        self._over = True
        self._key: int | None = None
        self._episode = 0
        self._viewer: Viewer | None = None

    def observation_space(self, agent: str) -> spaces.Box:
        return self.observation_spaces[self._check_agent(agent)]

    def action_space(self, agent: str) -> spaces.Discrete:
        return self.action_spaces[self._check_agent(agent)]

    def _check_agent(self, agent: str) -> str:
        if agent not in self.observation_spaces:
            raise ValueError(f"Unknown agent {agent!r}: the agents are {self.possible_agents}.")
        return agent

    # -- episodes -----------------------------------------------------------------
    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, dict[str, Any]]]:
        """Start the next episode of the seeded stream (a new one when ``seed`` is given)."""
        if seed is not None or self.np_random is None:
            self.np_random, _ = seeding.np_random(seed)
        if seed is not None or self._key is None:
            self._key = int(self.np_random.integers(2**63))
            self._episode = 0
        else:
            self._episode += 1
        layout = sample_layout(self.config, self._key, self._episode)
        taken = set(layout.walls + layout.colours) | {layout.agent}
        free = [cell for cell in range(self.config.geometry.num_cells) if cell not in taken]
        others = self.np_random.choice(free, self.max_num_agents - 1, replace=False)
        return self._begin(layout, [layout.agent, *map(int, others)])

    def _begin(
        self, layout: Layout, cells: Sequence[int]
    ) -> tuple[dict[str, np.ndarray], dict[str, dict[str, Any]]]:
        """Start an episode on ``layout`` with agent ``i`` on ``cells[i]``."""
        config = self.config
        self.layout, self.cells = layout, list(cells)
        self.agents = self.possible_agents[:]
        self.progress, self.steps, self._over = 0, 0, False
        self._colour_at = [-1] * config.geometry.num_cells
        for colour, cell in enumerate(layout.colours):
            self._colour_at[cell] = colour
        self._wall_board = sum(1 << cell for cell in layout.walls)
        self._board = np.zeros((config.geometry.num_cells, self._channels), dtype=np.uint8)
        for wall_id, cell in enumerate(layout.walls):
            self._board[cell, wall_id] = 1
        for colour, cell in enumerate(layout.colours):
            self._board[cell, config.num_walls + colour] = 1
        if self.render_mode == "human":
            self.render()
        return self._observations(), self._infos()

    def step(
        self, actions: dict[str, int]
    ) -> tuple[
        dict[str, np.ndarray],
        dict[str, float],
        dict[str, bool],
        dict[str, bool],
        dict[str, dict[str, Any]],
    ]:
        """Apply one action per agent, in agent order; see the class docstring for the rules."""
        if self._over:
            raise RuntimeError("The episode is over (or was never started): call reset().")
        if set(actions) != set(self.agents):
            raise ValueError(
                f"step needs one action for each agent of {self.agents}, got {sorted(actions)}."
            )
        moves = [self._check_action(actions[agent]) for agent in self.agents]
        self.steps += 1
        task, reward, terminated = self.layout.task, 0.0, False
        geometry_moves = self.config.geometry.move_lists
        for index, move in enumerate(moves):
            cell = self.cells[index]
            target = cell if move == STAY else moved(cell, move, geometry_moves, self._wall_board)
            if target == cell:
                continue
            self.cells[index] = target
            colour = self._colour_at[target]
            if colour < 0:
                continue
            progress = visit(colour, task, self.progress)
            if progress is None:
                terminated = self.config.end_on_wrong_colour
            else:
                self.progress = progress
                terminated = progress == len(task)
                reward = float(terminated)
            if terminated:
                break
        truncated = not terminated and self.steps >= self.config.max_steps
        self._over = terminated or truncated
        agents = self.agents
        result = (
            self._observations(),
            dict.fromkeys(agents, reward),
            dict.fromkeys(agents, terminated),
            dict.fromkeys(agents, truncated),
            self._infos(),
        )
        if self._over:
            self.agents = []
        if self.render_mode == "human":
            self.render()
        return result

    @staticmethod
    def _check_action(action: Any) -> int:
        try:
            move = operator.index(action)  # ints and numpy integers; not floats or arrays
        except TypeError:
            move = -1
        if not 0 <= move < len(TEAM_ACTION_NAMES):
            raise ValueError(
                f"Invalid action {action!r}: expected an integer in [0, {len(TEAM_ACTION_NAMES)}) "
                f"({', '.join(f'{i}={name}' for i, name in enumerate(TEAM_ACTION_NAMES))})."
            )
        return move

    def _observations(self) -> dict[str, np.ndarray]:
        team = len(self.possible_agents)
        observations = {}
        for index, agent in enumerate(self.possible_agents):
            grid = np.zeros((self.config.geometry.num_cells, self._channels + team), np.uint8)
            grid[:, : self._channels] = self._board
            for offset in range(team):
                grid[self.cells[(index + offset) % team], self._channels + offset] = 1
            observations[agent] = grid.ravel()
        return observations

    def _infos(self) -> dict[str, dict[str, Any]]:
        task = self.layout.task
        current = min(self.progress, len(task) - 1)
        shared = {
            "task": task,
            "progress": self.progress,
            "subgoal": task[current] // 2,
            "subgoal_index": current // 2,
            "success": self.progress == len(task),
        }
        size = self.config.size
        return {
            agent: {**shared, "agent_pos": divmod(cell, size)}
            for agent, cell in zip(self.possible_agents, self.cells, strict=True)
        }

    # -- rendering ----------------------------------------------------------------
    def render(self) -> np.ndarray | None:
        """The board with every agent numbered (``rgb_array``), or shown in a window (``human``)."""
        if self.render_mode is None:
            gym.logger.warn("render() called without a render_mode: pass render_mode.")
            return None
        if self.layout is None:
            raise RuntimeError("Call reset() before render().")
        frame = draw_team(self.config, self.layout, self.cells, self.progress)
        if self.render_mode == "rgb_array":
            return frame
        if self._viewer is None:
            self._viewer = Viewer(self.metadata["name"], self.metadata["render_fps"])
        self._viewer.show(frame)
        return None

    def close(self) -> None:
        if self._viewer is not None:
            self._viewer.close()
            self._viewer = None
