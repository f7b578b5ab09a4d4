"""Diagnostic: the code book's ceiling on the post-training task.

Internal RL over the code book (``rl.policy=codebook``) with an oracle for a policy: where
the metacontroller's switch fires, the oracle takes the abstract action of the env's true
current subgoal (its majority cluster at the held-out switches, as the ``codebook`` stage
scores it). No policy can do better with these switches and these abstract actions unless
it finds choices that beat the subgoals' own. The result also says where the oracle fails:
by the colours reached in order, by the wrong colour entered, and how often it stepped off a
colour and straight back onto it. Needs a run whose ``codebook`` stage finished::

    python -m agents.internal_rl.codebook_oracle --out runs/HierGrid-v0-quick-0
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from agents.internal_rl.codebook import CodeBook, load_codebook
from agents.internal_rl.codebook_training import cluster_scores, heldout_switch_codes
from agents.internal_rl.config import DEVICES
from agents.internal_rl.metacontroller import MetaController
from agents.internal_rl.pipeline import resolve_device
from agents.internal_rl.ppo import evaluation_seed
from agents.internal_rl.rl import load_frozen_agent
from agents.internal_rl.rollouts import ChoicePolicy, CodeBookAgent, Trajectories, rollout
from agents.internal_rl.run_dir import RunDir

STAGE = "codebook_oracle"


class OracleAgent(CodeBookAgent):
    """The code-book agent with the true subgoal's cluster for a policy."""

    def __init__(
        self,
        meta: MetaController,
        codebook: CodeBook,
        cluster_of_subgoal: torch.Tensor,
        width: int,
        num_envs: int,
        device: torch.device,
    ) -> None:
        unused = ChoicePolicy(width, len(codebook), 1).to(device)  # its state is kept, not read
        generator = torch.Generator(device=device)
        super().__init__(meta, codebook, unused, num_envs, generator, device)
        self.cluster_of_subgoal = cluster_of_subgoal
        self.subgoal = torch.zeros(num_envs, dtype=torch.long, device=device)

    def controller_for(self, step: int, info: dict) -> OracleAgent:
        """The rollout's hook: reads the env's current subgoal before each step."""
        self.subgoal = torch.as_tensor(np.asarray(info["subgoal"]), device=self.choice.device)
        return self

    def propose(self, e: torch.Tensor, first: bool) -> torch.Tensor:
        return self.cluster_of_subgoal[self.subgoal]


def failures_by_progress(trajectories: Trajectories) -> dict[str, list[int]]:
    """Failed episodes by the colours reached in order before the end, split into those
    that entered a wrong colour and those that ran out of steps."""
    failed = trajectories.success.cpu().numpy() == 0
    timed_out = trajectories.timed_out
    size = int(trajectories.progress.max()) + 2
    return {
        key: np.bincount(trajectories.progress[failed & mask], minlength=size).tolist()
        for key, mask in (("wrong_colour", ~timed_out), ("timeout", timed_out))
    }


def wrong_colour_endings(trajectories: Trajectories) -> tuple[np.ndarray, np.ndarray]:
    """The failed episodes that ended by entering a wrong colour, and each one's last step."""
    last = trajectories.alive.sum(1).cpu().numpy() - 1
    failed = (trajectories.success.cpu().numpy() == 0) & ~trajectories.timed_out
    rows = np.flatnonzero(failed)
    return rows, last[rows]


def wrong_colours(trajectories: Trajectories) -> dict[str, dict[str, int]]:
    """Failed episodes that entered a wrong colour: by the colours reached in order before
    it, then by the colour entered."""
    rows, last = wrong_colour_endings(trajectories)
    counts = Counter(
        zip(trajectories.progress[rows].tolist(), trajectories.visited[rows, last].tolist())
    )
    result: dict[str, dict[str, int]] = {}
    for (progress, colour), count in sorted(counts.items()):
        result.setdefault(str(progress), {})[str(colour)] = count
    return result


def step_backs(trajectories: Trajectories) -> int:
    """Failed episodes whose last step re-entered the colour entered two steps before (it
    stepped off a colour and straight back onto it)."""
    rows, last = wrong_colour_endings(trajectories)
    rows, last = rows[last >= 2], last[last >= 2]
    visited = trajectories.visited
    return int((visited[rows, last] == visited[rows, last - 2]).sum())


def run_codebook_oracle(out: Path, episodes: int, device: torch.device) -> dict:
    """Score the oracle on ``episodes`` held-out post-training episodes of run ``out``;
    results in ``out/codebook_oracle/result.json``."""
    run = RunDir(out)
    config = run.read_config()
    model, featurizer, meta = load_frozen_agent(run, config, device, "metacontroller", False)
    codebook = load_codebook(run, device)
    codes, subgoals = heldout_switch_codes(model, meta, featurizer, run, config, device)
    _, majority = cluster_scores(codebook.nearest(codes).cpu().numpy(), subgoals.cpu().numpy())
    lookup = torch.zeros(max(majority) + 1, dtype=torch.long, device=device)
    for subgoal, cluster in majority.items():
        lookup[subgoal] = cluster
    agent = OracleAgent(meta, codebook, lookup, model.config.width, episodes, device)
    seed = evaluation_seed(config.seed)
    trajectories = agent.record(
        rollout(model, featurizer, config.env_id, episodes, seed, device, agent.controller_for)
    )
    result = {
        "success_rate": trajectories.success.mean().item(),
        "mean_progress": float(trajectories.progress.mean()),
        "switches_per_episode": trajectories.switches.sum().item() / episodes,
        "cluster_of_subgoal": majority,
        "failures_by_progress": failures_by_progress(trajectories),
        "wrong_colours": wrong_colours(trajectories),
        "step_backs": step_backs(trajectories),
    }
    directory = run.stage_dir(STAGE)
    (directory / "result.json").write_text(json.dumps(result))
    return result


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m agents.internal_rl.codebook_oracle", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--out", type=Path, required=True, help="a run directory")
    parser.add_argument("--episodes", type=int, default=1_000, help="(default: 1000)")
    parser.add_argument("--device", default="auto", choices=DEVICES, help="(default: auto)")
    args = parser.parse_args(argv)
    result = run_codebook_oracle(args.out, args.episodes, resolve_device(args.device))
    print("[codebook_oracle] " + ", ".join(f"{k} {v}" for k, v in result.items()))


if __name__ == "__main__":
    main()
