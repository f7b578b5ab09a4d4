"""Steps per second of HierGrid-v0, single and batched, against references run alongside.

    python benchmarks/env_speed.py [--seconds 3] [--num-envs 4096] [--task post]

References measured in the same run: MiniGrid-Empty-8x8-v0 when ``minigrid`` is
importable (``pip install --no-deps minigrid``: its own requirements pull pygame-ce,
a second copy of pygame), Gymnasium's SyncVectorEnv over single HierGrid-v0 envs, and
Gymnasium's Ant-v5 for HierAnt-v0. All loops draw uniformly random actions. Targets:
grid single >= 5x MiniGrid, batched >= 1,000,000 steps/s with 4096 envs on a 2-core
machine; ant single >= 0.7x Ant-v5.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import gymnasium as gym
import numpy as np

import hier_envs  # noqa: F401  (registers the envs)
from hier_envs.experts import make_expert


def single_env_rate(env_id: str, seconds: float, **kwargs) -> float:
    """Steps/s of ``gym.make(env_id)`` under ``action_space.sample()``, with resets."""
    env = gym.make(env_id, **kwargs)
    env.reset(seed=0)
    env.action_space.seed(0)
    return _rate(lambda: _single_step(env), seconds)


def _single_step(env: gym.Env) -> int:
    _, _, terminated, truncated, _ = env.step(env.action_space.sample())
    if terminated or truncated:
        env.reset()
    return 1


def vector_rate(env: gym.vector.VectorEnv, seconds: float, policy: Callable | None = None) -> float:
    """Env-steps/s of a vector env; random actions unless a policy is given."""
    obs, info = env.reset(seed=0)
    rng = np.random.default_rng(0)
    state = {"obs": obs, "info": info}

    def step() -> int:
        if policy is None:
            actions = rng.integers(0, 4, env.num_envs)
        else:
            actions = policy(state["obs"], state["info"])
        state["obs"], _, _, _, state["info"] = env.step(actions)
        return env.num_envs

    return _rate(step, seconds)


def _rate(step: Callable[[], int], seconds: float) -> float:
    for _ in range(20):  # warm-up
        step()
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        count += step()
    return count / elapsed


def expert_dataset_seconds(num_episodes: int, num_envs: int) -> tuple[float, float]:
    """Wall time and success rate of the batched expert producing ``num_episodes`` episodes."""
    env = gym.make_vec(
        "HierGrid-v0", num_envs=num_envs, vectorization_mode="vector_entry_point", task="pretrain"
    )
    expert = make_expert(env, seed=0)
    obs, info = env.reset(seed=0)
    episodes = successes = 0
    start = time.perf_counter()
    while episodes < num_episodes:
        obs, reward, terminated, truncated, info = env.step(expert.act(obs, info))
        episodes += int((terminated | truncated).sum())
        successes += int(reward.sum())
    return time.perf_counter() - start, successes / episodes


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="measuring time per row")
    parser.add_argument("--num-envs", type=int, default=4096, help="batch size of the vector env")
    parser.add_argument("--task", default="post", help="task of HierGrid-v0: post or pretrain")
    parser.add_argument(
        "--episodes", type=int, default=100_000, help="episodes for the dataset row"
    )
    args = parser.parse_args()

    rows: list[tuple[str, float, str]] = []
    single = single_env_rate("HierGrid-v0", args.seconds, task=args.task)
    try:
        import minigrid  # noqa: F401
    except ImportError:
        rows.append(("HierGrid-v0 single env", single, "minigrid not installed"))
    else:
        reference = single_env_rate("MiniGrid-Empty-8x8-v0", args.seconds)
        rows.append(("MiniGrid-Empty-8x8-v0 single env", reference, "reference"))
        rows.append(("HierGrid-v0 single env", single, f"{single / reference:.1f}x MiniGrid"))

    sync = gym.make_vec("HierGrid-v0", num_envs=64, vectorization_mode="sync", task=args.task)
    sync_rate = vector_rate(sync, args.seconds)
    rows.append(("HierGrid-v0 SyncVectorEnv, 64 envs", sync_rate, "reference"))
    batched = gym.make_vec(
        "HierGrid-v0",
        num_envs=args.num_envs,
        vectorization_mode="vector_entry_point",
        task=args.task,
    )
    batched_rate = vector_rate(batched, args.seconds)
    rows.append(
        (
            f"HierGrid-v0 batched, {args.num_envs} envs",
            batched_rate,
            f"{batched_rate / sync_rate:.0f}x sync",
        )
    )
    expert = make_expert(batched, seed=0)
    expert_rate = vector_rate(batched, args.seconds, policy=expert.act)
    rows.append(("  same, actions from the batched expert", expert_rate, "expert + env"))

    print(f"| environment (task={args.task}) | steps/s | ratio |")
    print("|---|---:|---|")
    for name, rate, note in rows:
        print(f"| {name} | {rate:,.0f} | {note} |")
    ant_reference = single_env_rate("Ant-v5", args.seconds)
    ant = single_env_rate("HierAnt-v0", args.seconds, task=args.task)
    async_ant = gym.make_vec("HierAnt-v0", num_envs=2, vectorization_mode="async", task=args.task)
    async_rate = vector_rate(
        async_ant, args.seconds, policy=lambda obs, info: async_ant.action_space.sample()
    )
    async_ant.close()
    print(f"\n| environment (task={args.task}) | steps/s | ratio |")
    print("|---|---:|---|")
    print(f"| Gymnasium Ant-v5 single env | {ant_reference:,.0f} | reference |")
    print(f"| HierAnt-v0 single env | {ant:,.0f} | {ant / ant_reference:.2f}x Ant-v5 |")
    print(
        f"| HierAnt-v0 async, 2 processes | {async_rate:,.0f} | {async_rate / ant_reference:.2f}x Ant-v5 |"
    )

    seconds, success = expert_dataset_seconds(args.episodes, args.num_envs)
    print(
        f"\nBatched expert dataset: {args.episodes:,} pretraining episodes in {seconds:.1f} s "
        f"({args.num_envs} envs), expert success {success:.3f}"
    )


if __name__ == "__main__":
    main()
