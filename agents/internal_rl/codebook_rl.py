"""Diagnostic: internal RL's learner with an ideal code book.

At the first step and wherever the env's subgoal changes, a categorical policy (a GRU over
the residual stream at the controlled layer) picks one of the supervised controllers of
stage ``controllers`` and holds it until the next change; the same critic-free PPO as
internal RL, on the post-training task with its sparse reward. It measures the RL half of
internal RL alone: what the learner reaches when the abstract actions are subgoals that
hold and the switch times are right. Needs a run whose ``controllers`` stage finished::

    python -m agents.internal_rl.codebook_rl --out runs/HierGrid-v0-quick-0 --iterations 150
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from agents.internal_rl.base_model import BaseModel, draw_categorical
from agents.internal_rl.config import DEVICES
from agents.internal_rl.controllers import LowRankControllers, load_controllers
from agents.internal_rl.observations import Featurizer
from agents.internal_rl.pipeline import resolve_device
from agents.internal_rl.probes import load_base_model
from agents.internal_rl.rl import plot_curves, run_internal_rl
from agents.internal_rl.rollouts import ChoicePolicy, Trajectories, rollout
from agents.internal_rl.run_dir import RunDir

STAGE = "codebook_rl"


class CodebookAgent:
    """The controller hook for one batch of envs: a new choice where the subgoal changed."""

    def __init__(
        self,
        policy: ChoicePolicy,
        controllers: LowRankControllers,
        generator: torch.Generator,
        greedy: bool = False,
    ) -> None:
        self.policy, self.controllers, self.generator = policy, controllers, generator
        self.greedy = greedy
        self.subgoal_index: torch.Tensor | None = None
        self.state: torch.Tensor | None = None
        self.choice: torch.Tensor | None = None
        self.residuals: list[torch.Tensor] = []
        self.choices: list[torch.Tensor] = []
        self.decisions: list[torch.Tensor] = []

    def controller_for(self, step: int, info: dict):
        index = torch.as_tensor(np.asarray(info["subgoal_index"]))
        new = torch.ones_like(index, dtype=torch.bool)
        if self.subgoal_index is not None:
            new = index != self.subgoal_index
        self.subgoal_index = index

        def hook(x: torch.Tensor) -> torch.Tensor:
            residual = x[:, 0]
            hidden, self.state = self.policy.rnn(residual[:, None], self.state)
            sample = draw_categorical(self.policy.head(hidden[:, 0]), self.generator, self.greedy)
            decide = new.to(sample.device)
            self.choice = (
                sample if self.choice is None else torch.where(decide, sample, self.choice)
            )
            self.residuals.append(residual)
            self.choices.append(self.choice)
            self.decisions.append(decide)
            return self.controllers.edit(self.choice[:, None])(x)

        return hook

    def record(self, trajectories: Trajectories) -> Trajectories:
        steps = trajectories.alive.shape[1]
        trajectories.residuals = torch.stack(self.residuals[:steps], dim=1)
        trajectories.latents = torch.stack(self.choices[:steps], dim=1)
        trajectories.switches = torch.stack(self.decisions[:steps], dim=1) & trajectories.alive
        return trajectories


class CodebookLearner:
    """PPO on the choice of controller at each true subgoal change; everything else frozen."""

    def __init__(
        self,
        model: BaseModel,
        featurizer: Featurizer,
        controllers: LowRankControllers,
        policy: ChoicePolicy,
        env_id: str,
        device: torch.device,
    ) -> None:
        self.model, self.featurizer, self.controllers = model, featurizer, controllers
        self.module, self.env_id, self.device = policy, env_id, device

    def collect(self, episodes: int, seed: int, greedy: bool = False) -> Trajectories:
        generator = torch.Generator(device=self.device).manual_seed(seed + 1)
        agent = CodebookAgent(self.module, self.controllers, generator, greedy)
        trajectories = rollout(
            self.model,
            self.featurizer,
            self.env_id,
            episodes,
            seed,
            self.device,
            agent.controller_for,
        )
        return agent.record(trajectories)

    def decisions(self, trajectories: Trajectories) -> torch.Tensor:
        return trajectories.switches

    def log_prob(self, trajectories: Trajectories, index: torch.Tensor) -> torch.Tensor:
        return self.module.log_prob(trajectories.residuals[index], trajectories.latents[index])


def run_codebook_rl(
    out: Path, iterations: int | None, seed: int | None, device: torch.device
) -> dict:
    """Train and score the code-book learner of run ``out`` (with the run's seed unless
    ``seed`` is given); results in ``out/codebook_rl``."""
    run = RunDir(out)
    config = run.read_config()
    if seed is not None:
        config = dataclasses.replace(config, seed=seed)
    model, featurizer = load_base_model(run, config, device)
    controllers = load_controllers(run, device)
    torch.manual_seed(config.seed + 29)
    policy = ChoicePolicy(model.config.width, len(controllers.A), config.rl.policy_size)
    learner = CodebookLearner(
        model, featurizer, controllers, policy.to(device), config.env_id, device
    )
    cfg = dataclasses.replace(config.rl, iterations=iterations or config.rl.iterations)
    directory = run.stage_dir(STAGE)
    result = run_internal_rl(learner, cfg, cfg.lr, directory, config.seed, "code-book RL")
    (directory / "result.json").write_text(json.dumps(result))
    plot_curves({"code-book RL": result["curve"]}, directory / "success.png")
    return result


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m agents.internal_rl.codebook_rl", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--out", type=Path, required=True, help="a run directory")
    parser.add_argument(
        "--iterations", type=int, help="PPO batches (default: the run's rl.iterations)"
    )
    parser.add_argument("--seed", type=int, help="seed (default: the run's)")
    parser.add_argument("--device", default="auto", choices=DEVICES, help="(default: auto)")
    args = parser.parse_args(argv)
    result = run_codebook_rl(args.out, args.iterations, args.seed, resolve_device(args.device))
    result.pop("curve")
    print("[codebook_rl] " + ", ".join(f"{k} {v}" for k, v in result.items()))


if __name__ == "__main__":
    main()
