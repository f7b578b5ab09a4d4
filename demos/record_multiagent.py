"""Record the team expert of the multi-agent pinpad (PettingZoo ``pinpad_v0``) to a video.

    python demos/record_multiagent.py --seed 0                       # videos/pinpad_team.mp4
    python demos/record_multiagent.py --agents 3 --task pretrain --out videos/team.gif

Same options and output as ``record_expert.py``, plus ``--agents``. Agents are numbered
discs (0 white, 1 black, 2 grey); the strip below the board is the shared task.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from record_expert import add_video_arguments, check_video_arguments, env_kwargs, finish_video

from hier_envs.experts import make_expert
from hier_envs.multiagent import pinpad_v0
from hier_envs.multiagent.env import PinpadParallelEnv
from hier_envs.multiagent.expert import TeamExpert
from hier_envs.play import episode_outcome


def record_team_episode(
    env: PinpadParallelEnv, expert: TeamExpert, seed: int | None
) -> tuple[list[np.ndarray], str, tuple[int, ...]]:
    """One team episode: its frames from the reset on, its outcome and its task."""
    obs, infos = env.reset(seed=seed)
    frames = [env.render()]
    first = env.possible_agents[0]
    outcome = None
    while outcome is None:
        obs, rewards, terminations, truncations, infos = env.step(expert.act(obs, infos))
        frames.append(env.render())
        outcome = episode_outcome(
            rewards[first], terminations[first], truncations[first], infos[first]
        )
    return frames, outcome, infos[first]["task"]


def make_parser() -> argparse.ArgumentParser:
    """The command line of this script."""
    parser = argparse.ArgumentParser(description="Record the multi-agent pinpad's team expert.")
    parser.add_argument("--agents", type=int, default=2, help="team size (default: 2)")
    add_video_arguments(parser, "videos/pinpad_team.mp4")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Record the episodes, write the video and report what was recorded."""
    parser = make_parser()
    args = parser.parse_args(argv)
    check_video_arguments(parser, args)
    try:
        env = pinpad_v0.parallel_env(
            num_agents=args.agents, render_mode="rgb_array", **env_kwargs(args)
        )
    except ValueError as error:
        parser.error(str(error))
    expert = make_expert(env, seed=args.seed)
    fps = args.fps or env.metadata["render_fps"]
    out = args.out or Path("videos") / "pinpad_team.mp4"

    start = time.perf_counter()
    episodes: list[list[np.ndarray]] = []
    successes = 0
    for episode in range(args.episodes):
        seed = args.seed if episode == 0 else None  # later episodes continue the seeded stream
        frames, outcome, task = record_team_episode(env, expert, seed)
        episodes.append(frames)
        successes += outcome == "success"
        print(
            f"episode {episode}: task {'-'.join(map(str, task))}, {outcome}, "
            f"{len(frames) - 1} steps"
        )
    env.close()
    count, fps, (width, height) = finish_video(args, out, episodes, fps)
    print(
        f"wrote {out}: {count} frames of {width}x{height} at {fps:g} fps; "
        f"{successes}/{args.episodes} successes; {time.perf_counter() - start:.1f}s"
    )


if __name__ == "__main__":
    main()
