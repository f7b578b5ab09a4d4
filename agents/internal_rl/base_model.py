"""The causal base model: a stack of pre-norm residual blocks, one token per observation.

Two backbones share one interface: a transformer with relative position bias
(nanoGPT-style; the paper's grid model) and Hawk's gated linear recurrence (``ssm.py``;
the paper's ant model). Heads: the action ``a_t`` and the next observation ``o_t+1``.
Grid: logits of the discrete action and of the agent's next cell (the only changing part
of ``o_t+1``: walls and colours are copied from ``o_t``). Ant (``continuous``): a
diagonal Gaussian over the torques and a regression of ``o_t+1``.

Training runs on packed windows where a token sees only earlier tokens of its own
episode; rollouts run incrementally, batched over many envs, with a key/value cache
(transformer) or the recurrent state (SSM). ``controller`` edits the residual stream
after layer ``controlled_layer`` (``e <- e + U e``), the hook of the controllers and the
metacontroller. ``attention_span`` limits how far back the transformer attends.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from agents.internal_rl.config import BACKBONES
from agents.internal_rl.ssm import RecurrentBlock, episode_keep

Controller = Callable[[torch.Tensor], torch.Tensor]  # residual (..., width) -> edit (..., width)


LOG_STD_RANGE = (-5.0, 2.0)  # of the Gaussian action head


@dataclass(frozen=True)
class ModelConfig:
    num_features: int
    num_actions: int  # discrete actions, or the dimensions of a continuous action
    num_next: int  # cells of the grid (classes), or dimensions of the next observation
    num_layers: int = 6
    width: int = 256
    num_heads: int = 4
    mlp_width: int = 512
    position_buckets: int = 32  # transformer only
    max_distance: int = 128  # transformer only
    backbone: str = "transformer"  # or "ssm"
    continuous: bool = False  # Gaussian actions and a regressed next observation (the ant)


def draw_categorical(
    logits: torch.Tensor, generator: torch.Generator | None, greedy: bool = False
) -> torch.Tensor:
    """One index per row of ``logits``: drawn with ``generator``, or the most likely one."""
    if greedy:
        return logits.argmax(-1)
    return torch.multinomial(logits.float().softmax(-1), 1, generator=generator)[:, 0]


def draw_gaussian(
    mean: torch.Tensor,
    std: torch.Tensor,
    generator: torch.Generator | None,
    greedy: bool = False,
) -> torch.Tensor:
    """A draw from the diagonal Gaussian ``N(mean, std^2)`` with ``generator``, or its mean."""
    if greedy:
        return mean
    return mean + std * torch.randn(mean.shape, generator=generator, device=mean.device)


def relative_buckets(distance: torch.Tensor, buckets: int, max_distance: int) -> torch.Tensor:
    """T5's causal buckets of ``distance = i - j >= 0``: exact for small, logarithmic for large."""
    exact = buckets // 2
    log_bucket = (
        exact
        + (
            torch.log(distance.float().clamp(min=1) / exact)
            / math.log(max_distance / exact)
            * (buckets - exact)
        ).long()
    )
    return torch.where(distance < exact, distance, log_bucket.clamp(max=buckets - 1))


def append_to_cache(cache: dict, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Keys and values ``(B, H, t, D)`` of ``t`` new steps written after the cached ones;
    returns those of every step so far. The buffers double when full, so a rollout of T
    steps copies O(T) keys, not the O(T^2) of concatenating at each step."""
    start = cache.get("length", 0)
    stop = start + k.shape[2]
    if "k" not in cache or stop > cache["k"].shape[2]:
        for name, new in (("k", k), ("v", v)):
            buffer = new.new_empty(*new.shape[:2], max(64, 2 * stop), new.shape[3])
            if name in cache:
                buffer[:, :, :start] = cache[name][:, :, :start]
            cache[name] = buffer
    cache["k"][:, :, start:stop], cache["v"][:, :, start:stop] = k, v
    cache["length"] = stop
    return cache["k"][:, :, :stop], cache["v"][:, :, :stop]


class Attention(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.heads = config.num_heads
        self.qkv = nn.Linear(config.width, 3 * config.width)
        self.proj = nn.Linear(config.width, config.width)

    def forward(
        self, x: torch.Tensor, bias: torch.Tensor, cache: dict | None = None
    ) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(x).split(c, dim=2)
        q, k, v = (z.view(b, t, self.heads, c // self.heads).transpose(1, 2) for z in (q, k, v))
        if cache is not None:  # incremental: attend to the cached steps and these
            k, v = append_to_cache(cache, k, v)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # fused attention
        return self.proj(y.transpose(1, 2).reshape(b, t, c))


class Block(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(config.width), nn.LayerNorm(config.width)
        self.attn = Attention(config)
        self.mlp = nn.Sequential(
            nn.Linear(config.width, config.mlp_width),
            nn.ReLU(),
            nn.Linear(config.mlp_width, config.width),
        )

    def forward(
        self, x: torch.Tensor, bias: torch.Tensor, cache: dict | None = None
    ) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), bias, cache)
        return x + self.mlp(self.ln2(x))


@dataclass
class Output:
    action: torch.Tensor  # (B, T, num_actions) logits, or (B, T, 2 * num_actions) mean, log std
    next: torch.Tensor  # (B, T, num_next): next-cell logits, or the predicted next observation
    residuals: list[
        torch.Tensor
    ]  # input of each layer and the final stream: L + 1 of (B, T, width)


class BaseModel(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.backbone not in BACKBONES:
            raise ValueError(f"Unknown backbone {config.backbone!r}: choose one of {BACKBONES}.")
        self.config = config
        self.recurrent = config.backbone == "ssm"
        self.encoder = nn.Linear(config.num_features, config.width)
        self.blocks = nn.ModuleList(
            RecurrentBlock(config.width, config.mlp_width) if self.recurrent else Block(config)
            for _ in range(config.num_layers)
        )
        if not self.recurrent:
            self.position_bias = nn.Embedding(config.position_buckets, config.num_heads)
        self.ln_f = nn.LayerNorm(config.width)
        action_outputs = config.num_actions * (2 if config.continuous else 1)
        self.action_head = nn.Linear(config.width, action_outputs)
        self.next_head = nn.Linear(config.width, config.num_next)
        self.controlled_layer = config.num_layers // 2  # L/2, where the paper's controllers edit
        self.attention_span: int | None = None  # transformer: tokens of its episode a token
        # attends to, itself included (None: its whole past)
        self.apply(self._init)
        self._register_load_state_dict_pre_hook(self._rename_old_keys)
        self._register_load_state_dict_pre_hook(self._check_inputs)

    @staticmethod
    def _rename_old_keys(state: dict, prefix: str, *args) -> None:
        """Weights saved before the next-observation head was renamed still load."""
        for key in [k for k in state if k.startswith(prefix + "next_cell_head.")]:
            state[key.replace("next_cell_head.", "next_head.", 1)] = state.pop(key)

    def _check_inputs(self, state: dict, prefix: str, *args) -> None:
        """Weights trained on other input features are refused with a message that says so
        (the ant's navigation features gained ``speed`` on 2026-12-07: 57 -> 61 inputs)."""
        weight = state.get(prefix + "encoder.weight")
        if weight is not None and weight.shape[1] != self.config.num_features:
            raise ValueError(
                f"These base-model weights read {weight.shape[1]} input features per step, "
                f"this version's featurizer gives {self.config.num_features}: they were trained "
                "by another version of agents.internal_rl. Rerun the base stage and the stages "
                "after it (a fresh --out), or use the version that trained them."
            )

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)

    def context(self, segments: torch.Tensor) -> torch.Tensor:
        """What every block reads besides the stream: where each token's episode begins
        (SSM: ``(B, T)``, 0 at an episode's first token) or the attention bias (transformer)."""
        return episode_keep(segments) if self.recurrent else self.attention_bias(segments)

    def attention_bias(self, segments: torch.Tensor) -> torch.Tensor:
        """``(B, H, T, T)``: relative position bias, -inf outside the token's own past in its episode.

        An episode's tokens are contiguous and in order in a window, so the distance
        between two tokens of one episode is the difference of their indices: the bias
        is one ``(H, T, T)`` table for the whole batch (cheap to differentiate).
        """
        index = torch.arange(segments.shape[1], device=segments.device)
        distance = index[:, None] - index[None, :]
        buckets = relative_buckets(
            distance.clamp(min=0), self.config.position_buckets, self.config.max_distance
        )
        bias = self.position_bias(buckets).permute(2, 0, 1)  # (H, T, T)
        allowed = (distance >= 0) & (segments[:, :, None] == segments[:, None, :])  # (B, T, T)
        if self.attention_span is not None:
            allowed &= distance < self.attention_span
        return bias.masked_fill(~allowed[:, None], float("-inf"))

    def forward(
        self,
        features: torch.Tensor,  # (B, T, num_features)
        segments: torch.Tensor,  # (B, T) episode id of each token; episodes contiguous, in order
        controller: Controller | None = None,
    ) -> Output:
        context = self.context(segments)
        x = self.encoder(features)
        residuals = []
        for i, block in enumerate(self.blocks):
            if controller is not None and i == self.controlled_layer:
                x = x + controller(x)
            residuals.append(x)
            x = block(x, context)
        residuals.append(x)
        x = self.ln_f(x)
        return Output(self.action_head(x), self.next_head(x), residuals)

    def to_controlled_layer(
        self, features: torch.Tensor, segments: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The residual stream entering layer ``controlled_layer`` (before any edit) and the
        blocks' context: the input of a controller, computed once when the base is frozen."""
        context = self.context(segments)
        x = self.encoder(features)
        for block in self.blocks[: self.controlled_layer]:
            x = block(x, context)
        return x, context

    def from_controlled_layer(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """Action logits from the (edited) residual stream at ``controlled_layer``."""
        for block in self.blocks[self.controlled_layer :]:
            x = block(x, context)
        return self.action_head(self.ln_f(x))

    def step_bias(self, position: int, device: torch.device) -> torch.Tensor:
        """``(1, H, 1, position + 1)``: the bias of the token at ``position`` to it and its past."""
        distance = torch.arange(position, -1, -1, device=device)
        buckets = relative_buckets(distance, self.config.position_buckets, self.config.max_distance)
        bias = self.position_bias(buckets).T[None, :, None, :]
        if self.attention_span is not None:
            bias = bias.masked_fill(distance >= self.attention_span, float("-inf"))
        return bias

    def new_cache(self) -> list[dict]:
        return [{} for _ in self.blocks]

    def step(
        self,
        features: torch.Tensor,  # (B, num_features): this step's observation of every env
        position: int,
        cache: list[dict],
        controller: Controller | None = None,
    ) -> Output:
        """One incremental step for a batch of envs that all started together (``cache``
        holds their keys and values, or their recurrent state)."""
        context = None if self.recurrent else self.step_bias(position, features.device)
        x = self.encoder(features[:, None])
        residuals = []
        for i, (block, layer_cache) in enumerate(zip(self.blocks, cache)):
            if controller is not None and i == self.controlled_layer:
                x = x + controller(x)
            residuals.append(x)
            x = block(x, context, layer_cache)
        residuals.append(x)
        x = self.ln_f(x)
        return Output(
            self.action_head(x)[:, 0], self.next_head(x)[:, 0], [r[:, 0] for r in residuals]
        )

    # --- the action and next-observation distributions ------------------------------

    def action_distribution(self, params: torch.Tensor) -> torch.distributions.Distribution:
        """``p(a_t | o_1:t)`` from the action head's output: categorical, or diagonal Gaussian."""
        if not self.config.continuous:
            return torch.distributions.Categorical(logits=params.float())
        mean, log_std = params.float().chunk(2, dim=-1)
        std = log_std.clamp(*LOG_STD_RANGE).exp()
        return torch.distributions.Independent(torch.distributions.Normal(mean, std), 1)

    def sample_action(
        self, params: torch.Tensor, generator: torch.Generator | None, greedy: bool = False
    ) -> torch.Tensor:
        """An action per row of ``params``: drawn with ``generator``, or the most likely one."""
        if not self.config.continuous:
            return draw_categorical(params, generator, greedy)
        distribution = self.action_distribution(params).base_dist
        return draw_gaussian(distribution.mean, distribution.stddev, generator, greedy)

    def next_nll(self, params: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per-token ``-log p(o_t+1 | o_1:t)`` up to a constant: cross-entropy of the next
        cell, or half the squared error of the next observation (unit-variance Gaussian).
        ``target``: ``(B, T)`` cells (IGNORE-free) or ``(B, T, num_next)`` observations."""
        if not self.config.continuous:
            return F.cross_entropy(
                params.float().flatten(0, 1), target.flatten(), reduction="none"
            ).view(target.shape)
        return 0.5 * (params.float() - target).square().sum(-1)
