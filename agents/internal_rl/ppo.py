"""Critic-free PPO-clip, as the paper uses for internal RL and for its baselines.

A trajectory's advantage is its return normalised over the batch,
``(R - mean) / (std + 1e-3)``, shared by every decision in it. A *learner* says what is
trained (its ``module``), how it collects a batch, where its decisions are and their
log-probabilities; :func:`train_ppo` is the loop, checkpointed every
``checkpoint_interval`` iterations.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import torch
from torch import nn
from tqdm import tqdm

from agents.internal_rl.config import RLConfig
from agents.internal_rl.rollouts import Trajectories
from agents.internal_rl.run_dir import MetricsLog, load_checkpoint, save_checkpoint


class Learner(Protocol):
    module: nn.Module

    def collect(self, episodes: int, seed: int, greedy: bool = False) -> Trajectories:
        """``episodes`` episodes of the env batch seeded ``seed``, the policy sampling its
        choices (or taking its most likely ones, ``greedy``)."""
        ...

    def decisions(self, trajectories: Trajectories) -> torch.Tensor:
        """``(N, T)`` bool: the steps where the learner chose something."""
        ...

    def log_prob(self, trajectories: Trajectories, index: torch.Tensor) -> torch.Tensor:
        """``(n, T)`` log-probabilities of the choices of episodes ``index``."""
        ...


def normalised_returns(returns: torch.Tensor) -> torch.Tensor:
    return (returns - returns.mean()) / (returns.std(correction=0) + 1e-3)


def ppo_clip_loss(
    log_prob: torch.Tensor,
    old_log_prob: torch.Tensor,
    advantages: torch.Tensor,
    decisions: torch.Tensor,
    clip: float,
) -> torch.Tensor:
    """Negative clipped surrogate, averaged over decisions; ``advantages (N,)`` per trajectory."""
    ratio = (log_prob - old_log_prob).exp()
    advantage = advantages[:, None]
    surrogate = torch.minimum(ratio * advantage, ratio.clamp(1 - clip, 1 + clip) * advantage)
    weight = decisions.float()
    return -(surrogate * weight).sum() / weight.sum().clamp(min=1)


def train_ppo(
    learner: Learner,
    cfg: RLConfig,
    lr: float,
    directory: Path,
    seed: int,
    desc: str,
) -> list[dict]:
    """``cfg.iterations`` batches of ``cfg.batch_size`` fresh episodes; returns the curve
    (success rate of each batch against the episodes seen so far). Resumable; metrics go
    to ``directory / metrics.jsonl``."""
    optimizer = torch.optim.Adam(learner.module.parameters(), lr=lr)
    iteration, curve = 0, []
    state = load_checkpoint(directory / "checkpoint.pt")
    if state is not None:
        learner.module.load_state_dict(state["module"])
        optimizer.load_state_dict(state["optimizer"])
        iteration, curve = state["iteration"], state["curve"]
    log = MetricsLog(directory / "metrics.jsonl", resume_step=iteration)
    generator = torch.Generator().manual_seed(seed)
    progress = tqdm(total=cfg.iterations, initial=iteration, desc=desc, unit="batch")
    while iteration < cfg.iterations:
        trajectories = learner.collect(cfg.batch_size, batch_seed(seed, iteration, cfg.batch_size))
        advantages = normalised_returns(trajectories.success)
        decisions = learner.decisions(trajectories)
        everyone = torch.arange(trajectories.num_episodes, device=decisions.device)
        with torch.no_grad():
            old_log_prob = learner.log_prob(trajectories, everyone)
        losses = []
        for _ in range(cfg.epochs):
            order = torch.randperm(trajectories.num_episodes, generator=generator)
            for index in order.split(cfg.minibatch_size):
                index = index.to(decisions.device)
                loss = ppo_clip_loss(
                    learner.log_prob(trajectories, index),
                    old_log_prob[index],
                    advantages[index],
                    decisions[index],
                    cfg.clip,
                )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                losses.append(loss.item())
        iteration += 1
        point = {
            "iteration": iteration,
            "episodes": iteration * cfg.batch_size,
            "success_rate": round(trajectories.success.mean().item(), 5),
            "mean_progress": round(float(trajectories.progress.mean()), 3),
        }
        curve.append(point)
        log.log(
            step=iteration,
            **point,
            loss=round(sum(losses) / len(losses), 6),
            decisions_per_episode=round(decisions.sum().item() / trajectories.num_episodes, 3),
        )
        progress.update(1)
        progress.set_postfix(success=f"{point['success_rate']:.3f}")
        if iteration % cfg.checkpoint_interval == 0 or iteration == cfg.iterations:
            save_checkpoint(
                directory / "checkpoint.pt",
                {
                    "module": learner.module.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "iteration": iteration,
                    "curve": curve,
                },
            )
    progress.close()
    return curve


def episodes_to_reach(curve: list[dict], level: float) -> int | None:
    """Episodes seen when a batch first succeeded at ``level`` or more (None: never)."""
    return next((p["episodes"] for p in curve if p["success_rate"] >= level), None)


def batch_seed(seed: int, iteration: int, batch_size: int) -> int:
    """Env seed of training batch ``iteration``: a batch's ``batch_size`` envs take seeds
    ``batch_seed .. batch_seed + batch_size - 1``, so batches never share a layout, nor
    runs of other seeds (below 2**32 episodes each) or the final evaluation."""
    return 2**41 + seed * 2**32 + iteration * batch_size


def evaluation_seed(seed: int) -> int:
    """Env seed of the final evaluation: disjoint from every training batch's seeds."""
    return 2**40 + seed
