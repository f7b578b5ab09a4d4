"""Success of the HierAnt-v0 expert (planner + walker) on held-out seeds.

    python -m agents.ant_expert.evaluate [--walker PATH] [--episodes 40] [--seed 10000]

Without ``--walker`` the weights shipped in ``assets/`` are used.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import gymnasium as gym
import numpy as np
from tqdm import tqdm

import hier_envs  # noqa: F401  (registers the envs)
from hier_envs.ant.expert import AntExpert
from hier_envs.ant.walker import WalkerPolicy


def success_rate(
    task: str, episodes: int, seed: int, walker: WalkerPolicy | None, **env_kwargs: float
) -> dict[str, float]:
    """Success rate, mean episode length and how the failures ended, over ``episodes`` seeds."""
    env = gym.make("HierAnt-v0", task=task, **env_kwargs)
    expert = AntExpert(env.unwrapped, walker=walker)
    outcomes = {"success": 0, "wrong_cell": 0, "fell": 0, "time_out": 0}
    lengths = []
    for episode in tqdm(range(episodes), desc=f"HierAnt-v0 task={task}", leave=False):
        obs, info = env.reset(seed=seed + episode)
        terminated = truncated = False
        steps = 0
        while not (terminated or truncated):
            obs, reward, terminated, truncated, info = env.step(expert.act(obs, info))
            steps += 1
        lengths.append(steps)
        if info["success"]:
            outcomes["success"] += 1
        elif truncated:
            outcomes["time_out"] += 1
        elif not 0.2 <= env.unwrapped.data.qpos[2] <= 1.0:
            outcomes["fell"] += 1
        else:
            outcomes["wrong_cell"] += 1
    return {
        "success_rate": outcomes["success"] / episodes,
        "mean_length": float(np.mean(lengths)),
        **outcomes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--walker", type=Path, default=None, help="walker weights (.npz)")
    parser.add_argument("--episodes", type=int, default=40, help="episodes per task kind")
    parser.add_argument(
        "--seed", type=int, default=10_000, help="first seed (held out from training)"
    )
    parser.add_argument("--cell-size", type=float, default=None, help="HierAnt-v0's cell_size (m)")
    args = parser.parse_args()
    walker = WalkerPolicy.load(args.walker) if args.walker else None
    env_kwargs = {} if args.cell_size is None else {"cell_size": args.cell_size}
    results = {
        task: success_rate(task, args.episodes, args.seed, walker, **env_kwargs)
        for task in ("pretrain", "post")
    }
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
