"""Stage ``report``: internal RL against the baselines (the paper's Fig. 8) and a text summary."""

from __future__ import annotations

import json

import torch

from agents.internal_rl.baselines import baseline_curves
from agents.internal_rl.config import RunConfig
from agents.internal_rl.rl import plot_curves
from agents.internal_rl.run_dir import RunDir

SUMMARY_LINES = (
    ("expert success (pretraining tasks)", "expert.success_rate"),
    ("expert success (post task)", "expert.post_success_rate"),
    ("base model: held-out action accuracy", "base_model.action_accuracy"),
    ("base model: held-out squared error of mean torques", "base_model.action_mse"),
    ("base model: valid rate of its own rollouts", "base_model.valid_rate"),
    ("probe accuracy by layer", "probe.accuracy_by_layer"),
    ("supervised controllers composed (post task)", "controllers.post_success_rate"),
    ("metacontroller: switch F1", "metacontroller.switch_f1"),
    ("metacontroller: beta binary fraction", "metacontroller.beta_binary_fraction"),
    ("code of subgoal k held: next subgoal is k", "generalisation.reach_rate_with_code"),
    ("  the same episodes without the code", "generalisation.reach_rate_without_code"),
    ("  unseen transitions, with the code", "generalisation.unseen_reach_rate_with_code"),
    ("  unseen transitions, without", "generalisation.unseen_reach_rate_without_code"),
    ("action NLL, each episode's own codes", "generalisation.transfer_nll_own"),
    ("  a code of the same subgoal, other episode", "generalisation.transfer_nll_same_subgoal"),
    ("  a code of another subgoal", "generalisation.transfer_nll_other_subgoal"),
    ("  no code", "generalisation.transfer_nll_no_code"),
    ("internal RL: success (post task, held-out)", "internal_rl.success_rate"),
    ("internal RL: success / expert's", "internal_rl.success_normalised"),
    ("internal RL: colours reached in order", "internal_rl.mean_progress"),
    ("internal RL: success, greedy policy", "internal_rl.greedy_success_rate"),
    ("internal RL: episodes to reach 0.9", "internal_rl.episodes_to_0.9"),
)


def shown(value: object) -> str:
    """A summary value as the report prints it: floats to 3 decimals, lists of them too;
    None (a level never reached) as "never"."""
    if value is None:
        return "never"
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, list):
        return "[" + ", ".join(shown(v) for v in value) + "]"
    return str(value)


ONE_ENV_ONLY = ("base_model.action_accuracy", "base_model.action_mse")
"""Summary keys that only one kind of env has (discrete or continuous actions)."""


def normalised_successes(summary: dict) -> dict[str, float]:
    """``<learner>.success_normalised``: each success rate on the post task divided by the
    expert's (the paper's figure for the ant)."""
    expert = summary.get("expert.post_success_rate")
    if not expert:
        return {}
    return {
        key.replace("success_rate", "success_normalised"): value / expert
        for key, value in summary.items()
        if key.endswith("success_rate") and key.startswith(("internal_rl.", "baselines."))
    }


def text_report(summary: dict) -> str:
    lines = [
        f"{label:<50} {shown(summary.get(key, 'not run'))}"
        for label, key in SUMMARY_LINES
        if key in summary or key not in ONE_ENV_ONLY
    ]
    for key in sorted(
        k for k in summary if k.startswith("baselines.") and k.endswith(".success_rate")
    ):
        name = key.split(".")[1]
        progress = shown(summary.get(f"baselines.{name}.mean_progress", "not run"))
        greedy = shown(summary.get(f"baselines.{name}.greedy_success_rate", "not run"))
        lines.append(f"{'baseline ' + name + ': success (post task)':<50} {shown(summary[key])}")
        lines.append(f"{'baseline ' + name + ': colours reached in order':<50} {progress}")
        lines.append(f"{'baseline ' + name + ': success, greedy policy':<50} {greedy}")
    wall = sum(v for k, v in summary.items() if k.startswith("wall_time_s."))
    lines.append(f"{'wall time of the stages so far':<50} {wall / 60:.1f} min")
    return "\n".join(lines)


def run_report_stage(run: RunDir, config: RunConfig, device: torch.device) -> None:
    curves = {"internal RL": json.loads((run.stage_dir("rl") / "result.json").read_text())["curve"]}
    curves |= {
        name.replace("_", " "): curve for name, curve in baseline_curves(run, config).items()
    }
    plot_curves(curves, run.plots / "success.png")
    report = text_report(run.update_summary(normalised_successes(run.summary())))
    (run.path / "report.txt").write_text(report + "\n")
    print(f"[report] plots in {run.plots}\n{report}")
