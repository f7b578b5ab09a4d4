"""Hawk (De et al. 2024, "Griffin"): residual blocks around a gated linear recurrence.

A block is ``x + mix(norm(x))`` then ``x + mlp(norm(x))``. Its temporal mixing has two
branches: ``gelu(W_g x)`` and ``W_u x`` through a causal depthwise convolution (width 4)
and the real-gated linear recurrent unit (RG-LRU):

    r_t = sigmoid(W_a u_t),  i_t = sigmoid(W_i u_t),  log a_t = -c * r_t * softplus(-L)
    h_t = a_t * h_t-1 + sqrt(1 - a_t^2) * (i_t * u_t)

with ``c = 8`` and one learned ``L`` per channel. Training runs whole packed windows with a
parallel scan; rollouts step one token at a time with constant memory. In a packed window
the state and the convolution restart where a new episode begins (``keep == 0``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

GATE_POWER = 8.0  # c: the recurrence gate raises a to a power in [0, c]
CONV_WIDTH = 4
DECAY_RANGE = (0.9, 0.999)  # a^c at initialisation, uniform per channel (the paper's range)


def linear_scan(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``h_t = a_t * h_t-1 + b_t`` from ``h_-1 = 0`` along dim 1, for ``a, b (B, T, ...)``.

    The gradient is the same recurrence run backwards in time, ``g_t = dL/dh_t +
    a_t+1 g_t+1``, giving ``dL/db_t = g_t`` and ``dL/da_t = g_t h_t-1``: the backward pass
    keeps only ``a`` and ``h`` instead of every pass of the scan.
    """
    return _LinearScan.apply(a, b)


def doubling_scan(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hillis-Steele doubling on pairs ``(a, b)``: ``log2 T`` vectorised passes, each
    composing every step with the one ``offset`` earlier. It only multiplies values in
    [0, 1] (no division by a cumulative product), so it is exact for any decay."""
    offset, steps = 1, a.shape[1]
    while offset < steps:
        b = torch.cat([b[:, :offset], b[:, offset:] + a[:, offset:] * b[:, :-offset]], dim=1)
        a = torch.cat([a[:, :offset], a[:, offset:] * a[:, :-offset]], dim=1)
        offset *= 2
    return b


class _LinearScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        h = doubling_scan(a, b)
        ctx.save_for_backward(a, h)
        return h

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a, h = ctx.saved_tensors
        a_next = torch.cat([a[:, 1:], torch.zeros_like(a[:, :1])], dim=1)
        g = doubling_scan(a_next.flip(1), grad.flip(1)).flip(1)
        h_previous = torch.cat([torch.zeros_like(h[:, :1]), h[:, :-1]], dim=1)
        return g * h_previous, g


def episode_keep(segments: torch.Tensor) -> torch.Tensor:
    """``(B, T)`` float: 1 where a token continues the previous token's episode, else 0."""
    keep = torch.zeros(segments.shape, device=segments.device)
    keep[:, 1:] = (segments[:, 1:] == segments[:, :-1]).float()
    return keep


class RGLRU(nn.Module):
    """The real-gated linear recurrent unit, one channel per feature."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.recurrence_gate = nn.Linear(width, width)
        self.input_gate = nn.Linear(width, width)
        decay = torch.empty(width).uniform_(*DECAY_RANGE) ** (1 / GATE_POWER)
        self.decay_logit = nn.Parameter(torch.log(decay / (1 - decay)))  # a = sigmoid(L)

    def coefficients(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``a_t`` and ``b_t = sqrt(1 - a_t^2) * i_t * u_t`` of ``h_t = a_t h_t-1 + b_t``,
        in float32 whatever the autocast (products of many decays need the precision)."""
        with torch.autocast(u.device.type, enabled=False):
            u = u.float()
            log_a = (
                -GATE_POWER * torch.sigmoid(self.recurrence_gate(u)) * F.softplus(-self.decay_logit)
            )
            scale = torch.sqrt((-torch.expm1(2 * log_a)).clamp(min=1e-6))  # bounded gradient
            return log_a.exp(), scale * torch.sigmoid(self.input_gate(u)) * u

    def forward(self, u: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        a, b = self.coefficients(u)
        return linear_scan(a * keep[..., None], b)

    def step(self, u: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        a, b = self.coefficients(u)
        return a * state + b


class CausalConv(nn.Module):
    """Depthwise causal convolution over time that does not look across episode starts."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(CONV_WIDTH, width) / math.sqrt(CONV_WIDTH))
        self.bias = nn.Parameter(torch.zeros(width))

    def forward(self, u: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        steps = u.shape[1]
        padded = F.pad(u, (0, 0, CONV_WIDTH - 1, 0))
        continues = F.pad(keep, (CONV_WIDTH - 1, 0))  # keep[t]: token t continues t - 1
        out, same = self.bias + self.weight[0] * u, torch.ones_like(keep)
        for lag in range(1, CONV_WIDTH):
            start = CONV_WIDTH - 1 - lag
            same = same * continues[:, start + 1 : start + 1 + steps]
            out = out + self.weight[lag] * padded[:, start : start + steps] * same[..., None]
        return out

    def step(self, u: torch.Tensor, past: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``u (B, width)`` and the last ``CONV_WIDTH - 1`` inputs ``(B, CONV_WIDTH - 1, width)``
        (newest first) -> this step's output and the updated inputs."""
        window = torch.cat([u[:, None], past], dim=1)  # (B, CONV_WIDTH, width), newest first
        return self.bias + (window * self.weight).sum(1), window[:, :-1]


class RecurrentBlock(nn.Module):
    """Hawk's residual block: the gated RG-LRU mixing, then a gated MLP, each pre-normed."""

    def __init__(self, width: int, mlp_width: int) -> None:
        super().__init__()
        self.norm_mix, self.norm_mlp = nn.RMSNorm(width), nn.RMSNorm(width)
        self.gate, self.value = nn.Linear(width, width), nn.Linear(width, width)
        self.conv, self.lru = CausalConv(width), RGLRU(width)
        self.mix_out = nn.Linear(width, width)
        self.mlp_gate, self.mlp_value = nn.Linear(width, mlp_width), nn.Linear(width, mlp_width)
        self.mlp_out = nn.Linear(mlp_width, width)

    def forward(
        self, x: torch.Tensor, keep: torch.Tensor, cache: dict | None = None
    ) -> torch.Tensor:
        """Whole windows ``x (B, T, width)`` with ``keep (B, T)``; or, with ``cache``, one step
        ``x (B, 1, width)`` continuing the episodes whose state ``cache`` holds."""
        y = self.norm_mix(x)
        u = self.value(y)
        if cache is None:
            u = self.lru(self.conv(u, keep), keep)
        else:
            u, cache["conv"] = self.conv.step(u[:, 0], cache.get("conv", self._no_past(u)))
            cache["h"] = self.lru.step(u, cache.get("h", torch.zeros_like(u)))
            u = cache["h"][:, None]
        x = x + self.mix_out(F.gelu(self.gate(y)) * u)
        y = self.norm_mlp(x)
        return x + self.mlp_out(F.gelu(self.mlp_gate(y)) * self.mlp_value(y))

    @staticmethod
    def _no_past(u: torch.Tensor) -> torch.Tensor:
        return u.new_zeros(u.shape[0], CONV_WIDTH - 1, u.shape[-1])
