"""Play a hier-envs environment with the keyboard, or watch its expert play it.

    python -m hier_envs.play HierGrid-v0 --task pretrain --seed 0
    python -m hier_envs.play HierGrid-v0 --expert --fps 4

The window shows the env's ``rgb_array`` frame, scaled, above two lines of status:
the task, its progress, the step and the last reward, and how the episode ended.
Only :func:`play` needs pygame (and a display, or ``SDL_VIDEODRIVER=dummy``); the
other functions are plain Python.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from hier_envs.experts import Expert, make_expert
from hier_envs.grid.core import DOWN, LEFT, RIGHT, UP

KEY_ACTIONS = {"up": UP, "down": DOWN, "left": LEFT, "right": RIGHT}
"""pygame key names (``pygame.key.name``) of the moves."""
RESET_KEYS = frozenset({"r"})
QUIT_KEYS = frozenset({"q", "escape"})
KEYS_HELP = """keys:
  arrows      move up / down / left / right (actions 0 / 1 / 2 / 3)
  r           start a new episode
  q, Esc      quit (closing the window quits too)
  any other   after an episode ends: start the next one without waiting"""

END_PAUSE_S = 1.5  # how long an ended episode stays on screen before the next starts
KEYBOARD_FPS = 30  # how often the window polls the keyboard when no expert plays
WINDOW_HEIGHT = 720  # default height of the scaled frame, in pixels
FONT_SIZE = 24
LINE_HEIGHT = 26
PANEL_PAD = 8
PANEL = (30, 30, 36)
TEXT = (230, 230, 230)
OUTCOME_TEXT = {"success": (110, 220, 120), "failure": (240, 90, 90), "time-out": (240, 200, 80)}


def parse_task(text: str) -> str | tuple[int, ...]:
    """The env's ``task`` argument from the command line: ``post``, ``pretrain`` or ``0-1-2-3``."""
    if text in ("post", "pretrain"):
        return text
    try:
        return tuple(int(colour) for colour in text.split("-"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a task: use 'post', 'pretrain' or colour ids joined by dashes, "
            "such as 0-1-2-3."
        ) from None


def action_for_key(key_name: str) -> int | None:
    """The move of a pygame key name (``"up"``, ``"left"``, ...), or None."""
    return KEY_ACTIONS.get(key_name)


def episode_outcome(
    reward: float, terminated: bool, truncated: bool, info: dict[str, Any]
) -> str | None:
    """``"success"``, ``"failure"`` or ``"time-out"`` once a step ends the episode, else None."""
    if terminated:
        return "success" if info.get("success", reward > 0) else "failure"
    return "time-out" if truncated else None


class Session:
    """The env, who plays it (the keyboard, or ``expert``) and the episode being played."""

    def __init__(self, env: gym.Env, seed: int | None = None, expert: Expert | None = None) -> None:
        self.env = env
        self.expert = expert
        self.obs, self.info = env.reset(seed=seed)
        self.steps = 0
        self.last_reward: float | None = None
        self.outcome: str | None = None
        self.ended_at = 0.0  # time.monotonic() at the end of the episode

    def reset(self) -> None:
        """Start the next episode of the env's stream."""
        self.obs, self.info = self.env.reset()
        self.steps, self.last_reward, self.outcome = 0, None, None

    def step(self, action: Any) -> None:
        """Take ``action`` and record the reward and, at the end, the outcome."""
        self.obs, reward, terminated, truncated, self.info = self.env.step(action)
        self.steps += 1
        self.last_reward = float(reward)
        self.outcome = episode_outcome(reward, terminated, truncated, self.info)
        if self.outcome:
            self.ended_at = time.monotonic()

    @property
    def controls(self) -> str:
        """A reminder of the keys."""
        if self.expert is None:
            return "arrows move, r resets, q quits"
        return "expert playing; r resets, q quits"

    def press(self, key_name: str) -> bool:
        """Act on a key press (a pygame key name); False if the key quits."""
        if key_name in QUIT_KEYS:
            return False
        action = action_for_key(key_name)
        if key_name in RESET_KEYS or (self.outcome and action is None):
            self.reset()
        elif self.expert is None and action is not None and not self.outcome:
            self.step(action)
        return True

    def advance(self) -> None:
        """Once per frame: start the next episode after the end pause, or let the expert act."""
        if self.outcome:
            if time.monotonic() - self.ended_at > END_PAUSE_S:
                self.reset()
        elif self.expert is not None:
            self.step(self.expert.act(self.obs, self.info))

    def status_lines(self) -> tuple[str, str]:
        """The task with its progress, then the last step's result (or the controls)."""
        task, progress = self.info.get("task"), self.info.get("progress")
        first = f"step {self.steps}"
        if task is not None:
            done = f"   done {progress}/{len(task)}" if progress is not None else ""
            first = f"task {'-'.join(map(str, task))}{done}   {first}"
        if self.outcome:
            second = (
                f"{self.outcome.upper()} after {self.steps} steps, reward {self.last_reward:g}"
                "   (space: next episode)"
            )
        elif self.last_reward is None:
            second = self.controls
        else:
            second = f"reward {self.last_reward:g}   ({self.controls})"
        return first, second


def play(
    env: gym.Env,
    seed: int | None = None,
    expert: Expert | None = None,
    fps: float | None = None,
    scale: float | None = None,
) -> None:
    """Run the window until the user quits: the keyboard plays, or ``expert`` does.

    ``env`` must have ``render_mode="rgb_array"``. The expert takes ``fps`` steps per
    second (default: the env's ``render_fps``); ``scale`` sizes the window relative to
    the frame (default: a frame :data:`WINDOW_HEIGHT` pixels high).
    """
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    import pygame  # imported here: the rest of the module works without a display

    session = Session(env, seed, expert)
    frame = env.render()
    scale = scale or WINDOW_HEIGHT / frame.shape[0]
    frame_size = (round(frame.shape[1] * scale), round(frame.shape[0] * scale))
    if expert is None:
        fps = KEYBOARD_FPS  # key presses drive the steps; the loop only polls
    else:
        fps = fps or env.metadata.get("render_fps", KEYBOARD_FPS)

    pygame.display.init()
    pygame.font.init()
    try:
        pygame.display.set_caption(env.spec.id if env.spec else type(env.unwrapped).__name__)
        panel_height = 2 * LINE_HEIGHT + 2 * PANEL_PAD
        screen = pygame.display.set_mode((frame_size[0], frame_size[1] + panel_height))
        font = pygame.font.Font(None, FONT_SIZE)
        clock = pygame.time.Clock()
        while True:
            for event in pygame.event.get():
                if event.type == pygame.QUIT:
                    return
                if event.type == pygame.KEYDOWN and not session.press(pygame.key.name(event.key)):
                    return
            session.advance()
            _draw(pygame, screen, font, env.render(), frame_size, session)
            clock.tick(fps)
    finally:
        pygame.display.quit()


def _draw(
    pygame: Any,
    screen: Any,
    font: Any,
    frame: np.ndarray,
    frame_size: tuple[int, int],
    session: Session,
) -> None:
    """Show the scaled frame and, below it, the session's status lines."""
    screen.fill(PANEL)
    surface = pygame.surfarray.make_surface(frame.swapaxes(0, 1))
    screen.blit(pygame.transform.smoothscale(surface, frame_size), (0, 0))
    task_line, result_line = session.status_lines()
    lines = ((task_line, TEXT), (result_line, OUTCOME_TEXT.get(session.outcome, TEXT)))
    for index, (line, colour) in enumerate(lines):
        top = frame_size[1] + PANEL_PAD + index * LINE_HEIGHT
        screen.blit(font.render(line, True, colour), (PANEL_PAD, top))
    pygame.display.flip()


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def make_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m hier_envs.play``."""
    parser = argparse.ArgumentParser(
        prog="python -m hier_envs.play",
        description="Play a hier-envs environment with the keyboard, or watch its expert.",
        epilog=KEYS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "env_id", nargs="?", default="HierGrid-v0", help="registered env id (default: %(default)s)"
    )
    parser.add_argument(
        "--task",
        type=parse_task,
        help="'post' (the post-training task), 'pretrain' (a pretraining task drawn per "
        "episode) or colour ids such as 0-1-2-3 (default: the env's default)",
    )
    parser.add_argument(
        "--seed", type=int, help="seed of the first episode; later ones follow from it"
    )
    parser.add_argument(
        "--expert", action="store_true", help="let the expert play instead of the keyboard"
    )
    parser.add_argument(
        "--fps", type=_positive, help="expert steps per second (default: the env's render_fps)"
    )
    parser.add_argument(
        "--scale",
        type=_positive,
        help=f"window size relative to the frame (default: a {WINDOW_HEIGHT}-pixel-high frame)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the command line, make the env and play it."""
    parser = make_parser()
    args = parser.parse_args(argv)
    kwargs = {} if args.task is None else {"task": args.task}
    try:
        env = gym.make(args.env_id, render_mode="rgb_array", **kwargs)
    except (gym.error.Error, ValueError, TypeError) as error:
        parser.error(str(error))
    if not args.expert and env.action_space != spaces.Discrete(len(KEY_ACTIONS)):
        parser.error(f"{args.env_id} has no keyboard controls ({env.action_space}): use --expert.")
    expert = make_expert(env, seed=args.seed) if args.expert else None
    try:
        play(env, args.seed, expert, args.fps, args.scale)
    finally:
        env.close()


if __name__ == "__main__":
    main()
