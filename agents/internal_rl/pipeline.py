"""The pipeline: the ordered registry of stages and the loop that runs them.

A stage is a function ``run(run_dir, config, device) -> None``. It reads its inputs from
the run directory (the outputs of the stages it ``requires``), writes its outputs under
``run_dir.stage_dir(name)``, logs metrics with ``run_dir.metrics(name)``, records its
headline numbers with ``run_dir.update_summary`` and saves plots in ``run_dir.plots``.
Returning normally marks it done, and later runs skip it. A stage that was interrupted
is called again on the next run and may continue from its own checkpoint
(``run_dir.load_checkpoint``).

Adding a stage: write its function and its config (``config.py``), and add it to
:data:`STAGES` in pipeline order.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from agents.internal_rl.base_training import run_base_stage
from agents.internal_rl.baselines import run_baselines_stage
from agents.internal_rl.codebook_training import run_codebook_stage
from agents.internal_rl.config import ConfigError, RunConfig
from agents.internal_rl.controllers import run_controllers_stage
from agents.internal_rl.data import run_data_stage
from agents.internal_rl.generalisation import run_generalisation_stage
from agents.internal_rl.metacontroller_training import run_metacontroller_stage
from agents.internal_rl.probes import run_probe_stage
from agents.internal_rl.report import run_report_stage
from agents.internal_rl.rl import run_rl_stage
from agents.internal_rl.run_dir import RunDir, RunDirError

StageFn = Callable[[RunDir, RunConfig, torch.device], None]


@dataclass(frozen=True)
class Stage:
    function: StageFn
    requires: tuple[str, ...]  # stages whose outputs this one reads
    description: str


STAGES: dict[str, Stage] = {
    "data": Stage(
        run_data_stage, (), "expert episodes on the pretraining tasks, with subgoal labels"
    ),
    "base": Stage(
        run_base_stage, ("data",), "causal base model (transformer or SSM) imitating the expert"
    ),
    "probe": Stage(run_probe_stage, ("data", "base"), "linear probes: residual stream -> subgoal"),
    "controllers": Stage(
        run_controllers_stage,
        ("data", "base"),
        "a residual controller per subgoal, composed on the post task",
    ),
    "metacontroller": Stage(
        run_metacontroller_stage,
        ("data", "base"),
        "self-supervised latent codes and switching gate on the frozen base",
    ),
    "generalisation": Stage(
        run_generalisation_stage,
        ("data", "base", "metacontroller"),
        "codes injected in other layouts: do they send the agent to their subgoal?",
    ),
    "codebook": Stage(
        run_codebook_stage,
        ("data", "base", "metacontroller"),
        "the switch codes clustered into abstract actions, with a refitted decoder",
    ),
    "rl": Stage(
        run_rl_stage,
        ("base", "metacontroller", "codebook"),
        "internal RL: a policy over codes, acting at switches, on the post task",
    ),
    "baselines": Stage(
        run_baselines_stage,
        ("data", "base"),
        "raw-action RL, forced switching, co-trained metacontroller (same episodes)",
    ),
    "report": Stage(
        run_report_stage, ("rl",), "success vs episodes of every method, and a text report"
    ),
}
"""Stage name -> stage, in pipeline order."""


def resolve_device(name: str) -> torch.device:
    """``auto``: CUDA when available, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"Device {name!r} asked for, but CUDA is not available here: use auto or cpu."
        )
    return device


def run_pipeline(config: RunConfig, out: Path, stage: str | None = None) -> RunDir:
    """Run every unfinished stage in order (or only ``stage``) in the run directory ``out``."""
    device = resolve_device(config.device)
    if stage is not None and stage not in STAGES:
        raise ConfigError(f"Unknown stage {stage!r}: stages are {', '.join(STAGES)}.")
    run = RunDir.open(out, config)
    if stage is not None:
        missing = [name for name in STAGES[stage].requires if not run.is_done(name)]
        if missing:
            raise RunDirError(
                f"Stage {stage!r} reads the outputs of {', '.join(map(repr, missing))}, not "
                f"finished in {run.path}: run those first (--stage {missing[0]}), or leave out "
                "--stage to run every stage in order."
            )
    print(f"Run directory {run.path} on {device}")
    for name in [stage] if stage is not None else list(STAGES):
        if run.is_done(name):
            print(f"[{name}] finished earlier: skipped (delete {run.path / name} to redo it)")
            continue
        print(f"[{name}] {STAGES[name].description}")
        start = time.perf_counter()
        torch.manual_seed(config.seed)  # whatever ran before it in this process
        STAGES[name].function(run, config, device)
        wall_time = time.perf_counter() - start
        run.mark_done(name, wall_time)
        run.update_summary({f"wall_time_s.{name}": round(wall_time, 2)})
        print(f"[{name}] done in {wall_time:.1f} s")
    return run
