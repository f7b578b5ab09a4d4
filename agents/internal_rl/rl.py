"""Stage ``rl``: internal RL on the post-training task, and the learners of its baselines.

The environment of internal RL is the real env + the frozen base model + the
metacontroller's decoder and switch; the policy (:class:`LatentPolicy`) emits a code
``z`` only where the switch fires, and the base model acts under ``U(z)`` in between.
Raw-action RL fine-tunes the base model itself on the same task with the same algorithm.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from matplotlib.figure import Figure
from matplotlib.ticker import EngFormatter

from agents.internal_rl.base_model import BaseModel
from agents.internal_rl.codebook import CodeBook, load_codebook
from agents.internal_rl.config import ConfigError, RLConfig, RunConfig
from agents.internal_rl.metacontroller import MetaController
from agents.internal_rl.metacontroller_training import load_metacontroller
from agents.internal_rl.observations import Featurizer
from agents.internal_rl.ppo import (
    episodes_to_reach,
    evaluation_seed,
    train_ppo,
)
from agents.internal_rl.probes import load_base_model
from agents.internal_rl.rollouts import (
    ChoicePolicy,
    LatentPolicy,
    Trajectories,
    agent_rollout,
    rollout,
)
from agents.internal_rl.run_dir import RunDir, save_checkpoint


class InternalRLLearner:
    """PPO on the codes chosen at switches (or, with a ``codebook``, on the abstract actions
    chosen there); base model, metacontroller and code book frozen."""

    def __init__(
        self,
        model: BaseModel,
        featurizer: Featurizer,
        meta: MetaController,
        policy: LatentPolicy | ChoicePolicy,
        env_id: str,
        device: torch.device,
        codebook: CodeBook | None = None,
    ) -> None:
        self.model, self.featurizer, self.meta, self.module = model, featurizer, meta, policy
        self.env_id, self.device, self.codebook = env_id, device, codebook

    def collect(self, episodes: int, seed: int, greedy: bool = False) -> Trajectories:
        return agent_rollout(
            self.model,
            self.featurizer,
            self.meta,
            self.module,
            self.env_id,
            episodes,
            seed,
            self.device,
            self.codebook,
            greedy,
        )

    def decisions(self, trajectories: Trajectories) -> torch.Tensor:
        return trajectories.switches

    def log_prob(self, trajectories: Trajectories, index: torch.Tensor) -> torch.Tensor:
        return self.module.log_prob(trajectories.residuals[index], trajectories.latents[index])


class RawActionLearner:
    """PPO on raw actions, fine-tuning the base model (the paper's first baseline)."""

    def __init__(
        self, model: BaseModel, featurizer: Featurizer, env_id: str, device: torch.device
    ) -> None:
        self.module, self.featurizer, self.env_id, self.device = model, featurizer, env_id, device

    def collect(self, episodes: int, seed: int, greedy: bool = False) -> Trajectories:
        self.module.eval()
        return rollout(
            self.module, self.featurizer, self.env_id, episodes, seed, self.device, greedy=greedy
        )

    def decisions(self, trajectories: Trajectories) -> torch.Tensor:
        return trajectories.alive

    def log_prob(self, trajectories: Trajectories, index: torch.Tensor) -> torch.Tensor:
        features, actions = trajectories.features[index], trajectories.actions[index]
        segments = torch.zeros(features.shape[:2], dtype=torch.long, device=features.device)
        params = self.module(features, segments).action
        return self.module.action_distribution(params).log_prob(actions)


def run_internal_rl(
    learner: InternalRLLearner | RawActionLearner,
    cfg: RLConfig,
    lr: float,
    directory: Path,
    seed: int,
    desc: str,
) -> dict:
    """Train with PPO, then score the final policy on ``cfg.eval_episodes`` held-out
    episodes, sampling its choices as in training and, on the same layouts, taking its most
    likely ones (``greedy_*``, as Stable-Baselines3 evaluates deterministically)."""
    curve = train_ppo(learner, cfg, lr, directory, seed, desc)
    save_checkpoint(directory / "policy.pt", {"module": learner.module.state_dict()})
    final = learner.collect(cfg.eval_episodes, evaluation_seed(seed))
    greedy = learner.collect(cfg.eval_episodes, evaluation_seed(seed), greedy=True)
    return {
        "success_rate": final.success.mean().item(),
        "mean_progress": float(final.progress.mean()),
        "greedy_success_rate": greedy.success.mean().item(),
        "greedy_mean_progress": float(greedy.progress.mean()),
        "episodes": curve[-1]["episodes"],
        "episodes_to_0.9": episodes_to_reach(curve, 0.9),
        "decisions_per_episode": learner.decisions(final).sum().item() / final.num_episodes,
        "curve": curve,
    }


def load_frozen_agent(
    run: RunDir, config: RunConfig, device: torch.device, directory: str, forced: bool
) -> tuple[BaseModel, Featurizer, MetaController]:
    model, featurizer = load_base_model(run, config, device)
    meta = load_metacontroller(
        run.stage_dir(directory) / "metacontroller.pt",
        model,
        config.metacontroller,
        device,
        forced,
    )
    return model, featurizer, meta


def new_policy(
    model: BaseModel, config: RunConfig, device: torch.device, choices: int | None = None
) -> LatentPolicy | ChoicePolicy:
    """The untrained policy: the Gaussian over codes, or over ``choices`` abstract actions."""
    torch.manual_seed(config.seed + 23)
    width, size = model.config.width, config.rl.policy_size
    if choices is not None:
        return ChoicePolicy(
            width, choices, size, config.rl.policy_reads_choice, config.rl.keep_bias
        ).to(device)
    return LatentPolicy(width, config.metacontroller.latent_size, size).to(device)


def require_trained_gate(config: RunConfig) -> None:
    """Refuse RL on a metacontroller whose switches come from labels (``switch_at``)."""
    if config.metacontroller.switch_at != "gate":
        raise ConfigError(
            f"metacontroller.switch_at={config.metacontroller.switch_at} is a diagnostic: its "
            "switches come from the data's labels and its gate is never trained, so internal "
            "RL has no switches to act at. Rerun the metacontroller stage with "
            "metacontroller.switch_at=gate (the default)."
        )


def load_internal_rl_agent(
    run: RunDir, config: RunConfig, device: torch.device
) -> InternalRLLearner:
    """The frozen base model, metacontroller and (``rl.policy=codebook``) code book of run
    ``run``, with an untrained policy."""
    require_trained_gate(config)
    model, featurizer, meta = load_frozen_agent(run, config, device, "metacontroller", False)
    codebook = load_codebook(run, device) if config.rl.policy == "codebook" else None
    choices = None if codebook is None else len(codebook)
    policy = new_policy(model, config, device, choices)
    return InternalRLLearner(model, featurizer, meta, policy, config.env_id, device, codebook)


def run_rl_stage(run: RunDir, config: RunConfig, device: torch.device) -> None:
    learner = load_internal_rl_agent(run, config, device)
    directory = run.stage_dir("rl")
    result = run_internal_rl(
        learner,
        config.rl,
        config.rl.lr,
        directory,
        config.seed,
        "internal RL",
    )
    (directory / "result.json").write_text(json.dumps(result))
    curve = result.pop("curve")
    run.update_summary({f"internal_rl.{k}": v for k, v in result.items()})
    print("[rl] internal RL: " + ", ".join(f"{k} {v}" for k, v in result.items()))
    plot_curves({"internal RL": curve}, run.plots / "internal_rl.png")


def plot_curves(curves: dict[str, list[dict]], path: Path) -> None:
    """Success of each training batch against the episodes seen (the paper's Fig. 8), and
    beside it the colours of the task reached in order (progress a sparse reward hides)."""
    figure = Figure(figsize=(11, 3.8))
    success, progress = figure.subplots(1, 2)
    for label, curve in curves.items():
        episodes = [p["episodes"] for p in curve]
        success.plot(episodes, [p["success_rate"] for p in curve], label=label)
        progress.plot(episodes, [p["mean_progress"] for p in curve], label=label)
    success.set_ylabel("success rate (post-training task)")
    success.set_ylim(-0.02, 1.02)
    progress.set_ylabel("colours reached in order (mean)")
    progress.set_ylim(bottom=0)
    for axis in (success, progress):
        axis.set_xlabel("RL episodes")
        axis.xaxis.set_major_formatter(EngFormatter(sep=""))
    success.legend()
    figure.tight_layout()
    figure.savefig(path)
