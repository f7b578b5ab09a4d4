"""A code book of abstract actions distilled from the metacontroller's switch codes.

The project's addition to the paper (docs/internal-rl-notes.md, "A code book of abstract
actions"): ``K`` clusters of the codes the metacontroller chooses at its switches, one
learned code per cluster and a decoder refitted to them (stage ``codebook``,
``codebook_training``). Here: the code book itself, k-means, and the segment-dropping loss
the refit uses.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import torch
from torch import nn

from agents.internal_rl.metacontroller import LowRankDecoder
from agents.internal_rl.run_dir import RunDir, RunDirError, load_checkpoint

STAGE = "codebook"


class AveragedDecoder(nn.Module):
    """The mean edit of several decoders fitted to the same clusters (``codebook.fits``).

    A code is the members' codes concatenated: slice ``i`` of ``z`` goes to member ``i``.
    Fits of one decoder from different initial weights steer differently well (on the grid's
    quick runs, 0.46-0.69 of the post task under oracle choices, by 0.05-0.12 within a
    seed); their mean edit steers better than the fits do on average
    (docs/internal-rl-notes.md, "Averaging fits").
    """

    def __init__(self, members: Sequence[LowRankDecoder]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, z: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """The mean edit ``(..., width)`` of codes ``z (..., fits * n_z)`` on ``e (..., width)``."""
        codes = z.chunk(len(self.members), dim=-1)
        return sum(member(code, e) for member, code in zip(self.members, codes)) / len(codes)

    def matrix(self, z: torch.Tensor) -> torch.Tensor:
        """The mean edit as a matrix ``(..., width, width)`` (``LowRankDecoder.matrix``)."""
        codes = z.chunk(len(self.members), dim=-1)
        return sum(member.matrix(code) for member, code in zip(self.members, codes)) / len(codes)


class CodeBook(nn.Module):
    """``K`` abstract actions: ``centroids (K, n_z)`` in the metacontroller's latent space (the
    code its switch reads as the one in force), one learned code each, and their decoder:
    the mean of ``decoders``, each with its own slice of the codes."""

    def __init__(self, centroids: torch.Tensor, decoders: Sequence[LowRankDecoder]) -> None:
        super().__init__()
        self.register_buffer("centroids", centroids)
        self.codes = nn.Embedding(len(centroids), centroids.shape[1] * len(decoders))
        self.decoder = AveragedDecoder(decoders)

    @classmethod
    def averaged(cls, books: Sequence[CodeBook]) -> CodeBook:
        """One code book whose edit is the mean of ``books``' (fitted to the same centroids)."""
        members = [member for book in books for member in book.decoder.members]
        codebook = cls(books[0].centroids, members)
        with torch.no_grad():
            codebook.codes.weight.copy_(torch.cat([book.codes.weight for book in books], -1))
        return codebook

    def __len__(self) -> int:
        return len(self.centroids)

    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        """The cluster of each code ``z (..., n_z)``: its nearest centroid."""
        distance = torch.cdist(z.reshape(-1, z.shape[-1]), self.centroids)
        return distance.argmin(-1).reshape(z.shape[:-1])

    def matrices(self) -> torch.Tensor:
        """Each abstract action's edit as a matrix, ``(K, width, width)``."""
        return self.decoder.matrix(self.codes.weight)

    def edit(
        self, which: torch.Tensor, matrices: torch.Tensor | None = None
    ) -> Callable[[torch.Tensor], torch.Tensor]:
        """The controller hook: residuals ``(..., width)`` get abstract action ``which[...]``'s
        edit. ``matrices``: :meth:`matrices`, given by a caller that edits many steps with a
        frozen code book (a rollout); else built here, once per call."""
        if matrices is None:
            matrices = self.matrices()

        def edited(e: torch.Tensor) -> torch.Tensor:
            every = torch.einsum("kvw,...w->...kv", matrices, e)  # (..., K, width)
            index = which[..., None, None].expand(*which.shape, 1, e.shape[-1])
            return every.gather(-2, index).squeeze(-2)

        return edited


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
    codebook = codebook_like(state["codebook"]).to(device)
    return codebook.requires_grad_(False).eval()


def codebook_like(weights: dict[str, torch.Tensor]) -> CodeBook:
    """A code book of the shape of the state dict ``weights``, loaded with them."""
    weights = with_members(weights)
    decoders = []
    while f"decoder.members.{len(decoders)}.b" in weights:
        prefix = f"decoder.members.{len(decoders)}."
        width, rank, k = weights[prefix + "b"].shape
        latent_size = weights[prefix + "hidden.0.weight"].shape[1]
        decoders.append(
            LowRankDecoder(latent_size, width, rank, k - 1, weights.get(prefix + "whiten"))
        )
    codebook = CodeBook(weights["centroids"], decoders)
    codebook.load_state_dict(weights)
    return codebook


def with_members(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A code book's state dict as saved now: one saved before ``codebook.fits``, with one
    decoder (``decoder.b``, not ``decoder.members.0.b``), becomes a code book of one fit."""
    if "decoder.b" not in weights:
        return weights
    return {re.sub(r"^decoder\.", "decoder.members.0.", k): v for k, v in weights.items()}
