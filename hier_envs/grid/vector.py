"""A numpy-batched HierGrid-v0: many gridworlds stepped as arrays.

``gym.make_vec("HierGrid-v0", num_envs=N, vectorization_mode="vector_entry_point")``
returns this env. Env ``i`` reset with ``seed`` plays exactly the episodes of a single
``HierGridEnv`` reset with ``seed + i``, step for step (same layouts, observations,
rewards, ends and infos), with Gymnasium's next-step autoreset.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from hier_envs.grid.env import HierGridEnv
from hier_envs.grid.layout import GridConfig, Layout, sample_layouts
from hier_envs.grid.render import draw_grid
from hier_envs.viewer import check_render_mode


class HierGridVectorEnv(VectorEnv):
    """``num_envs`` independent HierGrid-v0 envs in numpy arrays.

    Infos hold one array per key with its ``_key`` mask, as Gymnasium's vector envs
    do; ``task`` is an ``(num_envs, task_length)`` int array.
    """

    metadata = {
        "render_modes": ["rgb_array"],
        "render_fps": HierGridEnv.metadata["render_fps"],
        "autoreset_mode": AutoresetMode.NEXT_STEP,
    }

    def __init__(
        self,
        num_envs: int = 1,
        task: str | Sequence[int] = "post",
        size: int = 7,
        num_colors: int = 8,
        num_walls: int = 4,
        max_steps: int = 100,
        render_mode: str | None = None,
        end_on_wrong_colour: bool = True,
    ) -> None:
        if isinstance(num_envs, bool) or not isinstance(num_envs, int | np.integer) or num_envs < 1:
            raise ValueError(f"num_envs must be a positive integer, got {num_envs!r}.")
        num_envs = int(num_envs)
        self.config = config = GridConfig(
            task, size, num_colors, num_walls, max_steps, end_on_wrong_colour=end_on_wrong_colour
        )
        self.num_envs = num_envs
        self.render_mode = check_render_mode(render_mode, self.metadata["render_modes"])
        num_cells, num_features = config.geometry.num_cells, config.num_features
        self.single_observation_space = spaces.Box(0, 1, (num_cells * num_features,), np.uint8)
        self.single_action_space = spaces.Discrete(4)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)

        self._rows = np.arange(num_envs)
        self._moves = config.geometry.moves
        self._keys = np.zeros(num_envs, dtype=np.uint64)
        self._episodes = np.zeros(num_envs, dtype=np.uint64)
        self._seeded = False
        self._queue = LayoutQueue(config, num_envs)
        self.tasks = np.zeros((num_envs, config.task_length), dtype=np.intp)
        self.cells = np.zeros((num_envs, num_features), dtype=np.intp)
        self.agent_cell = np.zeros(num_envs, dtype=np.intp)
        self.progress = np.zeros(num_envs, dtype=np.intp)
        self.visited = np.full(num_envs, -1, dtype=np.intp)  # colour entered at the last step
        self.steps = np.zeros(num_envs, dtype=np.intp)
        self.wall_board = np.zeros(num_envs, dtype=np.uint64)
        self.colour_at = np.full((num_envs, num_cells), -1, dtype=np.int8)
        self._cell_pos = np.stack(np.divmod(np.arange(num_cells), config.size), axis=1)
        self._obs = np.zeros((num_envs, num_cells * num_features), dtype=np.uint8)
        self._autoreset = np.zeros(num_envs, dtype=np.bool_)
        self._all = np.ones(num_envs, dtype=np.bool_)

    def reset(
        self,
        *,
        seed: int | Sequence[int | None] | None = None,
        options: dict[str, Any] | None = None,
    ) -> tuple[np.ndarray, dict[str, Any]]:
        seeds = self._seeds(seed)
        fresh = np.array([s is not None for s in seeds]) | (not self._seeded)
        for i, s in enumerate(seeds):
            if s is not None:
                self._keys[i] = seeding.np_random(s)[0].integers(2**63)
            elif not self._seeded:
                self._keys[i] = self.np_random.integers(2**63)
        self._episodes[fresh] = 0
        self._episodes[~fresh] += np.uint64(1)
        self._queue.forget(fresh)
        self._seeded = True
        self._start_episodes(self._rows)
        self._autoreset[:] = False
        return self._obs.copy(), self._info()

    def _seeds(self, seed: int | Sequence[int | None] | None) -> list[int | None]:
        """Each env's seed: ``seed + i`` for an int (as Gymnasium's vector envs), or None."""
        if seed is None:
            return [None] * self.num_envs
        if isinstance(seed, int | np.integer):
            return [int(seed) + i for i in range(self.num_envs)]
        seeds = list(seed)
        if len(seeds) != self.num_envs or not all(
            s is None or isinstance(s, int | np.integer) for s in seeds
        ):
            raise ValueError(f"seed must be an int or {self.num_envs} ints or Nones, got {seed!r}.")
        return [None if s is None else int(s) for s in seeds]

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        actions = np.asarray(actions)
        if actions.shape != (self.num_envs,) or not np.issubdtype(actions.dtype, np.integer):
            raise ValueError(
                f"actions must be an integer array of shape ({self.num_envs},), "
                f"got {actions.dtype} {actions.shape}."
            )
        if ((actions < 0) | (actions >= 4)).any():
            raise ValueError(
                f"Invalid actions {actions[(actions < 0) | (actions >= 4)]}: use 0..3."
            )
        if not self._seeded:
            raise RuntimeError("Call reset() before step().")
        rows, cell = self._rows, self.agent_cell
        target = self._moves[cell, actions]
        blocked = ((self.wall_board >> target.astype(np.uint64)) & np.uint64(1)).astype(bool)
        target[blocked] = cell[blocked]
        moved = target != cell
        colour = self.colour_at[rows, target]
        visited = moved & (colour >= 0)
        length = self.config.task_length
        correct = visited & (colour == self.next_colour())
        self.progress += correct
        self.steps += 1
        success = self.progress == length
        terminated = success | (visited & ~correct & self.config.end_on_wrong_colour)
        truncated = ~terminated & (self.steps >= self.config.max_steps)
        agent_feature = self.config.num_features - 1
        self._obs[rows, cell * self.config.num_features + agent_feature] = 0
        self._obs[rows, target * self.config.num_features + agent_feature] = 1
        self.agent_cell = target
        self.visited[:] = np.where(visited, colour, -1)
        reward = success.astype(np.float32)

        restart = np.flatnonzero(self._autoreset)
        if restart.size:
            self._episodes[restart] += np.uint64(1)
            self._start_episodes(restart)
            reward[restart] = 0.0
            terminated[restart] = False
            truncated[restart] = False
        self._autoreset = terminated | truncated
        return self._obs.copy(), reward, terminated, truncated, self._info()

    def _start_episodes(self, envs: np.ndarray) -> None:
        """Draw new layouts for ``envs`` and rebuild their state and observations."""
        config = self.config
        tasks, cells = self._queue.take(self._keys, self._episodes, envs)
        self.tasks[envs], self.cells[envs] = tasks, cells
        w, o, features = config.num_walls, config.num_colors, config.num_features
        walls, colours, agent = cells[:, :w], cells[:, w : w + o], cells[:, w + o]
        self.wall_board[envs] = (
            np.bitwise_or.reduce(np.left_shift(np.uint64(1), walls.astype(np.uint64)), axis=1)
            if w
            else 0
        )
        self.colour_at[envs] = -1
        self.colour_at[envs[:, None], colours] = np.arange(o)
        self.agent_cell[envs] = agent
        self.progress[envs] = 0
        self.visited[envs] = -1
        self.steps[envs] = 0
        self._obs[envs] = 0
        self._obs[envs[:, None], cells * features + np.arange(features)] = 1

    def next_colour(self) -> np.ndarray:
        """The colour each env needs next (its last one once the task is done)."""
        return self.tasks[self._rows, np.minimum(self.progress, self.config.task_length - 1)]

    def _info(self) -> dict[str, Any]:
        length = self.config.task_length
        info = {
            "task": self.tasks.copy(),
            "progress": self.progress.copy(),
            "subgoal": self.next_colour() // 2,
            "subgoal_index": np.minimum(self.progress, length - 1) // 2,
            "agent_pos": self._cell_pos[self.agent_cell],
            "success": self.progress == length,
            "visited": self.visited.copy(),
        }
        info.update({f"_{key}": self._all for key in list(info)})
        return info

    def layout(self, index: int) -> Layout:
        """Env ``index``'s current layout."""
        w, o = self.config.num_walls, self.config.num_colors
        cells = [int(c) for c in self.cells[index]]
        task = tuple(int(c) for c in self.tasks[index])
        return Layout(task, tuple(cells[:w]), tuple(cells[w : w + o]), cells[w + o])

    def render(self) -> tuple[np.ndarray, ...] | None:
        if self.render_mode is None:
            return None
        return tuple(
            draw_grid(self.config, self.layout(i), int(self.agent_cell[i]), int(self.progress[i]))
            for i in range(self.num_envs)
        )


class LayoutQueue:
    """The layouts of each env's next ``depth`` episodes, sampled in large batches.

    A call to :func:`sample_layouts` has a fixed cost (numpy call overhead, a second
    rejection round) whatever its size. Filling every env's queue at once whenever one
    runs dry pays that cost once per several steps instead of at every step. Slot
    ``e % depth`` holds episode ``e``; results are those of sampling one at a time.
    """

    _EMPTY = np.uint64(2**64 - 1)

    def __init__(self, config: GridConfig, num_envs: int, depth: int = 4) -> None:
        self.config = config
        self.depth = depth
        self.episode = np.full((num_envs, depth), self._EMPTY, dtype=np.uint64)
        self.tasks = np.zeros((num_envs, depth, config.task_length), dtype=np.intp)
        self.cells = np.zeros((num_envs, depth, config.num_features), dtype=np.intp)

    def forget(self, envs: np.ndarray) -> None:
        """Drop the queued layouts of ``envs`` (a mask or indices): their stream changed."""
        self.episode[envs] = self._EMPTY

    def take(
        self, keys: np.ndarray, episodes: np.ndarray, envs: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Tasks and cells of episode ``episodes[envs]`` of ``envs``."""
        slot = (episodes[envs] % np.uint64(self.depth)).astype(np.intp)
        if (self.episode[envs, slot] != episodes[envs]).any():
            self._fill(keys, episodes)
        return self.tasks[envs, slot], self.cells[envs, slot]

    def _fill(self, keys: np.ndarray, episodes: np.ndarray) -> None:
        """Queue episodes ``episodes[i] .. episodes[i] + depth - 1`` for every env ``i``."""
        depth = np.uint64(self.depth)
        first = episodes[:, None]
        wanted = first + (np.arange(self.depth, dtype=np.uint64) + depth - first % depth) % depth
        env, slot = np.nonzero(self.episode != wanted)
        self.tasks[env, slot], self.cells[env, slot] = sample_layouts(
            self.config, keys[env], wanted[env, slot]
        )
        self.episode[env, slot] = wanted[env, slot]
