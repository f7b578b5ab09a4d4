"""A code book of abstract actions distilled from the metacontroller's switch codes.

The project's addition to the paper (docs/internal-rl-notes.md, "A code book of abstract
actions"): ``K`` clusters of the codes the metacontroller chooses at its switches, one
learned code per cluster and a decoder refitted to them (stage ``codebook``,
``codebook_training``). Here: the code book itself, k-means, and the segment-dropping loss
the refit uses.
"""

from __future__ import annotations

import torch
from torch import nn

from agents.internal_rl.metacontroller import LowRankDecoder
from agents.internal_rl.run_dir import RunDir, RunDirError, load_checkpoint

STAGE = "codebook"


class CodeBook(nn.Module):
    """``K`` abstract actions: ``centroids (K, n_z)`` in the metacontroller's latent space (the
    code its switch reads as the one in force), one learned code each, and their decoder."""

    def __init__(self, centroids: torch.Tensor, decoder: LowRankDecoder) -> None:
        super().__init__()
        self.register_buffer("centroids", centroids)
        self.codes = nn.Embedding(*centroids.shape)
        self.decoder = decoder

    def __len__(self) -> int:
        return len(self.centroids)

    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        """The cluster of each code ``z (..., n_z)``: its nearest centroid."""
        distance = torch.cdist(z.reshape(-1, z.shape[-1]), self.centroids)
        return distance.argmin(-1).reshape(z.shape[:-1])

    def edit(self, which: torch.Tensor):
        """The controller hook: residuals ``(..., width)`` get abstract action ``which[...]``'s edit."""
        return lambda e: self.decoder(self.codes(which), e)


def kmeans(
    points: torch.Tensor, k: int, seed: int, restarts: int = 10, iterations: int = 100
) -> torch.Tensor:
    """``k`` centroids of ``points (n, d)``: k-means++ seeding, then Lloyd's iterations,
    from ``restarts`` seedings; the centroids with the least squared distance to the points.
    (One seeding can settle with two true clusters under one centroid: on the grid's quick
    run, purity 0.74 instead of 0.98 for one seed in ten.)"""
    if len(points) < k:
        raise RunDirError(
            f"Only {len(points)} switch codes to cluster into {k}: the metacontroller hardly "
            "switches. Retrain it (see docs/internal-rl-notes.md) or lower "
            "codebook.clusters."
        )
    generator = torch.Generator().manual_seed(seed)
    points = points.double().cpu()
    best, least = None, float("inf")
    for _ in range(restarts):
        centroids = _lloyd(points, _kmeans_plus_plus(points, k, generator), iterations)
        spread = torch.cdist(points, centroids).min(1).values.square().sum().item()
        if spread < least:
            best, least = centroids, spread
    return best.float()


def _kmeans_plus_plus(points: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    centroids = points[torch.randint(len(points), (1,), generator=generator)]
    while len(centroids) < k:
        weight = torch.cdist(points, centroids).min(1).values.square()
        centroids = torch.cat(
            [centroids, points[torch.multinomial(weight, 1, generator=generator)]]
        )
    return centroids


def _lloyd(points: torch.Tensor, centroids: torch.Tensor, iterations: int) -> torch.Tensor:
    k = len(centroids)
    for _ in range(iterations):
        assignment = torch.cdist(points, centroids).argmin(1)
        moved = torch.stack(
            [
                points[assignment == j].mean(0) if (assignment == j).any() else centroids[j]
                for j in range(k)
            ]
        )
        if torch.equal(moved, centroids):
            break
        centroids = moved
    return centroids


def segment_ids(labels: torch.Tensor, episode: torch.Tensor) -> torch.Tensor:
    """``(B, L)`` ids of the segments of packed windows: a new segment wherever the label
    or the episode changes along a window (and at each window's start)."""
    start = torch.ones_like(labels, dtype=torch.bool)
    start[:, 1:] = (labels[:, 1:] != labels[:, :-1]) | (episode[:, 1:] != episode[:, :-1])
    return start.flatten().cumsum(0).reshape(labels.shape) - 1


def loss_without_worst_segments(
    nll: torch.Tensor, segments: torch.Tensor, drop: float
) -> tuple[torch.Tensor, float]:
    """Mean of the token losses ``nll (n,)`` leaving out the ``floor(drop * S)`` of the ``S``
    segments (``segments (n,)`` ids) with the highest mean loss; also the share of tokens kept."""
    _, inverse = segments.unique(return_inverse=True)
    count = torch.bincount(inverse).to(nll.dtype)
    mean = torch.zeros_like(count).index_add_(0, inverse, nll.detach()) / count
    keep = torch.ones_like(mean, dtype=torch.bool)
    worst = int(drop * len(mean))
    if worst:
        keep[mean.topk(worst).indices] = False
    kept = keep[inverse]
    return nll[kept].mean(), kept.float().mean().item()


def load_codebook(run: RunDir, device: torch.device) -> CodeBook:
    """The code book saved by stage ``codebook``, frozen (clear error when missing)."""
    path = run.stage_dir(STAGE) / "codebook.pt"
    state = load_checkpoint(path, map_location=device)
    if state is None:
        raise FileNotFoundError(f"{path} is missing: run the codebook stage first.")
    weights = state["codebook"]
    latent_size = weights["centroids"].shape[1]
    width, rank, k = weights["decoder.b"].shape
    decoder = LowRankDecoder(latent_size, width, rank, k - 1, weights.get("decoder.whiten"))
    codebook = CodeBook(weights["centroids"], decoder).to(device)
    codebook.load_state_dict(weights)
    return codebook.requires_grad_(False).eval()
