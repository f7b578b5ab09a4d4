"""What every pinpad env shares: the seeded stream of layouts and the render modes."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from hier_envs.grid.layout import GridConfig, Layout, sample_layout
from hier_envs.viewer import Viewer, check_render_mode


class PinpadEnv(gym.Env):
    """Base of HierGrid-v0 and HierAnt-v0; subclasses draw frames with :meth:`_draw`.

    Layouts come from a counter-based stream: episode ``n`` after ``reset(seed=s)`` is a
    pure function of ``(s, n)``, so the same seed gives the same episodes.
    """

    metadata: dict[str, Any] = {"render_modes": ["human", "rgb_array"]}
    config: GridConfig

    def __init__(self, render_mode: str | None) -> None:
        self.render_mode = check_render_mode(render_mode, self.metadata["render_modes"])
        self.layout: Layout | None = None
        self._key: int | None = None
        self._episode = 0
        self._viewer: Viewer | None = None

    def _next_layout(self, seed: int | None) -> Layout:
        """Seed the env as Gymnasium does, then draw the next episode's layout."""
        super().reset(seed=seed)
        if seed is not None or self._key is None:
            self._key = int(self.np_random.integers(2**63))
            self._episode = 0
        else:
            self._episode += 1
        self.layout = sample_layout(self.config, self._key, self._episode)
        return self.layout

    def _draw(self) -> np.ndarray:
        raise NotImplementedError

    def render(self) -> np.ndarray | None:
        if self.render_mode is None:
            gym.logger.warn("render() called without a render_mode: pass render_mode to gym.make.")
            return None
        if self.layout is None:
            raise RuntimeError("Call reset() before render().")
        frame = self._draw()
        if self.render_mode == "rgb_array":
            return frame
        if self._viewer is None:
            name = self.spec.id if self.spec is not None else type(self).__name__
            self._viewer = Viewer(name, self.metadata["render_fps"])
        self._viewer.show(frame)
        return None

    def close(self) -> None:
        if self._viewer is not None:
            self._viewer.close()
            self._viewer = None
