"""Record expert episodes of a hier-envs environment to a video.

    python demos/record_expert.py --env HierGrid-v0 --seed 0 --task pretrain --episodes 2
    python demos/record_expert.py --env HierAnt-v0 --task post --out videos/ant.mp4
    python demos/record_expert.py --env HierAnt-v0 --out ant.gif --width 240 --every 2 --colours 64

Writes an MP4 (H.264 through imageio-ffmpeg), or a GIF when ``--out`` ends in ``.gif``,
and prints each episode's task, outcome and length. The last frame of every episode is
held for a second so that its end can be seen. ``--width``, ``--every`` and ``--colours``
make small GIFs: frames scaled down, one frame kept in N (the frame rate drops with it,
so the video still plays in real time) and one shared palette of that many colours.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import imageio.v3 as iio
import numpy as np
from PIL import Image

from hier_envs.experts import Expert, make_expert
from hier_envs.play import episode_outcome, parse_task

HOLD_SECONDS = 1.0
MACRO_BLOCK = 16  # H.264 encodes 16x16 blocks: frames are padded to multiples of it
PALETTE_SAMPLES = 16  # frames that the shared palette of a GIF is computed from


def record_episode(
    env: gym.Env, expert: Expert, seed: int | None
) -> tuple[list[np.ndarray], str, tuple[int, ...] | None]:
    """One expert episode: its frames from the reset on, its outcome and its task."""
    obs, info = env.reset(seed=seed)
    frames = [env.render()]
    outcome = None
    while outcome is None:
        obs, reward, terminated, truncated, info = env.step(expert.act(obs, info))
        frames.append(env.render())
        outcome = episode_outcome(reward, terminated, truncated, info)
    return frames, outcome, info.get("task")


def pad_to_macro_block(frame: np.ndarray) -> np.ndarray:
    """``frame`` grown by edge pixels to a height and width that are multiples of 16."""
    height, width = frame.shape[:2]
    pad = ((0, -height % MACRO_BLOCK), (0, -width % MACRO_BLOCK), (0, 0))
    return np.pad(frame, pad, mode="edge")


def shrink(frame: np.ndarray, width: int) -> np.ndarray:
    """``frame`` scaled down (area-averaged) to ``width`` pixels, keeping its aspect."""
    height, old_width = frame.shape[:2]
    if width >= old_width:
        return frame
    size = (width, max(1, round(height * width / old_width)))
    return np.asarray(Image.fromarray(frame).resize(size, Image.Resampling.BOX))


def reduce_colours(frames: list[np.ndarray], colours: int) -> list[np.ndarray]:
    """``frames`` drawn with one shared palette of ``colours`` colours (no dithering):
    smaller GIFs, and no colour flicker from a palette per frame."""
    step = max(1, len(frames) // PALETTE_SAMPLES)
    sample = Image.fromarray(np.concatenate(frames[::step], axis=0))
    palette = sample.quantize(colors=colours, method=Image.Quantize.MEDIANCUT)
    return [
        np.asarray(
            Image.fromarray(frame)
            .quantize(palette=palette, dither=Image.Dither.NONE)
            .convert("RGB")
        )
        for frame in frames
    ]


def write_video(path: Path, frames: list[np.ndarray], fps: float, colours: int = 256) -> None:
    """Write ``frames`` as a looping GIF (``.gif``, with ``colours`` colours) or as H.264."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = [pad_to_macro_block(frame) for frame in frames]
    if path.suffix.lower() == ".gif":
        video = np.stack(reduce_colours(frames, colours))
        iio.imwrite(path, video, plugin="pillow", duration=1000 / fps, loop=0)
    else:
        iio.imwrite(
            path,
            np.stack(frames),
            plugin="FFMPEG",
            fps=fps,
            codec="libx264",
            macro_block_size=MACRO_BLOCK,
        )


def add_video_arguments(parser: argparse.ArgumentParser, default_out: str) -> None:
    """The options every recording script shares: seed, output and size of the video."""
    parser.add_argument("--seed", type=int, default=0, help="first episode's seed (default: 0)")
    parser.add_argument(
        "--task",
        type=parse_task,
        help="'post', 'pretrain' or colour ids such as 0-1-2-3 (default: the env's default)",
    )
    parser.add_argument("--episodes", type=int, default=2, help="episodes to record (default: 2)")
    parser.add_argument("--max-steps", type=int, help="the env's time limit (default: the env's)")
    parser.add_argument(
        "--out", type=Path, help=f"output file, .mp4 or .gif (default: {default_out})"
    )
    parser.add_argument("--fps", type=float, help="frames per second (default: env's render_fps)")
    parser.add_argument("--width", type=int, help="scale frames down to this width in pixels")
    parser.add_argument(
        "--every", type=int, default=1, help="keep one frame in this many (default: 1)"
    )
    parser.add_argument(
        "--colours", type=int, default=256, help="GIF palette size, 2..256 (default: 256)"
    )


def check_video_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Reject option values that cannot make a video (``parser.error`` exits)."""
    if args.episodes < 1:
        parser.error("--episodes must be at least 1.")
    if args.fps is not None and args.fps <= 0:
        parser.error("--fps must be positive.")
    if args.width is not None and args.width < MACRO_BLOCK:
        parser.error(f"--width must be at least {MACRO_BLOCK} pixels.")
    if args.every < 1:
        parser.error("--every must be at least 1.")
    if not 2 <= args.colours <= 256:
        parser.error("--colours must be in 2..256.")


def env_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The env keyword arguments that the command line sets."""
    kwargs: dict[str, Any] = {}
    if args.task is not None:
        kwargs["task"] = args.task
    if args.max_steps is not None:
        kwargs["max_steps"] = args.max_steps
    return kwargs


def finish_video(
    args: argparse.Namespace, out: Path, episodes: list[list[np.ndarray]], fps: float
) -> tuple[int, float, tuple[int, int]]:
    """Thin, shrink and write the episodes' frames (each end held for a second).

    Returns the number of frames written, their frame rate and their ``(width, height)``.
    """
    fps /= args.every
    frames: list[np.ndarray] = []
    for episode in episodes:
        kept = episode[:: args.every]
        if kept[-1] is not episode[-1]:
            kept.append(episode[-1])  # always show how the episode ended
        frames += kept + [kept[-1]] * round(HOLD_SECONDS * fps)
    if args.width is not None:
        frames = [shrink(frame, args.width) for frame in frames]
    write_video(out, frames, fps, args.colours)
    height, width = pad_to_macro_block(frames[0]).shape[:2]
    return len(frames), fps, (width, height)


def make_parser() -> argparse.ArgumentParser:
    """The command line of this script."""
    parser = argparse.ArgumentParser(description="Record expert episodes of a hier-envs env.")
    parser.add_argument(
        "--env", default="HierGrid-v0", help="registered env id (default: %(default)s)"
    )
    add_video_arguments(parser, "videos/<env name>_expert.mp4")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Record the episodes, write the video and report what was recorded."""
    parser = make_parser()
    args = parser.parse_args(argv)
    check_video_arguments(parser, args)
    try:
        env = gym.make(args.env, render_mode="rgb_array", **env_kwargs(args))
    except (gym.error.Error, ValueError, TypeError) as error:
        parser.error(str(error))
    expert = make_expert(env, seed=args.seed)
    fps = args.fps or env.metadata.get("render_fps", 30)
    out = args.out or Path("videos") / f"{args.env.split('-v')[0].lower()}_expert.mp4"

    start = time.perf_counter()
    episodes: list[list[np.ndarray]] = []
    successes = 0
    for episode in range(args.episodes):
        seed = args.seed if episode == 0 else None  # later episodes continue the seeded stream
        episode_frames, outcome, task = record_episode(env, expert, seed)
        episodes.append(episode_frames)
        successes += outcome == "success"
        task_text = "-".join(map(str, task)) if task is not None else "?"
        print(f"episode {episode}: task {task_text}, {outcome}, {len(episode_frames) - 1} steps")
    env.close()
    count, fps, (width, height) = finish_video(args, out, episodes, fps)
    print(
        f"wrote {out}: {count} frames of {width}x{height} at {fps:g} fps; "
        f"{successes}/{args.episodes} successes; {time.perf_counter() - start:.1f}s"
    )


if __name__ == "__main__":
    main()
