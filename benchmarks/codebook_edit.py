"""The code book's edit: one matrix per abstract action against a hypernetwork pass per token.

    python benchmarks/codebook_edit.py [--fits 1] [--repeats 20]

The grid quick preset's code book (4 actions, width 128, a full-rank decoder of hidden
32; random weights: the time does not depend on them) edits the residual stream of (a)
one rollout step of internal RL's 512 envs, (b) one batch of its fit, 32 windows x 128
tokens, forward and backward. Reference, measured in the same run: the decoder applied
to each token's code (``LowRankDecoder.forward``, what ``CodeBook.edit`` did before);
``CodeBook.edit`` builds each action's ``width x width`` matrix once per call and applies
it, or, in a rollout (``CodeBookAgent``), applies the matrices built once for the whole
rollout. Times are the median of ``--repeats``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from agents.internal_rl.codebook import CodeBook
from agents.internal_rl.metacontroller import LowRankDecoder


def per_token(codebook: CodeBook) -> Callable:
    """The reference edit: the hypernetwork applied to every token's code."""
    return lambda which: lambda e: codebook.decoder(codebook.codes(which), e)


def seconds(edit: Callable, which: torch.Tensor, e: torch.Tensor, backward: bool, repeats: int):
    """Median wall time of one edit of ``e`` (and its backward pass when ``backward``)."""
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        with torch.set_grad_enabled(backward):
            edited = edit(which)(e)
            if backward:
                edited.square().sum().backward()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])  # the first run warms up


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fits", type=int, default=1, help="decoders averaged (codebook.fits)")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    torch.manual_seed(0)
    width, clusters = 128, 4
    decoders = [LowRankDecoder(8, width, 128, 32, torch.eye(width)) for _ in range(args.fits)]
    codebook = CodeBook(torch.randn(clusters, 8), decoders)
    print(f"code book of {clusters} actions, {args.fits} fit(s), {torch.get_num_threads()} threads")
    cases = {
        "rollout step, 512 envs": (torch.randint(clusters, (512,)), torch.randn(512, width), False),
        "fit batch, 32 x 128 tokens": (
            torch.randint(clusters, (32, 128)),
            torch.randn(32, 128, width),
            True,
        ),
    }
    rollout = "rollout step, 512 envs"
    reference = {
        name: seconds(per_token(codebook), *case, args.repeats) for name, case in cases.items()
    }
    with torch.no_grad():
        built = codebook.matrices()
    timed = {name: seconds(codebook.edit, *case, args.repeats) for name, case in cases.items()}
    timed["rollout step, built once"] = seconds(
        lambda which: codebook.edit(which, built), *cases[rollout], args.repeats
    )
    reference["rollout step, built once"] = reference[rollout]
    for name, matrices in timed.items():
        print(
            f"{name:28} per token (ref) {reference[name] * 1e3:8.2f} ms   "
            f"matrices {matrices * 1e3:8.2f} ms   {reference[name] / matrices:5.1f}x faster"
        )


if __name__ == "__main__":
    main()
