"""The transformer's key/value cache in batched rollouts: time of one episode's steps.

    python benchmarks/rollout_cache.py [--envs 512] [--steps 100] [--repeats 5]

The base model is the grid's quick preset (4 layers of width 128, 4 heads, MLP 512; random
weights: the time does not depend on them), stepped incrementally for ``--envs`` envs
at once, as internal RL, the baselines and the valid-rate check do. Reference, measured
in the same run: the cache that concatenated each step's keys and values to the cached
ones (O(T^2) copying over T steps); ``append_to_cache`` writes into buffers that double
when full. Times are the median of ``--repeats``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from unittest import mock

import torch

from agents.internal_rl import base_model
from agents.internal_rl.base_model import BaseModel, ModelConfig


def concatenated(cache: dict, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The reference: each step's keys and values concatenated to the cached ones."""
    if "k" in cache:
        k, v = torch.cat([cache["k"], k], dim=2), torch.cat([cache["v"], v], dim=2)
    cache["k"], cache["v"] = k, v
    return k, v


def seconds(model: BaseModel, features: torch.Tensor, append: Callable, repeats: int) -> float:
    """Median wall time of stepping every env through all of ``features (T, B, F)``."""
    times = []
    with mock.patch.object(base_model, "append_to_cache", append), torch.inference_mode():
        for _ in range(repeats + 1):
            cache = model.new_cache()
            start = time.perf_counter()
            for position, step_features in enumerate(features):
                model.step(step_features, position, cache)
            times.append(time.perf_counter() - start)
    return statistics.median(times[1:])  # the first run warms up


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--envs", type=int, default=512)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    config = ModelConfig(num_features=637, num_actions=4, num_next=49, num_layers=4, width=128)
    model = BaseModel(config).eval()
    features = torch.rand(args.steps, args.envs, config.num_features)
    print(
        f"{args.envs} envs x {args.steps} steps, grid quick base, {torch.get_num_threads()} threads"
    )
    reference = seconds(model, features, concatenated, args.repeats)
    buffered = seconds(model, features, base_model.append_to_cache, args.repeats)
    print(f"{'concatenated cache (ref)':28} {reference:7.2f} s")
    print(f"{'append_to_cache':28} {buffered:7.2f} s")
    print(f"append_to_cache: {reference / buffered:.2f}x faster")


if __name__ == "__main__":
    main()
