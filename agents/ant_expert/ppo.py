"""PPO for the ant walker, CleanRL style: Gaussian actor, separate critic, GAE, clipping.

The actor sees canonical features (see ``hier_envs.ant.walker``): commands within
+-45 degrees of the torso's x axis, every sample standing for all four quarter turns.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


@dataclass
class PPOConfig:
    num_envs: int = 64
    rollout_steps: int = 64
    epochs: int = 10
    minibatch_size: int = 1024
    lr: float = 3e-4
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip: float = 0.2
    value_coef: float = 0.5
    max_grad_norm: float = 0.5
    hidden: int = 256


class RunningMeanStd:
    """Running mean and variance (Chan et al.'s parallel update)."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.mean, self.var, self.count = np.zeros(shape), np.ones(shape), 1e-4

    def update(self, x: np.ndarray) -> None:
        mean, var, n = x.mean(0), x.var(0), len(x)
        delta, total = mean - self.mean, self.count + n
        self.mean = self.mean + delta * n / total
        self.var = (self.var * self.count + var * n + delta**2 * self.count * n / total) / total
        self.count = total

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(self.var + 1e-8)


def _mlp(sizes: list[int], out_std: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        linear = nn.Linear(a, b)
        last = i == len(sizes) - 2
        nn.init.orthogonal_(linear.weight, out_std if last else np.sqrt(2))
        nn.init.zeros_(linear.bias)
        layers += [linear] if last else [linear, nn.Tanh()]
    return nn.Sequential(*layers)


class ActorCritic(nn.Module):
    def __init__(self, num_features: int, num_actions: int, hidden: int) -> None:
        super().__init__()
        self.actor = _mlp([num_features, hidden, hidden, num_actions], out_std=0.01)
        self.critic = _mlp([num_features, hidden, hidden, 1], out_std=1.0)
        self.log_std = nn.Parameter(torch.full((num_actions,), -0.5))

    def distribution(self, obs: torch.Tensor) -> torch.distributions.Normal:
        return torch.distributions.Normal(self.actor(obs), self.log_std.exp())

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.critic(obs).squeeze(-1)


def advantages(
    rewards: torch.Tensor,  # (T, N)
    values: torch.Tensor,  # (T, N)
    next_values: torch.Tensor,  # (T, N): value of the state after each step (0 if terminal)
    episode_ends: torch.Tensor,  # (T, N): 1 where an episode ended (terminal or truncated)
    gamma: float,
    gae_lambda: float,
) -> torch.Tensor:
    """Generalised advantage estimates; truncated episodes bootstrap from their last state."""
    adv = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[0])
    for t in reversed(range(len(rewards))):
        delta = rewards[t] + gamma * next_values[t] - values[t]
        running = delta + gamma * gae_lambda * (1.0 - episode_ends[t]) * running
        adv[t] = running
    return adv


def ppo_loss(
    model: ActorCritic,
    obs: torch.Tensor,
    actions: torch.Tensor,
    old_log_prob: torch.Tensor,
    adv: torch.Tensor,
    returns: torch.Tensor,
    config: PPOConfig,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Clipped surrogate + value loss on one minibatch."""
    log_prob = model.distribution(obs).log_prob(actions).sum(-1)
    ratio = (log_prob - old_log_prob).exp()
    adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    policy_loss = -torch.min(
        ratio * adv, ratio.clamp(1 - config.clip, 1 + config.clip) * adv
    ).mean()
    value_loss = 0.5 * (model.value(obs) - returns).pow(2).mean()
    clip_fraction = ((ratio - 1).abs() > config.clip).float().mean().item()
    return policy_loss + config.value_coef * value_loss, {
        "policy_loss": policy_loss.item(),
        "value_loss": value_loss.item(),
        "clip_fraction": clip_fraction,
    }
