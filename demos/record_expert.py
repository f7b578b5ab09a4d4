"""Record expert episodes of a hier-envs environment to a video.

    python demos/record_expert.py --env HierGrid-v0 --seed 0 --task pretrain --episodes 2

Writes an MP4 (H.264 through imageio-ffmpeg), or a GIF when ``--out`` ends in ``.gif``,
and prints each episode's task, outcome and length. The last frame of every episode is
held for a second so that its end can be seen.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

import gymnasium as gym
import imageio.v3 as iio
import numpy as np

from hier_envs.experts import Expert, make_expert
from hier_envs.play import episode_outcome, parse_task

HOLD_SECONDS = 1.0
MACRO_BLOCK = 16  # H.264 encodes 16x16 blocks: frames are padded to multiples of it


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


def write_video(path: Path, frames: list[np.ndarray], fps: float) -> None:
    """Write ``frames`` as a looping GIF (``.gif``) or as an H.264 video."""
    path.parent.mkdir(parents=True, exist_ok=True)
    video = np.stack([pad_to_macro_block(frame) for frame in frames])
    if path.suffix.lower() == ".gif":
        iio.imwrite(path, video, plugin="pillow", duration=1000 / fps, loop=0)
    else:
        iio.imwrite(
            path, video, plugin="FFMPEG", fps=fps, codec="libx264", macro_block_size=MACRO_BLOCK
        )


def make_parser() -> argparse.ArgumentParser:
    """The command line of this script."""
    parser = argparse.ArgumentParser(description="Record expert episodes of a hier-envs env.")
    parser.add_argument(
        "--env", default="HierGrid-v0", help="registered env id (default: %(default)s)"
    )
    parser.add_argument("--seed", type=int, default=0, help="first episode's seed (default: 0)")
    parser.add_argument(
        "--task",
        type=parse_task,
        help="'post', 'pretrain' or colour ids such as 0-1-2-3 (default: the env's default)",
    )
    parser.add_argument("--episodes", type=int, default=2, help="episodes to record (default: 2)")
    parser.add_argument(
        "--out",
        type=Path,
        help="output file, .mp4 or .gif (default: videos/<env name>_expert.mp4)",
    )
    parser.add_argument("--fps", type=float, help="frames per second (default: env's render_fps)")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Record the episodes, write the video and report what was recorded."""
    parser = make_parser()
    args = parser.parse_args(argv)
    if args.episodes < 1:
        parser.error("--episodes must be at least 1.")
    if args.fps is not None and args.fps <= 0:
        parser.error("--fps must be positive.")
    kwargs = {} if args.task is None else {"task": args.task}
    try:
        env = gym.make(args.env, render_mode="rgb_array", **kwargs)
    except (gym.error.Error, ValueError, TypeError) as error:
        parser.error(str(error))
    expert = make_expert(env, seed=args.seed)
    fps = args.fps or env.metadata.get("render_fps", 30)
    out = args.out or Path("videos") / f"{args.env.split('-v')[0].lower()}_expert.mp4"

    start = time.perf_counter()
    frames: list[np.ndarray] = []
    successes = 0
    for episode in range(args.episodes):
        seed = args.seed if episode == 0 else None  # later episodes continue the seeded stream
        episode_frames, outcome, task = record_episode(env, expert, seed)
        frames += episode_frames + [episode_frames[-1]] * round(HOLD_SECONDS * fps)
        successes += outcome == "success"
        task_text = "-".join(map(str, task)) if task is not None else "?"
        print(f"episode {episode}: task {task_text}, {outcome}, {len(episode_frames) - 1} steps")
    env.close()
    write_video(out, frames, fps)
    height, width = pad_to_macro_block(frames[0]).shape[:2]
    print(
        f"wrote {out}: {len(frames)} frames of {width}x{height} at {fps:g} fps; "
        f"{successes}/{args.episodes} successes; {time.perf_counter() - start:.1f}s"
    )


if __name__ == "__main__":
    main()
