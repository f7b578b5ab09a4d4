"""Record the internal-RL agent of a run directory on the post-training task.

    python demos/record_agent.py --run runs/HierGrid-v0-quick-0 --episodes 2
    python demos/record_agent.py --run runs/HierGrid-v0-quick-0 --out videos/agent.gif

The agent (frozen base model + metacontroller + the ``rl`` stage's policy) plays the
episodes batched, as in training; each is then replayed in a rendering env seeded alike
(checked to end the same way). Below the board: the switching gate beta at every step so
far (red where the policy chose a new code) on the colour of the env's current subgoal.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from record_expert import add_video_arguments, check_video_arguments, finish_video

from agents.internal_rl.rl import load_internal_rl_agent
from agents.internal_rl.rollouts import Trajectories, env_actions
from agents.internal_rl.run_dir import RunDir, RunDirError, load_checkpoint
from hier_envs.play import episode_outcome

STRIP_HEIGHT = 28
SUBGOAL_SHADES = np.array([[255, 225, 225], [225, 240, 255], [225, 255, 225], [255, 245, 210]])


def gate_strip(width: int, trajectories: Trajectories, episode: int, steps: int) -> np.ndarray:
    """``(STRIP_HEIGHT, width, 3)``: beta of the first ``steps`` steps as bars."""
    strip = np.full((STRIP_HEIGHT, width, 3), 255, dtype=np.uint8)
    horizon = trajectories.alive.shape[1]
    for t in range(steps):
        left, right = (
            t * width // horizon,
            max((t + 1) * width // horizon, t * width // horizon + 1),
        )
        subgoal = int(trajectories.subgoal[episode, t])
        strip[:, left:right] = SUBGOAL_SHADES[subgoal % len(SUBGOAL_SHADES)]
        beta = float(trajectories.betas[episode, t])
        top = STRIP_HEIGHT - 1 - round(beta * (STRIP_HEIGHT - 4))
        colour = (220, 30, 30) if trajectories.switches[episode, t] else (90, 90, 90)
        strip[top:, left:right] = colour
    return strip


def replay(
    env: gym.Env, trajectories: Trajectories, episode: int, seed: int
) -> tuple[list[np.ndarray], str]:
    """Frames of ``episode`` replayed from its reset, with the gate strip; and its outcome."""
    env.reset(seed=seed)
    frame = env.render()
    frames = [np.vstack([frame, gate_strip(frame.shape[1], trajectories, episode, 0)])]
    actions = trajectories.actions[episode][trajectories.alive[episode]].cpu().numpy()
    outcome = "unfinished"
    for t, action in enumerate(actions):
        action = env_actions(action, isinstance(env.action_space, gym.spaces.Box))
        _, reward, terminated, truncated, info = env.step(action)
        frame = env.render()
        frames.append(np.vstack([frame, gate_strip(frame.shape[1], trajectories, episode, t + 1)]))
        outcome = episode_outcome(reward, terminated, truncated, info) or outcome
    return frames, outcome


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Record a run directory's internal-RL agent.")
    parser.add_argument(
        "--run", type=Path, required=True, help="run directory of agents.internal_rl"
    )
    add_video_arguments(parser, "videos/<env name>_agent.mp4")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    parser = make_parser()
    args = parser.parse_args(argv)
    check_video_arguments(parser, args)
    run = RunDir(args.run)
    if not (run.stage_dir("rl") / "policy.pt").exists():
        parser.error(f"{args.run} has no trained policy (rl/policy.pt): run the rl stage first.")
    try:
        config = run.read_config()
    except RunDirError as error:
        parser.error(str(error))
    device = torch.device("cpu")
    agent = load_internal_rl_agent(run, config, device)
    agent.module.load_state_dict(load_checkpoint(run.stage_dir("rl") / "policy.pt")["module"])
    agent.module.eval()
    start = time.perf_counter()
    trajectories = agent.collect(args.episodes, args.seed)
    env = gym.make(config.env_id, render_mode="rgb_array", task="post")
    episodes = []
    for episode in range(args.episodes):
        frames, outcome = replay(env, trajectories, episode, args.seed + episode)
        if (outcome == "success") != bool(trajectories.success[episode]):
            raise RuntimeError(f"episode {episode}: the replay diverged from the agent's episode")
        switches = int(trajectories.switches[episode].sum())
        print(f"episode {episode}: {outcome}, {len(frames) - 1} steps, {switches} switches")
        episodes.append(frames)
    env.close()
    out = args.out or Path("videos") / f"{config.env_id.split('-v')[0].lower()}_agent.mp4"
    count, fps, (width, height) = finish_video(args, out, episodes, args.fps or 8)
    print(
        f"wrote {out}: {count} frames, {width}x{height} at {fps:g} fps "
        f"in {time.perf_counter() - start:.1f} s"
    )


if __name__ == "__main__":
    main()
