"""The run directory: where every stage reads its inputs and writes its outputs.

```
<out>/config.json        the RunConfig; a different config in the same <out> is refused
<out>/summary.json       headline numbers, flat dotted keys ("expert.success_rate")
<out>/plots/             one or more PNGs per stage
<out>/<stage>/           that stage's outputs (data splits, checkpoints, models) and
    metrics.jsonl        its metrics, one JSON object per line
    done.json            written when the stage finishes: later runs skip it
```

Deleting ``<out>/<stage>/`` makes the next run redo that stage (and only that stage:
the stages after it are not invalidated automatically).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.internal_rl.config import ConfigError, RunConfig


class RunDirError(RuntimeError):
    """A run directory that cannot be used as asked; the message says how to fix it."""


class RunDir:
    """Paths, summary, metrics and completion markers of one run (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.config_path = self.path / "config.json"
        self.summary_path = self.path / "summary.json"
        self.plots = self.path / "plots"

    @classmethod
    def open(cls, path: Path, config: RunConfig) -> RunDir:
        """Create ``path`` for ``config``, or reopen it if it holds a run with the same config."""
        run = cls(path)
        if run.config_path.exists():
            stored = run.read_config()
            if stored.identity() != config.identity():
                differences = _differences(config.identity(), stored.identity())
                raise RunDirError(
                    f"{run.path} holds a run made with another config ({differences}). "
                    f"Use another --out, or delete {run.path} to start over."
                )
        elif run.path.exists() and any(run.path.iterdir()):
            raise RunDirError(
                f"{run.path} is not empty and has no config.json: it is not a run directory. "
                "Use another --out."
            )
        run.path.mkdir(parents=True, exist_ok=True)
        run.plots.mkdir(exist_ok=True)
        _write_json(run.config_path, config.to_dict())
        return run

    def read_config(self) -> RunConfig:
        try:
            return RunConfig.from_dict(json.loads(self.config_path.read_text()))
        except (json.JSONDecodeError, ConfigError, TypeError) as error:
            hint = (
                " If an older version wrote it, its finished stages can still serve: start a "
                "new --out with --stage data, copy in the stage folders whose settings did not "
                "change (with their done.json), and run on."
                if "missing keys" in str(error)
                else ""
            )
            raise RunDirError(
                f"{self.config_path} cannot be read as a run config ({error}). "
                f"Use another --out, or delete {self.path} to start over.{hint}"
            ) from error

    # --- stages ---------------------------------------------------------------------

    def stage_dir(self, stage: str) -> Path:
        """``<out>/<stage>/``, created if needed."""
        path = self.path / stage
        path.mkdir(parents=True, exist_ok=True)
        return path

    def is_done(self, stage: str) -> bool:
        return (self.path / stage / "done.json").exists()

    def mark_done(self, stage: str, wall_time_s: float) -> None:
        """Record that ``stage`` finished (after ``wall_time_s`` s in the run that finished it)."""
        record = {"wall_time_s": wall_time_s, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        _write_json(self.stage_dir(stage) / "done.json", record)

    # --- summary and metrics --------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        """The contents of ``summary.json`` (empty before any stage recorded a result)."""
        if not self.summary_path.exists():
            return {}
        return json.loads(self.summary_path.read_text())

    def update_summary(self, values: dict[str, Any]) -> dict[str, Any]:
        """Merge ``values`` (flat dotted keys) into ``summary.json``; returns the whole summary."""
        summary = {**self.summary(), **values}
        _write_json(self.summary_path, summary)
        return summary

    def metrics(self, stage: str, resume_step: int | None = None) -> MetricsLog:
        """The JSONL metrics log of ``stage``, appended to.

        A stage that (re)starts at step ``resume_step`` (its checkpoint's step, 0 for a
        fresh start) passes it: records of an interrupted run after that step, and records
        without a ``step``, are dropped, so each step appears once.
        """
        return MetricsLog(self.stage_dir(stage) / "metrics.jsonl", resume_step)

    def read_metrics(self, stage: str) -> list[dict[str, Any]]:
        path = self.path / stage / "metrics.jsonl"
        return _read_jsonl(path) if path.exists() else []


class MetricsLog:
    """Append-only JSONL file: one JSON object per :meth:`log` call, written at once."""

    def __init__(self, path: Path, resume_step: int | None = None) -> None:
        self.path = path
        if resume_step is not None and path.exists():
            kept = [r for r in _read_jsonl(path) if r.get("step", np.inf) <= resume_step]
            path.write_text("".join(json.dumps(r) + "\n" for r in kept))

    def log(self, **record: Any) -> None:
        with open(self.path, "a") as file:
            file.write(json.dumps(record, default=_to_builtin) + "\n")


# --- checkpoints ------------------------------------------------------------------------


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """``torch.save`` to a temporary file, then rename: a crash never leaves half a checkpoint."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(
    path: Path, map_location: str | torch.device | None = None
) -> dict[str, Any] | None:
    """The state saved at ``path`` (tensors and plain Python values), or None if there is none."""
    if not path.exists():
        return None
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch.load fails in many ways on a damaged file
        raise RunDirError(
            f"Checkpoint {path} cannot be read ({type(error).__name__}: {error}). Delete it "
            f"(rm {path}) and re-run: the stage restarts from its beginning, other stages are kept."
        ) from error


# --- helpers ---------------------------------------------------------------------------


def _write_json(path: Path, values: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(values, indent=2, default=_to_builtin) + "\n")
    os.replace(tmp, path)


def _to_builtin(value: Any) -> Any:
    """numpy and torch scalars and arrays as Python numbers and lists."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable.")


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat |= _flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _differences(here: dict[str, Any], there: dict[str, Any]) -> str:
    """``"base.steps: 500 here, 200 there; ..."`` for the values that differ."""
    here, there = _flatten(here), _flatten(there)
    missing = "<missing>"
    keys = sorted(set(here) | set(there))
    return "; ".join(
        f"{k}: {here.get(k, missing)!r} here, {there.get(k, missing)!r} there"
        for k in keys
        if here.get(k, missing) != there.get(k, missing)
    )
