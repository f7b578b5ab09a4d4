"""The Hawk block's scan: time and saved memory of a forward + backward pass.

    python benchmarks/ssm_scan.py [--batch 64] [--steps 512] [--width 128] [--repeats 10]

Reference, measured in the same run: the same doubling scan differentiated by autograd,
which keeps every pass for the backward. ``linear_scan`` keeps only ``a`` and ``h`` and
runs the recurrence backwards for the gradient. Saved memory is counted exactly (bytes of
the tensors autograd keeps for the backward pass); times are the median of ``--repeats``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from agents.internal_rl.ssm import doubling_scan, linear_scan


def saved_bytes(scan: Callable, a: torch.Tensor, b: torch.Tensor) -> int:
    """Bytes of the tensors autograd saves for the backward pass of ``scan(a, b)``."""
    total = 0

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        scan(a, b)
    return total


def seconds(scan: Callable, a: torch.Tensor, b: torch.Tensor, repeats: int) -> float:
    """Median wall time of forward + backward."""
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        scan(a, b).sum().backward()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])  # the first run warms up


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=512)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    generator = torch.Generator().manual_seed(0)
    shape = (args.batch, args.steps, args.width)
    a = torch.rand(shape, generator=generator).requires_grad_()
    b = torch.randn(shape, generator=generator).requires_grad_()
    print(f"scan of {args.batch} x {args.steps} x {args.width} float32, forward + backward")
    print(f"{'':28} {'ms':>8} {'saved MB':>9}")
    results = {}
    for name, scan in (("autograd doubling (ref)", doubling_scan), ("linear_scan", linear_scan)):
        results[name] = seconds(scan, a, b, args.repeats), saved_bytes(scan, a, b)
        print(f"{name:28} {1000 * results[name][0]:8.1f} {results[name][1] / 1e6:9.1f}")
    (ref_time, ref_bytes), (time_, bytes_) = results.values()
    print(
        f"linear_scan: {ref_time / time_:.2f}x faster, {ref_bytes / bytes_:.1f}x less saved memory"
    )


if __name__ == "__main__":
    main()
