"""The metacontroller: self-supervised discovery of abstract actions in the frozen base model.

Reading the residual stream ``e_t`` at layer L/2 of the base model, it keeps a latent
code ``z_t`` and writes the low-rank edit ``e_t <- e_t + U(z_t) e_t`` back into it:

- ``s``: a non-causal embedding of the episode, from a bidirectional GRU (``summary_size``
  per direction): its final states, one vector per episode as in the paper, or with
  ``episode_summary=False`` its states at every step (the project's choice for small budgets:
  the codes form much faster),
- ``h_t``: a causal history (GRU, ``history_size``),
- encoder ``(e_t, h_t-1, s_t) -> (mu_t, Sigma_t)``, a proposal ``z~_t ~ N(mu_t, Sigma_t)``
  (with ``encoder_reads="future"``, it reads only the backward summary of steps
  ``t + encoder_lookahead .. T``; with ``"future_mean"``, only the mean of ``e`` over steps
  ``t + encoder_lookahead`` to ``t + encoder_lookahead + encoder_window - 1``, and with
  ``encoder_change`` also the change of ``e`` over those steps),
- switch ``beta_t = f(e_t, h_t-1, z_t-1)`` in [0, 1], and ``z_t = beta_t z~_t + (1 - beta_t) z_t-1``
  (``beta_0 = 1``; with ``forced=True``, ``beta_t = 1`` at every step; with ``hard_switch``,
  ``beta_t`` is rounded to 0 or 1 going forward and keeps the sigmoid's gradient going back;
  with ``switch_noise``, sampled codes come with logistic noise on the gate's logit, a
  Concrete relaxation of a Bernoulli gate; with ``binary_codes``, proposals are the signs
  of ``z~``, so a switch within a subgoal can leave the code unchanged; with
  ``switch_gradient="two_point"`` or ``"segment"``, the rounded gate passes no gradient and
  learns instead from the loss with and without a switch, at its own step or over the
  segment it opens, see ``metacontroller_training``),
- decoder: a hypernetwork ``z -> U(z) = A(z) B(z)^T`` of rank ``rank``.

``forward`` also takes the switches themselves, in place of the gate: with
``switch_at="true_changes"`` (a diagnostic) they are the labelled subgoal changes
(``given_switches``); in a ``code_phase`` they are drawn at random (``random_switches``),
after which only the gate trains (``freeze_codes``). With ``gate_reads_change`` the gate
also reads ``e_t - e_t-1``.

The networks read the layer-normalised residual stream (whitened with ``read_whitened``);
the edit applies to the raw one.
Trained on ``action NLL + alpha * KL(N(mu, Sigma) || N(0, I))`` (see
``metacontroller_training`` for the project's per-switch pricing).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from agents.internal_rl.config import MetacontrollerConfig
from agents.internal_rl.data import IGNORE, Batch

# Initialisation (measured on the quick preset's base model, 400 steps, alpha 0.1: with
# A = 0, unit proposal noise and raw residual inputs the codes collapsed to the prior
# within 100 steps and the NLL never moved; with these, the NLL fell from 0.27 to 0.05).
INITIAL_EDIT_SCALE = 1e-3  # A(z) starts small but not zero: the encoder gets a gradient
INITIAL_LOG_VARIANCE = -3.0  # proposals start nearly deterministic
INITIAL_SWITCH_LOGIT = 2.0  # beta starts near 0.9: close to forced switching, then sparsifies
SWITCH_THRESHOLD = 0.5  # a switch is beta >= this (the paper's rule, in training and in RL)


class StraightThrough(torch.autograd.Function):
    """A rounding going forward whose gradient passes through unchanged going back."""

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad


class RoundStraightThrough(StraightThrough):
    """Rounds a gate to exactly 0 or 1 going forward."""

    @staticmethod
    def forward(ctx, beta: torch.Tensor) -> torch.Tensor:
        return (beta >= SWITCH_THRESHOLD).to(beta.dtype)


class SignStraightThrough(StraightThrough):
    """The sign of a code (each entry -1 or +1) going forward."""

    @staticmethod
    def forward(ctx, z: torch.Tensor) -> torch.Tensor:
        return torch.where(z >= 0, 1.0, -1.0).to(z.dtype)


class LowRankDecoder(nn.Module):
    """Hypernetwork ``z -> U(z) = A(z) B(z)^T``, applied to ``e`` without building ``U``.

    ``A`` and ``B`` are linear in ``g(z) = [relu(W z + b), 1]``, so ``U(z) e`` costs two
    contractions per token. ``A`` starts near zero: every code starts as almost no edit.
    With ``whiten`` (a fixed ``S``, see ``controllers.py``), ``U(z) = A(z) B(z)^T S / sqrt(r k)``
    (``k = hidden + 1``) and ``A`` starts at zero: the whitened stream has unit scale in
    every direction it uses, so a random ``A``, or one Adam step on all ``r k`` terms of
    each output at once, would otherwise make a large edit.
    """

    def __init__(
        self,
        latent_size: int,
        width: int,
        rank: int,
        hidden: int,
        whiten: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        self.hidden = nn.Sequential(nn.Linear(latent_size, hidden), nn.ReLU())
        scale = INITIAL_EDIT_SCALE if whiten is None else 0.0
        self.a = nn.Parameter(torch.randn(width, rank * (hidden + 1)) * scale)
        self.b = nn.Parameter(torch.randn(width, rank, hidden + 1) / width**0.5)
        self.register_buffer("whiten", whiten)
        self.edit_scale = 1.0 if whiten is None else (rank * (hidden + 1)) ** -0.5

    def forward(self, z: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """The edit ``U(z) e``: ``z (..., n_z)``, ``e (..., width)`` -> ``(..., width)``."""
        if self.whiten is not None:
            e = e @ self.whiten  # S is symmetric
        g = self.features(z)
        y = (torch.einsum("...w,wrk->...rk", e, self.b) * g[..., None, :]).sum(-1)  # B(z)^T e
        outer = (y[..., :, None] * g[..., None, :]).flatten(-2)  # (..., r * k)
        return outer @ self.a.T * self.edit_scale  # A(z) y

    def matrix(self, z: torch.Tensor) -> torch.Tensor:
        """``U(z)`` itself, ``(..., width, width)``: for a few codes applied to many tokens
        (the code book's), one matrix per code is cheaper than a pass per token."""
        g = self.features(z)
        width, rank, k = self.b.shape
        a = torch.einsum("wrk,...k->...wr", self.a.reshape(width, rank, k), g)  # A(z)
        b = torch.einsum("wrk,...k->...wr", self.b, g)  # B(z)
        u = a @ b.transpose(-1, -2) * self.edit_scale
        return u if self.whiten is None else u @ self.whiten

    def features(self, z: torch.Tensor) -> torch.Tensor:
        """``g(z) = [relu(W z + b), 1]``, ``(..., k)``: ``A`` and ``B`` are linear in it."""
        g = self.hidden(z)
        return torch.cat([g, torch.ones_like(g[..., :1])], dim=-1)


class MetaController(nn.Module):
    def __init__(
        self,
        width: int,
        cfg: MetacontrollerConfig,
        forced: bool = False,
        whiten: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        self.forced = forced
        self.episode_summary = cfg.episode_summary
        self.hard_switch = cfg.hard_switch
        self.switch_noise = cfg.switch_noise
        self.switch_gradient = cfg.switch_gradient
        self.switch_at = cfg.switch_at
        self.binary_codes = cfg.binary_codes
        self.encoder_reads = cfg.encoder_reads
        self.lookahead = cfg.encoder_lookahead
        self.window = cfg.encoder_window
        self.encoder_change = cfg.encoder_change
        self.summary_size = cfg.summary_size
        self.summary = (
            None
            if cfg.encoder_reads == "future_mean"
            else nn.GRU(width, cfg.summary_size, batch_first=True, bidirectional=True)
        )
        self.history = nn.GRU(width, cfg.history_size, batch_first=True)
        encoder_inputs = {
            "all": width + cfg.history_size + 2 * cfg.summary_size,
            "future": cfg.summary_size,
            "future_mean": 2 * width if cfg.encoder_change else width,
        }[cfg.encoder_reads]
        self.encoder = nn.Sequential(
            nn.Linear(encoder_inputs, cfg.hidden),
            nn.ReLU(),
            nn.Linear(cfg.hidden, 2 * cfg.latent_size),
        )
        self.gate_reads_change = cfg.gate_reads_change
        gate_inputs = (2 if cfg.gate_reads_change else 1) * width + cfg.history_size
        self.switch_context = nn.Linear(gate_inputs, cfg.hidden)
        self.switch_latent = nn.Linear(cfg.latent_size, cfg.hidden, bias=False)
        self.switch_out = nn.Linear(cfg.hidden, 1)
        nn.init.constant_(self.switch_out.bias, INITIAL_SWITCH_LOGIT)
        with torch.no_grad():
            self.encoder[-1].bias[cfg.latent_size :] = INITIAL_LOG_VARIANCE
        self.decoder = LowRankDecoder(cfg.latent_size, width, cfg.rank, cfg.decoder_hidden, whiten)
        if cfg.read_whitened and whiten is None:
            raise ValueError("read_whitened reads the stream through the decoder's S: pass whiten.")
        self.read_whitened = cfg.read_whitened
        self.latent_size = cfg.latent_size
        self.history_size = cfg.history_size

    def normalise(self, e: torch.Tensor) -> torch.Tensor:
        """The residual stream as the metacontroller's networks read it: layer-normalised,
        or whitened by the decoder's ``S`` with ``read_whitened`` (every direction the stream
        uses at unit scale, the small ones included)."""
        if self.read_whitened:
            return e @ self.decoder.whiten  # S is symmetric
        return F.layer_norm(e, e.shape[-1:])

    def summarise(self, e: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The non-causal summary ``s`` of normalised episodes ``e (E, T, width)``, given at
        every step ``(E, T, 2 * summary_size)``: constant over an episode when
        ``episode_summary``, else the bidirectional states at each step."""
        packed = nn.utils.rnn.pack_padded_sequence(
            e, lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        states, final = self.summary(packed)
        if self.episode_summary:
            return final.transpose(0, 1).flatten(1)[:, None].expand(-1, e.shape[1], -1)
        states, _ = nn.utils.rnn.pad_packed_sequence(
            states, batch_first=True, total_length=e.shape[1]
        )
        return states

    def look_ahead(self, future: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``future (E, T, n)`` read ``lookahead`` steps later (the last step's, near the end)."""
        if not self.lookahead:
            return future
        later = torch.arange(future.shape[1], device=future.device)[None] + self.lookahead
        later = torch.minimum(later, lengths.to(future.device)[:, None] - 1).clamp_min(0)
        return future.gather(1, later[..., None].expand(-1, -1, future.shape[-1]))

    def future_mean(self, e: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The mean of ``e (E, T, n)`` over steps ``t + lookahead .. t + lookahead + window - 1``
        of each episode, at every step ``t``; the window is cut at the episode's end, and
        near the end it is the last step alone. With ``encoder_change``, followed by the
        window's change (its last step's ``e`` minus its first's): ``(E, T, 2 n)``."""
        num, steps, _ = e.shape
        lengths = lengths.to(e.device)[:, None]
        t = torch.arange(steps, device=e.device)[None]
        # before[:, i]: the sum of the episode's steps < i
        before = F.pad((e * (t < lengths)[..., None]).cumsum(1), (0, 0, 1, 0))
        start = torch.minimum(t + self.lookahead, lengths - 1).clamp_min(0)
        end = torch.maximum(torch.minimum(start + self.window, lengths), start + 1)

        def at(index: torch.Tensor) -> torch.Tensor:
            return before.gather(1, index[..., None].expand(num, -1, e.shape[-1]))

        mean = (at(end) - at(start)) / (end - start)[..., None]
        if not self.encoder_change:
            return mean
        change = e.gather(1, (end - 1)[..., None].expand_as(e)) - e.gather(
            1, start[..., None].expand_as(e)
        )
        return torch.cat([mean, change], dim=-1)

    def gate_context(
        self, e: torch.Tensor, e_previous: torch.Tensor, history: torch.Tensor
    ) -> torch.Tensor:
        """The gate's first layer on the normalised stream ``e_t``, the history ``h_t-1`` and,
        with ``gate_reads_change``, the stream's change ``e_t - e_t-1`` (any leading shape)."""
        inputs = [e, history, e - e_previous] if self.gate_reads_change else [e, history]
        return self.switch_context(torch.cat(inputs, dim=-1))

    def gate(
        self, context: torch.Tensor, z_previous: torch.Tensor, first: bool, noisy: bool = False
    ) -> torch.Tensor:
        """``beta_t`` ``(N,)`` from the gate's ``context`` and ``z_t-1``; 1 at an
        episode's first step and at every step when forced. ``noisy`` adds logistic noise
        of scale ``switch_noise`` to the logit (a sample of a relaxed Bernoulli gate)."""
        if self.forced or first:
            return torch.ones(len(context), device=context.device)
        hidden = F.relu(context + self.switch_latent(z_previous))
        logit = self.switch_out(hidden)[..., 0]
        if noisy and self.switch_noise:
            u = torch.rand_like(logit).clamp(1e-6, 1 - 1e-6)
            logit = logit + self.switch_noise * torch.logit(u)  # a logistic sample
        return torch.sigmoid(logit)

    def forward(
        self,
        e: torch.Tensor,
        lengths: torch.Tensor,
        sample: bool = True,
        switches: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Episodes ``e (E, T, width)`` padded after ``lengths`` -> codes, gates and edits.

        Returns ``z``, ``mu``, ``log_var``, ``proposal`` ``(E, T, n_z)``, ``beta`` and the
        gate's ``switch_probability`` before rounding ``(E, T)``, and
        ``edit`` ``(E, T, width)``, zero after each episode's end (the decoder, the costliest
        part, runs on the episodes' own steps only). ``sample=False`` uses ``z~ = mu`` and
        a noiseless gate. ``switches`` ``(E, T)`` of 0 and 1, when given, replace the gate.
        """
        num, steps, _ = e.shape
        residual, e = e, self.normalise(e)
        history, _ = self.history(e)
        history = torch.cat([torch.zeros_like(history[:, :1]), history[:, :-1]], dim=1)  # h_t-1
        if self.encoder_reads == "future_mean":
            encoder_input = self.future_mean(e, lengths)
        elif self.encoder_reads == "future":  # the backward summary of steps t+k..T only
            encoder_input = self.look_ahead(
                self.summarise(e, lengths)[..., self.summary_size :], lengths
            )
        else:
            encoder_input = torch.cat([e, history, self.summarise(e, lengths)], dim=-1)
        mu, log_var = self.encoder(encoder_input).chunk(2, dim=-1)
        proposal = mu + torch.randn_like(mu) * (0.5 * log_var).exp() if sample else mu
        if self.binary_codes:
            proposal = SignStraightThrough.apply(proposal)
        context = self.gate_context(e, torch.cat([e[:, :1], e[:, :-1]], dim=1), history)
        z_previous = torch.zeros(num, self.latent_size, device=e.device)
        codes, betas, probabilities = [], [], []
        for t in range(steps):
            if switches is None:
                probability = self.gate(context[:, t], z_previous, first=t == 0, noisy=sample)
            else:
                probability = switches[:, t].to(proposal.dtype)
            if self.switch_gradient != "straight_through":  # it learns from a scored loss
                beta = (probability.detach() >= SWITCH_THRESHOLD).to(probability.dtype)
            elif self.hard_switch:
                beta = RoundStraightThrough.apply(probability)
            else:
                beta = probability
            z_previous = beta[:, None] * proposal[:, t] + (1 - beta[:, None]) * z_previous
            codes.append(z_previous)
            betas.append(beta)
            probabilities.append(probability)
        z = torch.stack(codes, dim=1)
        return {
            "z": z,
            "mu": mu,
            "log_var": log_var,
            "proposal": proposal,
            "beta": torch.stack(betas, dim=1),
            "switch_probability": torch.stack(probabilities, dim=1),
            "edit": self.decode(z, residual, lengths),
        }

    def decode(self, z: torch.Tensor, e: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The edits ``U(z_t) e_t`` of episodes ``z (E, T, n_z)``, ``e (E, T, width)`` padded
        after ``lengths``: decoded on the episodes' own steps (the decoder is the costliest
        part), zero after each episode's end."""
        steps = e.shape[1]
        in_episode = torch.arange(steps, device=e.device)[None] < lengths.to(e.device)[:, None]
        edit = torch.zeros_like(e)
        edit[in_episode] = self.decoder(z[in_episode], e[in_episode]).to(edit.dtype)
        return edit


def given_switches(
    meta: MetaController, layout: EpisodeLayout, batch: Batch
) -> torch.Tensor | None:
    """The switches ``(E, T)`` to impose on ``meta`` for ``batch``: with
    ``switch_at="true_changes"``, 1 at each episode's first step and wherever its labelled
    subgoal changes; otherwise (and when forced) ``None``: the gate decides."""
    if meta.switch_at == "gate" or meta.forced:
        return None
    device = layout.lengths.device
    subgoal = layout.to_episodes(torch.as_tensor(batch.subgoal, device=device), fill=IGNORE)
    labelled = subgoal != IGNORE
    switches = torch.ones(subgoal.shape, device=device)
    switches[:, 1:] = (
        (subgoal[:, 1:] != subgoal[:, :-1]) & labelled[:, 1:] & labelled[:, :-1]
    ).float()
    return switches


def random_switches(layout: EpisodeLayout, rate: float) -> torch.Tensor:
    """Switches ``(E, T)`` for the code phase: 1 at each episode's first step and, at every
    other step, with probability ``rate`` (no labels: the codes learn what a segment of
    random length ahead holds)."""
    shape, device = (layout.num_episodes, layout.steps), layout.lengths.device
    switches = (torch.rand(shape, device=device) < rate).float()
    switches[:, 0] = 1
    return switches


def freeze_codes(meta: MetaController) -> None:
    """Leave only the gate (the ``switch_*`` layers) trainable: encoder, history and decoder,
    hence the codes and their meaning, stay as they are."""
    for name, parameter in meta.named_parameters():
        if not name.startswith("switch_"):
            parameter.requires_grad_(False)


def nearest_switch_codes(z: torch.Tensor, beta: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """For every step of episodes ``z (E, T, n_z)``, the code nearest to its own among those
    chosen at a switch (``beta >= SWITCH_THRESHOLD``, ``valid`` steps) in another episode of
    the batch; its own code where no other episode switched. Detached: a donor, not a target."""
    z = z.detach()
    switch = (beta.detach() >= SWITCH_THRESHOLD) & valid
    pool, pool_episode = z[switch], switch.nonzero()[:, 0]
    num, steps, size = z.shape
    flat = z.reshape(-1, size)
    if not len(pool):
        return z
    episode = torch.arange(num, device=z.device).repeat_interleave(steps)
    distance = torch.cdist(flat, pool)
    distance[episode[:, None] == pool_episode[None]] = float("inf")
    nearest = distance.min(1)
    donors = torch.where(nearest.values.isfinite()[:, None], pool[nearest.indices], flat)
    return donors.reshape(num, steps, size)


def kl_to_prior(mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """``KL(N(mu, diag(exp(log_var))) || N(0, I))`` summed over the last axis."""
    return 0.5 * (mu.square() + log_var.exp() - 1 - log_var).sum(-1)


class EpisodeLayout:
    """Maps the tokens of packed windows ``(B, L)`` to padded episodes ``(E, T)`` and back."""

    def __init__(self, batch: Batch, device: torch.device) -> None:
        valid = batch.episode != IGNORE
        _, episode = np.unique(batch.episode[valid], return_inverse=True)
        position = batch.position[valid]
        self.num_episodes = int(episode.max()) + 1
        self.lengths = torch.as_tensor(
            np.bincount(episode, minlength=self.num_episodes), device=device
        )
        self.steps = int(self.lengths.max())
        self.valid = torch.as_tensor(valid, device=device)
        self.index = (
            torch.as_tensor(episode, device=device),
            torch.as_tensor(position, device=device),
        )

    def to_episodes(self, x: torch.Tensor, fill: float = 0) -> torch.Tensor:
        """``(B, L, ...)`` -> ``(E, T, ...)``, ``fill`` after each episode's end."""
        out = x.new_full((self.num_episodes, self.steps, *x.shape[2:]), fill)
        out[self.index] = x[self.valid]
        return out

    def to_windows(self, x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """``(E, T, ...)`` -> ``(B, L, ...)`` shaped like ``like``, zero at padding."""
        out = torch.zeros_like(like)
        out[self.valid] = x[self.index].to(out.dtype)
        return out


def switch_scores(
    beta: np.ndarray, subgoal_index: np.ndarray, lengths: np.ndarray, tolerance: int = 1
) -> dict[str, float]:
    """Switches (``beta >= SWITCH_THRESHOLD``) against the true subgoal changes of padded episodes.

    ``lengths`` counts each episode's tokens (observations); steps ``1 .. len - 2`` (those
    that choose an action, less the first, where every code starts) are scored. A predicted switch is a hit when a true change lies within ``tolerance`` steps; a true
    change is found when a predicted switch lies within ``tolerance`` steps. Also the share
    of gate values below 0.1 or above 0.9 (``beta_binary_fraction``).
    """
    hits = predicted = found = changes = 0
    binary, count = 0, 0
    for b, labels, length in zip(beta, subgoal_index, lengths):
        b, labels = b[1 : length - 1], labels[: length - 1]
        switch = np.flatnonzero(b >= SWITCH_THRESHOLD) + 1
        change = np.flatnonzero(labels[1:] != labels[:-1]) + 1
        if len(switch) and len(change):
            gap = np.abs(switch[:, None] - change[None, :])
            hits += int((gap.min(1) <= tolerance).sum())
            found += int((gap.min(0) <= tolerance).sum())
        predicted, changes = predicted + len(switch), changes + len(change)
        binary += int(((b < 0.1) | (b > 0.9)).sum())
        count += len(b)
    precision = hits / max(predicted, 1)
    recall = found / max(changes, 1)
    return {
        "switch_f1": 2 * precision * recall / max(precision + recall, 1e-9),
        "switch_precision": precision,
        "switch_recall": recall,
        "beta_binary_fraction": binary / max(count, 1),
        "switches_per_episode": predicted / max(len(lengths), 1),
        "changes_per_episode": changes / max(len(lengths), 1),
    }
