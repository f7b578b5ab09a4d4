"""Stage ``baselines``: the paper's comparisons, each given the RL stage's number of episodes.

- ``raw_action_rl``: PPO on raw actions, fine-tuning the base model itself;
- ``forced_switch``: a metacontroller trained and used with ``beta = 1`` at every step
  (the policy picks a new code at every step), then internal RL;
- ``cotrained``: a fresh base model trained together with the metacontroller, then
  internal RL on the pair.

Each writes ``baselines/<name>/result.json`` when it finishes; an interrupted stage
skips the finished ones and resumes the current one from its checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

from agents.internal_rl.base_training import build_model
from agents.internal_rl.config import RunConfig
from agents.internal_rl.metacontroller_training import fit_metacontroller, load_metacontroller
from agents.internal_rl.probes import configure_for_later_stages, load_base_model
from agents.internal_rl.rl import (
    InternalRLLearner,
    RawActionLearner,
    new_policy,
    require_trained_gate,
    run_internal_rl,
)
from agents.internal_rl.run_dir import RunDir

BASELINES = ("raw_action_rl", "forced_switch", "cotrained")


def raw_action_rl(run: RunDir, config: RunConfig, device: torch.device, directory: Path) -> dict:
    model, featurizer = load_base_model(run, config, device)
    model.requires_grad_(True)
    learner = RawActionLearner(model, featurizer, config.env_id, device)
    return run_internal_rl(
        learner,
        config.rl,
        config.baselines.raw_action_lr,
        directory,
        config.seed,
        "raw-action RL",
    )


def forced_switch(run: RunDir, config: RunConfig, device: torch.device, directory: Path) -> dict:
    model, featurizer = load_base_model(run, config, device)
    return _metacontroller_then_rl(
        run, config, device, directory, model, featurizer, forced=True, steps=None
    )


def cotrained(run: RunDir, config: RunConfig, device: torch.device, directory: Path) -> dict:
    _, featurizer = load_base_model(run, config, device)
    torch.manual_seed(config.seed + 31)
    model = configure_for_later_stages(build_model(featurizer, config.base).to(device), config)
    return _metacontroller_then_rl(
        run,
        config,
        device,
        directory,
        model,
        featurizer,
        forced=False,
        steps=config.baselines.cotrain_steps,
    )


def _metacontroller_then_rl(
    run, config, device, directory, model, featurizer, forced: bool, steps: int | None
) -> dict:
    """Train a metacontroller (with ``model`` too when it is trainable), freeze, internal RL.
    In one phase: these baselines set their own switching (every step; the paper's joint
    training), so a ``code_phase`` of the metacontroller's config does not apply to them.
    A trainable model's stream is not measured for whitening: its metacontroller reads it
    layer-normalised whatever ``read_whitened`` says."""
    trainable = any(p.requires_grad for p in model.parameters())
    cfg = config.metacontroller
    own = dataclasses.replace(
        cfg,
        code_phase=0.0,
        random_switch_rate=0.0,
        read_whitened=cfg.read_whitened and not trainable,
    )
    config = dataclasses.replace(config, metacontroller=own)
    directory.mkdir(parents=True, exist_ok=True)
    weights = directory / "metacontroller.pt"
    if not weights.exists():
        fit_metacontroller(
            run,
            config,
            device,
            model,
            featurizer,
            directory,
            config.seed + 11,
            forced,
            steps,
            f"{directory.name} metacontroller",
        )
    model.requires_grad_(False).eval()
    meta = load_metacontroller(weights, model, config.metacontroller, device, forced)
    learner = InternalRLLearner(
        model, featurizer, meta, new_policy(model, config, device), config.env_id, device
    )
    rl_directory = directory / "rl"
    rl_directory.mkdir(exist_ok=True)
    return run_internal_rl(
        learner, config.rl, config.rl.lr, rl_directory, config.seed, f"{directory.name} RL"
    )


RUNNERS = {"raw_action_rl": raw_action_rl, "forced_switch": forced_switch, "cotrained": cotrained}


def enabled_baselines(config: RunConfig) -> list[str]:
    return [name for name in BASELINES if getattr(config.baselines, name)]


def run_baselines_stage(run: RunDir, config: RunConfig, device: torch.device) -> None:
    require_trained_gate(config)
    scores = {}
    for name in enabled_baselines(config):
        directory = run.stage_dir("baselines") / name
        directory.mkdir(parents=True, exist_ok=True)
        result_path = directory / "result.json"
        if result_path.exists():
            print(f"[baselines] {name} finished earlier: kept")
            result = json.loads(result_path.read_text())
        else:
            print(f"[baselines] {name}")
            result = RUNNERS[name](run, config, device, directory)
            result_path.write_text(json.dumps(result))
        scores |= {f"baselines.{name}.{k}": v for k, v in result.items() if k != "curve"}
    run.update_summary(scores)
    print("[baselines] " + ", ".join(f"{k} {v}" for k, v in scores.items()))


def baseline_curves(run: RunDir, config: RunConfig) -> dict[str, list[dict]]:
    """Name -> curve of every finished baseline."""
    curves = {}
    for name in enabled_baselines(config):
        path = run.stage_dir("baselines") / name / "result.json"
        if path.exists():
            curves[name] = json.loads(path.read_text())["curve"]
    return curves
