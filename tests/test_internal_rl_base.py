"""The base model: incremental inference equals the full pass, packing isolates episodes,
and the navigation features agree with the expert."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import hier_envs  # noqa: F401
from agents.internal_rl.base_model import BaseModel, ModelConfig
from agents.internal_rl.features import step_features
from agents.internal_rl.observations import GridFeaturizer
from hier_envs.experts import make_expert


def _model(backbone: str = "transformer", attention_span: int | None = None) -> BaseModel:
    torch.manual_seed(0)
    config = ModelConfig(
        num_features=10,
        num_actions=4,
        num_next=49,
        num_layers=2,
        width=32,
        num_heads=2,
        mlp_width=64,
        position_buckets=8,
        backbone=backbone,
    )
    model = BaseModel(config).eval()
    model.attention_span = attention_span
    return model


backbones = pytest.mark.parametrize("backbone", ["transformer", "ssm"])


@pytest.mark.parametrize(
    ("backbone", "attention_span"), [("transformer", None), ("ssm", None), ("transformer", 5)]
)
def test_incremental_steps_equal_the_full_causal_pass(backbone: str, attention_span: int | None):
    """150 steps: the transformer's key/value buffers grow twice (at steps 65 and 131)."""
    model = _model(backbone, attention_span)
    features = torch.randn(3, 150, 10)
    full = model(features, torch.zeros(3, 150, dtype=torch.long))
    cache = model.new_cache()
    steps = torch.stack([model.step(features[:, t], t, cache).action for t in range(150)], dim=1)
    torch.testing.assert_close(steps, full.action, atol=1e-5, rtol=1e-5)


def test_tokens_beyond_the_attention_span_change_nothing():
    """With a span of 5 over 2 layers, token t depends on tokens t-8..t only."""
    model = _model(attention_span=5)
    features = torch.randn(1, 30, 10)
    changed = features.clone()
    changed[:, :21] = torch.randn(1, 21, 10)
    segments = torch.zeros(1, 30, dtype=torch.long)
    before, after = model(features, segments).action, model(changed, segments).action
    torch.testing.assert_close(before[:, 29], after[:, 29])
    assert not torch.allclose(before[:, 28], after[:, 28])


@backbones
def test_packed_episodes_do_not_see_each_other(backbone: str):
    model = _model(backbone)
    features = torch.randn(1, 20, 10)
    segments = torch.tensor([[0] * 8 + [1] * 12])
    packed = model(features, segments).action
    alone = model(features[:, 8:], torch.zeros(1, 12, dtype=torch.long)).action
    torch.testing.assert_close(packed[:, 8:], alone)


@backbones
def test_controller_edits_only_from_the_controlled_layer_on(backbone: str):
    model = _model(backbone)
    features, segments = torch.randn(2, 6, 10), torch.zeros(2, 6, dtype=torch.long)
    plain = model(features, segments)
    edited = model(features, segments, controller=lambda e: torch.ones_like(e))
    layer = model.controlled_layer
    for i in range(layer):
        torch.testing.assert_close(plain.residuals[i], edited.residuals[i])
    torch.testing.assert_close(edited.residuals[layer], plain.residuals[layer] + 1)


def test_unknown_backbone_is_refused():
    with pytest.raises(ValueError, match="backbone"):
        _model("lstm")


def test_weights_trained_on_other_inputs_are_refused_with_the_fix():
    weights = _model().state_dict()
    weights["encoder.weight"] = torch.zeros(32, 12)
    with pytest.raises(ValueError, match="12 input features.*gives 10.*Rerun the base stage"):
        _model().load_state_dict(weights)


def test_expert_actions_follow_the_toward_features_of_its_target():
    envs = gym.make_vec(
        "HierGrid-v0", num_envs=64, vectorization_mode="vector_entry_point", task="pretrain"
    )
    expert = make_expert(envs, seed=0)
    featurizer = GridFeaturizer(envs.unwrapped.config)
    obs, info = envs.reset(seed=0)
    colours, fields = featurizer.layouts(obs)
    num_colors = colours.shape[1]
    for _ in range(20):
        actions = expert.act(obs, info)
        features = step_features(fields, featurizer.agent_cells(obs), colours, featurizer.geometry)
        toward = features[:, : 4 * num_colors].reshape(-1, num_colors, 4)
        target = envs.unwrapped.tasks[np.arange(64), np.minimum(info["progress"], 5)]
        assert toward[np.arange(64), target, actions].all()
        obs, _, terminated, truncated, info = envs.step(actions)
        if (terminated | truncated).any():
            break


def test_validity_of_visited_colour_sequences():
    from agents.internal_rl.base_training import validity
    from hier_envs.tasks import GRID_PRETRAINING

    assert validity((0, 1, 4, 5, 0, 1), GRID_PRETRAINING) == "valid"
    assert validity((), GRID_PRETRAINING) == "open"
    assert validity((6, 7, 2), GRID_PRETRAINING) == "open"
    assert validity((1,), GRID_PRETRAINING) == "invalid"  # no task starts with 1
    assert validity((0, 1, 2), GRID_PRETRAINING) == "invalid"  # A -> B never occurs


def test_a_rollout_is_judged_at_the_colour_that_settles_it():
    from agents.internal_rl.base_training import judge
    from hier_envs.tasks import ANT_PRETRAINING

    assert judge((0, 3, 2, 1, 1), ANT_PRETRAINING) == ("valid", 3)  # later colours do not count
    assert judge((0, 1, 3), ANT_PRETRAINING) == ("invalid", 2)  # 0 -> 1 never occurs
    assert judge((2, 0), ANT_PRETRAINING) == ("open", 2)  # a wall, a fall or time ran out
    assert judge((), ANT_PRETRAINING) == ("open", 0)


def test_the_valid_rate_plays_ants_in_free_play():
    from agents.internal_rl.base_training import build_model, valid_rate
    from agents.internal_rl.config import RunConfig
    from agents.internal_rl.observations import make_featurizer

    featurizer = make_featurizer("HierAnt-v0")
    torch.manual_seed(0)
    model = build_model(featurizer, RunConfig.from_preset("HierAnt-v0", "smoke").base)
    scores = valid_rate(model, featurizer, "HierAnt-v0", 3, 0, torch.device("cpu"))
    assert scores.keys() == {"valid_rate", "mean_colours"}
    assert 0.0 <= scores["valid_rate"] <= 1.0 and 0.0 <= scores["mean_colours"] <= 3.0
    assert model.training  # left as it was found


def test_an_interrupted_base_stage_resumes_from_its_last_checkpoint(tmp_path, monkeypatch, capsys):
    """Killed right after the checkpoint of step 10 (of 20), a re-run continues at step 10
    and the metrics hold each step once."""
    import json

    from agents.internal_rl import base_training
    from agents.internal_rl.__main__ import main

    out = tmp_path / "run"
    args = ["--env", "HierGrid-v0", "--preset", "smoke", "--out", str(out), "--device", "cpu"]
    main([*args, "--stage", "data"])
    real_save = base_training.save_checkpoint

    def save_then_die(path, state):
        real_save(path, state)
        if path.name == "checkpoint.pt":
            raise KeyboardInterrupt

    monkeypatch.setattr(base_training, "save_checkpoint", save_then_die)
    try:
        main([*args, "--stage", "base"])
    except (KeyboardInterrupt, SystemExit):
        pass
    monkeypatch.setattr(base_training, "save_checkpoint", real_save)
    assert not (out / "base" / "done.json").exists()
    main([*args, "--stage", "base"])
    assert "resuming at step 10" in capsys.readouterr().out
    steps = [
        json.loads(line)["step"]
        for line in (out / "base" / "metrics.jsonl").read_text().splitlines()
    ]
    assert steps == list(range(1, 21))


def test_onset_weights_mark_the_first_steps_of_each_subgoal():
    from types import SimpleNamespace

    from agents.internal_rl.controllers import onset_weights

    batch = SimpleNamespace(
        subgoal_index=np.array([[0, 0, 0, 1, 1, 1, 0, 0]]),
        episode=np.array([[5, 5, 5, 5, 5, 5, 6, 6]]),
    )
    weights = onset_weights(batch, steps=2, extra=3.0)
    assert weights.tolist() == [[4.0, 4.0, 1.0, 4.0, 4.0, 1.0, 4.0, 4.0]]
