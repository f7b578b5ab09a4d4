"""A pygame window that shows rgb frames: the ``human`` render mode of every env.

pygame is imported when the first :class:`Viewer` opens, so that ``import hier_envs``
and the other render modes never load it. Headless machines can run the human mode
with ``SDL_VIDEODRIVER=dummy``.
"""

from __future__ import annotations

import os

import numpy as np


def check_render_mode(render_mode: str | None, allowed: list[str]) -> str | None:
    """Return ``render_mode`` if it is None or allowed, else raise a clear ``ValueError``."""
    if render_mode is not None and render_mode not in allowed:
        raise ValueError(f"render_mode must be None or one of {allowed}, got {render_mode!r}.")
    return render_mode


class Viewer:
    """Shows frames in a window, paced to ``fps``.

    Closing the window closes the viewer: later frames are dropped (and no longer
    paced), so a program stepping the env carries on without a display.
    """

    def __init__(self, title: str, fps: int) -> None:
        os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
        import pygame  # imported here: only the human render mode needs it

        self._pygame = pygame
        pygame.display.init()
        pygame.display.set_caption(title)
        self._fps = fps
        self._clock = pygame.time.Clock()
        self._screen: pygame.Surface | None = None
        self.is_open = True

    def show(self, frame: np.ndarray) -> None:
        """Draw an ``(H, W, 3)`` uint8 frame and wait for the next tick of ``fps``."""
        if not self.is_open:
            return
        pygame = self._pygame
        if any(event.type == pygame.QUIT for event in pygame.event.get()):
            self.close()
            return
        height, width = frame.shape[:2]
        if self._screen is None or self._screen.get_size() != (width, height):
            self._screen = pygame.display.set_mode((width, height))
        self._screen.blit(pygame.surfarray.make_surface(frame.swapaxes(0, 1)), (0, 0))
        pygame.display.flip()
        self._clock.tick(self._fps)

    def close(self) -> None:
        """Close the window; pygame's other modules are left to whoever else uses them."""
        if self.is_open:
            self._pygame.display.quit()
            self.is_open = False
