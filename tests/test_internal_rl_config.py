"""agents.internal_rl configs: every preset is valid and survives a JSON round trip; bad
values raise ConfigError naming the field."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest

from agents.internal_rl.config import (
    PRESET_NAMES,
    PRESETS,
    SUPPORTED_ENVS,
    BaseModelConfig,
    CodebookConfig,
    ConfigError,
    ControllerConfig,
    DataConfig,
    RunConfig,
    stage_config_types,
)


@pytest.mark.parametrize("env", list(PRESETS))
@pytest.mark.parametrize("preset", PRESET_NAMES)
def test_every_preset_round_trips_through_json(env, preset):
    config = RunConfig.from_preset(env, preset, seed=3, device="cpu")
    assert RunConfig.from_dict(json.loads(config.to_json())) == config


def test_every_env_has_every_preset_and_every_preset_configures_every_stage():
    assert list(PRESETS) == list(SUPPORTED_ENVS)
    for presets in PRESETS.values():
        assert list(presets) == list(PRESET_NAMES)
        for stages in presets.values():
            assert list(stages) == list(stage_config_types())


def test_the_ant_paper_preset_has_the_papers_recurrent_base_and_full_controllers():
    config = RunConfig.from_preset("HierAnt-v0", "paper")
    base = config.base
    assert (base.backbone, base.num_layers, base.width, base.lambda_obs) == ("ssm", 8, 256, 10.0)
    assert base.steps == 204_800 and base.window >= 501
    assert config.controllers.rank == config.metacontroller.rank == base.width
    assert (config.metacontroller.steps, config.metacontroller.lr) == (32_000, 3e-4)
    assert (config.rl.batch_size, config.rl.lr) == (256, 3e-5)


def test_the_paper_preset_has_the_papers_base_model_and_controllers():
    config = RunConfig.from_preset("HierGrid-v0", "paper")
    base = config.base
    assert (base.num_layers, base.width, base.num_heads, base.mlp_width) == (6, 256, 4, 512)
    assert (base.position_buckets, base.lr, base.weight_decay, base.steps) == (
        32,
        3e-4,
        0.03,
        256_000,
    )
    assert (config.controllers.rank, config.controllers.steps, config.controllers.batch_size) == (
        16,
        3200,
        512,
    )
    assert config.controlled_layer == 3


def test_overrides_replace_single_values_read_as_json():
    config = RunConfig.from_preset(
        "HierGrid-v0",
        "smoke",
        overrides=["base.lr=0.01", "controllers.controlled_layer=1", "data.expert_eps=0"],
    )
    assert config.base.lr == 0.01 and config.controlled_layer == 1
    assert config.data.expert_eps == 0.0 and isinstance(config.data.expert_eps, float)


@pytest.mark.parametrize("order", [1, -1])
def test_overrides_valid_only_together_are_accepted_in_any_order(order):
    overrides = ["base.backbone=ssm", "base.attention_span=null"][::order]
    config = RunConfig.from_preset("HierGrid-v0", "quick", overrides=overrides)
    assert config.base.backbone == "ssm" and config.base.attention_span is None


def test_identity_ignores_the_device():
    cpu = RunConfig.from_preset("HierGrid-v0", "smoke", device="cpu")
    assert cpu.identity() == dataclasses.replace(cpu, device="cuda").identity()
    assert cpu.identity() != dataclasses.replace(cpu, seed=1).identity()


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda: DataConfig(num_envs=True), "data.num_envs must be int, got True"),
        (lambda: DataConfig(expert_eps=-0.1), "data.expert_eps must be a probability"),
        (lambda: DataConfig(expert_ties="random"), "data.expert_ties must be one of"),
        (lambda: BaseModelConfig(steps=2.5), "base.steps must be int, got 2.5"),
        (lambda: BaseModelConfig(lr=0), "base.lr must be > 0"),
        (lambda: BaseModelConfig(lambda_obs=-1.0), "base.lambda_obs must be >= 0"),
        (lambda: BaseModelConfig(width=100, num_heads=3), "divisible by num_heads=3"),
        (lambda: BaseModelConfig(attention_span=0), "base.attention_span must be > 0"),
        (
            lambda: BaseModelConfig(backbone="ssm", attention_span=32),
            "base.attention_span must be None with backbone 'ssm'",
        ),
        (
            lambda: ControllerConfig(controlled_layer=-1),
            "controllers.controlled_layer must be >= 0",
        ),
        (lambda: CodebookConfig(rank=0), "codebook.rank must be > 0"),
        (
            lambda: RunConfig.from_preset("HierGrid-v0", "tiny"),
            "Unknown preset 'tiny': choose one of smoke, quick, paper",
        ),
        (lambda: RunConfig.from_preset("HierGrid-v0", device="tpu"), "Unknown device 'tpu'"),
        (lambda: RunConfig.from_dict({"env_id": "HierGrid-v0"}), "missing keys"),
    ],
)
def test_bad_values_raise_config_errors(make, expected):
    with pytest.raises(ConfigError, match=re.escape(expected)):
        make()


def test_unknown_keys_in_a_saved_config_are_refused():
    values = RunConfig.from_preset("HierGrid-v0", "smoke").to_dict()
    values["base"]["depth"] = 3
    with pytest.raises(ConfigError, match=r"base: unknown keys \['depth'\]") as error:
        RunConfig.from_dict(values)
    assert "missing" not in str(error.value)  # only what is wrong is named


def test_a_stage_field_added_since_a_config_was_saved_takes_its_default():
    values = RunConfig.from_preset("HierGrid-v0", "smoke").to_dict()
    del values["base"]["backbone"], values["data"]["expert_ties"]
    config = RunConfig.from_dict(values)
    assert config.base.backbone == "transformer"
    assert config.data.expert_ties == "uniform"
