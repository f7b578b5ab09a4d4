"""A pygame window that shows rgb frames: the ``human`` render mode of every env."""

from __future__ import annotations

import os

import numpy as np


def check_render_mode(render_mode: str | None, allowed: list[str]) -> str | None:
    """Return ``render_mode`` if it is None or allowed, else raise a clear ``ValueError``."""
    if render_mode is not None and render_mode not in allowed:
        raise ValueError(f"render_mode must be None or one of {allowed}, got {render_mode!r}.")
    return render_mode


class Viewer:
    """Shows frames in a window, paced to ``fps``."""

    def __init__(self, title: str, fps: int) -> None:
        os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
        import pygame  # imported here: only the human render mode needs it

        self._pygame = pygame
        pygame.display.init()
        pygame.display.set_caption(title)
        self._title = title
        self._fps = fps
        self._clock = pygame.time.Clock()
        self._screen: pygame.Surface | None = None

    def show(self, frame: np.ndarray) -> None:
        pygame = self._pygame
        height, width = frame.shape[:2]
        if self._screen is None or self._screen.get_size() != (width, height):
            self._screen = pygame.display.set_mode((width, height))
        pygame.event.pump()
        surface = pygame.surfarray.make_surface(np.ascontiguousarray(frame.swapaxes(0, 1)))
        self._screen.blit(surface, (0, 0))
        pygame.display.flip()
        self._clock.tick(self._fps)

    def close(self) -> None:
        self._pygame.display.quit()
        self._pygame.quit()
