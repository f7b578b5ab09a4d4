"""The run directory of agents.internal_rl: summary merging, metrics logs that a resumed stage
can rewind, atomic checkpoints and a clear error for a damaged one."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from agents.internal_rl.config import RunConfig
from agents.internal_rl.run_dir import RunDir, RunDirError, load_checkpoint, save_checkpoint


@pytest.fixture
def run_dir(tmp_path) -> RunDir:
    return RunDir.open(
        tmp_path / "run", RunConfig.from_preset("HierGrid-v0", "smoke", device="cpu")
    )


def test_opening_writes_the_config_and_the_plots_directory(run_dir):
    assert run_dir.read_config() == RunConfig.from_preset("HierGrid-v0", "smoke", device="cpu")
    assert run_dir.plots.is_dir()


def test_reopening_with_the_same_config_on_another_device_is_allowed(run_dir):
    config = RunConfig.from_preset("HierGrid-v0", "smoke", device="auto")
    assert RunDir.open(run_dir.path, config).read_config() == config


def test_reopening_with_another_config_names_the_differences(run_dir):
    other = RunConfig.from_preset("HierGrid-v0", "smoke", overrides=["base.steps=7"])
    with pytest.raises(RunDirError, match="base.steps: 7 here, 20 there.*another --out"):
        RunDir.open(run_dir.path, other)


def test_a_damaged_config_file_is_reported(run_dir):
    run_dir.config_path.write_text("{not json")
    with pytest.raises(RunDirError, match="cannot be read as a run config"):
        RunDir.open(run_dir.path, RunConfig.from_preset("HierGrid-v0", "smoke"))


def test_summary_updates_merge_keys(run_dir):
    assert run_dir.summary() == {}
    run_dir.update_summary({"expert.success_rate": np.float64(1.0), "data.episodes": np.int64(5)})
    run_dir.update_summary({"probe.accuracy_by_layer": np.array([0.25, 0.5]), "data.episodes": 6})
    assert run_dir.summary() == {
        "expert.success_rate": 1.0,
        "data.episodes": 6,
        "probe.accuracy_by_layer": [0.25, 0.5],
    }


def test_stages_are_marked_done(run_dir):
    assert not run_dir.is_done("base")
    run_dir.mark_done("base", 1.5)
    assert run_dir.is_done("base") and not run_dir.is_done("probe")


def test_a_resumed_metrics_log_drops_the_steps_after_its_checkpoint(run_dir):
    log = run_dir.metrics("base")
    for step in range(1, 6):
        log.log(step=step, loss=1.0 / step)
    run_dir.metrics("base", resume_step=3).log(step=4, loss=0.2)
    assert [r["step"] for r in run_dir.read_metrics("base")] == [1, 2, 3, 4]
    run_dir.metrics("base").log(note="no step")
    run_dir.metrics("base", resume_step=0).log(step=1, loss=0.9)
    assert run_dir.read_metrics("base") == [{"step": 1, "loss": 0.9}]


def test_checkpoints_round_trip_and_leave_no_temporary_file(run_dir):
    path = run_dir.stage_dir("base") / "checkpoint.pt"
    assert load_checkpoint(path) is None
    state = {"model": {"w": torch.arange(3.0)}, "step": 7, "rng": torch.get_rng_state()}
    save_checkpoint(path, state)
    loaded = load_checkpoint(path, map_location="cpu")
    assert loaded["step"] == 7 and torch.equal(loaded["model"]["w"], state["model"]["w"])
    assert [p.name for p in path.parent.iterdir()] == ["checkpoint.pt"]


def test_a_damaged_checkpoint_says_how_to_recover(run_dir):
    path = run_dir.stage_dir("base") / "checkpoint.pt"
    save_checkpoint(path, {"step": 1})
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(RunDirError, match=rf"Checkpoint {path} cannot be read .*rm {path}"):
        load_checkpoint(path)


def test_configs_are_frozen(run_dir):
    with pytest.raises(dataclasses.FrozenInstanceError):
        run_dir.read_config().base.steps = 3  # type: ignore[misc]
