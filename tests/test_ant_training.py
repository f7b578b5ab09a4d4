"""The walker's PPO training command: one tiny run, then a resumed one (no real training)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from hier_envs.ant.walker import WalkerPolicy


def _train(out, steps):
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "agents.ant_expert",
            "--out",
            str(out),
            "--steps",
            str(steps),
            "--checkpoint-every",
            "1",
            "--export",
            str(out / "exported.npz"),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )


def test_training_writes_metrics_checkpoints_weights_and_resumes(tmp_path):
    _train(tmp_path, 4096)
    first = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["update"] for r in first] == [1]
    assert (tmp_path / "checkpoint.pt").exists()
    walker = WalkerPolicy.load(tmp_path / "exported.npz")
    features = np.zeros((3, 28))
    features[:, 0], features[:, 3], features[:, 26] = 0.55, -1.0, 1.0
    assert walker.act(features).shape == (3, 8)

    resumed = _train(tmp_path, 8192)
    assert "Resuming from update 1 of 2" in resumed.stdout
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["update"] for r in records] == [1, 2]
