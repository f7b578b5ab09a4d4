"""``python -m agents.internal_rl``: a smoke run writes the run directory, a re-run skips
finished stages, and bad input (env, preset, values, run directory) gives a clear error."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from agents.internal_rl import pipeline
from agents.internal_rl.__main__ import main
from agents.internal_rl.config import RunConfig
from agents.internal_rl.data import EpisodeDataset, load_split
from agents.internal_rl.pipeline import Stage, resolve_device
from agents.internal_rl.run_dir import RunDir


def run(out: Path, *args: str) -> None:
    main(["--env", "HierGrid-v0", "--preset", "smoke", "--out", str(out), "--device", "cpu", *args])


def error_of(out: Path, *args: str, env: str = "HierGrid-v0") -> str:
    """The message of the error that the command exits with."""
    with pytest.raises(SystemExit) as exit_info:
        main(["--env", env, "--preset", "smoke", "--out", str(out), *args])
    assert isinstance(exit_info.value.code, str), "expected an error message, not a bare exit code"
    return exit_info.value.code


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "smoke"
    run(out)
    return out


def test_smoke_run_writes_config_data_summary_metrics_and_plot(smoke_run):
    config = json.loads((smoke_run / "config.json").read_text())
    assert config["env_id"] == "HierGrid-v0" and config["preset"] == "smoke"
    summary = json.loads((smoke_run / "summary.json").read_text())
    assert summary["expert.success_rate"] == 1.0
    assert summary["data.episodes"] == config["data"]["train_episodes"]
    assert summary["data.heldout_episodes"] == config["data"]["heldout_episodes"]
    train = load_split(RunDir(smoke_run), "train")
    assert summary["data.steps"] == train.num_steps
    assert summary["data.mean_length"] == pytest.approx(train.lengths.mean())
    assert "wall_time_s.data" in summary
    records = [
        json.loads(line) for line in (smoke_run / "data" / "metrics.jsonl").read_text().splitlines()
    ]
    assert [r["split"] for r in records] == ["train", "heldout"]
    assert (smoke_run / "data" / "done.json").exists()
    assert (smoke_run / "plots" / "data.png").stat().st_size > 0


def test_every_stage_runs_on_the_ssm_backbone(tmp_path):
    run(tmp_path / "ssm", "--set", "base.backbone=ssm", "--set", "base.attention_span=null")
    weights = torch.load(tmp_path / "ssm" / "base" / "model.pt", weights_only=True)["model"]
    assert any(".lru." in name for name in weights)
    summary = json.loads((tmp_path / "ssm" / "summary.json").read_text())
    for key in ("internal_rl.success_rate", "baselines.raw_action_rl.success_rate"):
        assert 0.0 <= summary[key] <= 1.0


def test_every_stage_runs_on_the_ant(tmp_path):
    main(
        [
            "--env",
            "HierAnt-v0",
            "--preset",
            "smoke",
            "--out",
            str(tmp_path / "ant"),
            "--device",
            "cpu",
        ]
    )
    summary = json.loads((tmp_path / "ant" / "summary.json").read_text())
    assert summary["base_model.action_mse"] >= 0.0
    assert 0.0 <= summary["base_model.valid_rate"] <= 1.0
    for key in ("internal_rl", "baselines.raw_action_rl", "baselines.forced_switch"):
        assert 0.0 <= summary[f"{key}.success_rate"] <= 1.0
        assert 0.0 <= summary[f"{key}.success_normalised"]
    assert 0.0 < summary["expert.post_success_rate"] <= 1.0
    # Internal RL chooses among the code book's abstract actions, as the quick preset's does.
    assert 0.0 < summary["codebook.purity"] <= 1.0
    assert RunConfig.from_preset("HierAnt-v0", "quick").rl.policy == "codebook"
    assert (tmp_path / "ant" / "plots" / "success.png").stat().st_size > 0
    assert "squared error" in (tmp_path / "ant" / "report.txt").read_text()
    # The ant's controllers read the encoder's output whitened (controllers.whiten).
    width = RunConfig.from_preset("HierAnt-v0", "smoke").base.width
    controllers = torch.load(tmp_path / "ant" / "controllers" / "controllers.pt", weights_only=True)
    assert controllers["controllers"]["whiten"].shape == (width, width)
    meta = torch.load(tmp_path / "ant" / "metacontroller" / "metacontroller.pt", weights_only=True)
    assert meta["meta"]["decoder.whiten"].shape == (width, width)


def test_the_heldout_split_is_other_episodes(smoke_run):
    train = EpisodeDataset.load(smoke_run / "data" / "train.npz")
    heldout = EpisodeDataset.load(smoke_run / "data" / "heldout.npz")
    assert not set(train.seeds.tolist()) & set(heldout.seeds.tolist())
    assert not np.array_equal(train.episode(0).obs[0], heldout.episode(0).obs[0])


def test_rerun_skips_finished_stages(smoke_run, capsys):
    data = smoke_run / "data" / "train.npz"
    before = data.stat().st_mtime_ns
    run(smoke_run)
    assert "[data] finished earlier: skipped" in capsys.readouterr().out
    assert data.stat().st_mtime_ns == before


def test_a_run_may_resume_on_another_device(smoke_run, capsys):
    main(["--env", "HierGrid-v0", "--preset", "smoke", "--out", str(smoke_run), "--device", "auto"])
    assert "skipped" in capsys.readouterr().out


def test_another_config_in_the_same_run_directory_is_refused(smoke_run):
    message = error_of(smoke_run, "--seed", "1")
    assert "another config" in message and "seed: 1 here, 0 there" in message
    assert "another --out" in message
    message = error_of(smoke_run, "--set", "data.train_episodes=100")
    assert "data.train_episodes: 100 here, 256 there" in message


def test_a_directory_that_is_not_a_run_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    assert "not a run directory" in error_of(tmp_path)


def test_the_config_is_printed_at_start(tmp_path, capsys):
    run(tmp_path / "run", "--stage", "data")
    printed = capsys.readouterr().out
    config = json.loads(printed[printed.index("{") : printed.index("\n}\n") + 2])
    assert config == json.loads((tmp_path / "run" / "config.json").read_text())


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ("CartPole-v1", "Unknown env 'CartPole-v1': agents.internal_rl supports HierGrid-v0"),
        ("HierAnt", "Unknown env 'HierAnt': agents.internal_rl supports HierGrid-v0, HierAnt-v0"),
    ],
)
def test_unsupported_envs_are_refused_with_the_supported_list(tmp_path, env, expected):
    assert expected in error_of(tmp_path / "run", env=env)
    assert not (tmp_path / "run").exists()


def test_an_unknown_preset_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--env", "HierGrid-v0", "--preset", "huge", "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "invalid choice: 'huge'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("base.width=-8", "base.width must be > 0, got -8"),
        ("base.width=33", "base.width must be divisible by num_heads=2, got 33"),
        ("data.train_episodes=0", "data.train_episodes must be > 0"),
        ("data.expert_eps=1.5", "data.expert_eps must be a probability in [0, 1]"),
        ("base.steps=many", "base.steps must be int, got 'many'"),
        ("base.depth=3", "base has no field 'depth'"),
        ("model.steps=3", "unknown stage 'model'"),
        ("base.steps", "must look like stage.field=value"),
        ("controllers.controlled_layer=5", "deeper than the base model (base.num_layers=2)"),
    ],
)
def test_bad_values_are_refused_clearly(tmp_path, override, expected):
    assert expected in error_of(tmp_path / "run", "--set", override)
    assert not (tmp_path / "run").exists()


def test_seed_must_not_be_negative(tmp_path):
    assert "seed must be a non-negative integer" in error_of(tmp_path / "run", "--seed", "-1")


def test_a_base_model_of_other_input_features_is_refused_with_the_fix(smoke_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(smoke_run, out)
    path = out / "base" / "model.pt"
    state = torch.load(path, weights_only=True)
    weight = state["model"]["encoder.weight"]
    state["model"]["encoder.weight"] = torch.zeros(weight.shape[0], weight.shape[1] - 4)
    torch.save(state, path)
    shutil.rmtree(out / "probe")
    message = error_of(out, "--stage", "probe", "--device", "cpu")
    assert str(path) in message and "Rerun the base stage" in message


def test_resuming_a_base_stage_of_other_input_features_is_refused_with_the_fix(smoke_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(smoke_run, out)
    shutil.rmtree(out / "base")
    (out / "base").mkdir()
    path = out / "base" / "checkpoint.pt"
    state = torch.load(smoke_run / "base" / "checkpoint.pt", weights_only=True)
    weight = state["model"]["encoder.weight"]
    state["model"]["encoder.weight"] = torch.zeros(weight.shape[0], weight.shape[1] - 4)
    torch.save(state, path)
    message = error_of(out, "--stage", "base", "--device", "cpu")
    assert str(path) in message and "Rerun the base stage" in message


def test_a_stage_whose_inputs_are_missing_is_refused(tmp_path, monkeypatch):
    monkeypatch.setitem(pipeline.STAGES, "later", Stage(lambda *_: None, ("data",), "needs data"))
    message = error_of(tmp_path / "run", "--stage", "later")
    assert "'data'" in message and "--stage data" in message


def test_stage_runs_only_that_stage_and_a_failed_stage_is_not_marked_done(tmp_path, monkeypatch):
    calls = []

    def fail(run_dir, config, device):
        calls.append(device)
        raise RuntimeError("boom")

    monkeypatch.setitem(pipeline.STAGES, "later", Stage(fail, ("data",), "fails"))
    run(tmp_path / "run", "--stage", "data")
    assert calls == [] and (tmp_path / "run" / "data" / "done.json").exists()
    for _ in range(2):
        with pytest.raises(RuntimeError, match="boom"):
            run(tmp_path / "run", "--stage", "later")
    assert len(calls) == 2 and not (tmp_path / "run" / "later" / "done.json").exists()


def test_every_stage_starts_from_the_runs_torch_seed(tmp_path, monkeypatch):
    """A stage's result does not depend on what ran before it in the same process (the
    controllers' initial weights once did: a one-command run and --stage differed)."""
    draws = []
    monkeypatch.setitem(
        pipeline.STAGES, "later", Stage(lambda *_: draws.append(torch.rand(3)), ("data",), "draws")
    )
    for name, earlier_draws in (("a", 0), ("b", 5)):
        torch.rand(earlier_draws)
        run(tmp_path / name, "--stage", "data")
        run(tmp_path / name, "--stage", "later")
    torch.testing.assert_close(draws[0], draws[1])


def test_help_explains_stages_and_resume(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for words in (
        "data ",
        "expert episodes",
        "Resume",
        "skips the stages that",
        "--set",
        "--stage",
        "auto",
    ):
        assert words in text


def test_the_module_runs_as_a_command(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "agents.internal_rl", "--env", "CartPole-v1", "--preset", "smoke"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert "error: Unknown env 'CartPole-v1'" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_asking_for_cuda_without_it_is_refused(tmp_path):
    message = error_of(tmp_path / "run", "--device", "cuda")
    assert "CUDA is not available here: use auto or cpu" in message
    assert resolve_device("auto") == torch.device("cpu")


def test_smoke_run_measures_the_base_model_probes_and_controllers(smoke_run):
    summary = json.loads((smoke_run / "summary.json").read_text())
    config = json.loads((smoke_run / "config.json").read_text())
    assert 0.0 <= summary["base_model.action_accuracy"] <= 1.0
    assert summary["base_model.action_nll"] > 0.0
    assert 0.0 <= summary["base_model.valid_rate"] <= 1.0
    assert len(summary["probe.accuracy_by_layer"]) == config["base"]["num_layers"] + 1
    assert 0.0 <= summary["controllers.post_success_rate"] <= 1.0
    for stage in ("base", "probe", "controllers"):
        assert (smoke_run / stage / "done.json").exists()
    assert (smoke_run / "base" / "model.pt").exists()
    assert (smoke_run / "plots" / "base.png").stat().st_size > 0
    assert (smoke_run / "plots" / "probe.png").stat().st_size > 0
