"""Metacontroller, internal RL and its baselines: shapes and ranges, the switch-gated agent,
the PPO loss on a hand-made batch, switch scoring, a smoke run and resuming ``rl``."""

from __future__ import annotations

import dataclasses
import importlib
import json
import math
import types
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from agents.internal_rl import metacontroller_training, ppo
from agents.internal_rl.__main__ import main
from agents.internal_rl.baselines import cotrained, run_baselines_stage
from agents.internal_rl.config import (
    SUPPORTED_ENVS,
    ConfigError,
    MetacontrollerConfig,
    RLConfig,
)
from agents.internal_rl.controllers import LowRankControllers, load_controllers, whitening
from agents.internal_rl.data import IGNORE, load_split
from agents.internal_rl.generalisation import (
    code_transfer_nll,
    codes_by_subgoal,
    reach_rate,
    subgoal_colours,
    task_subgoals,
)
from agents.internal_rl.metacontroller import (
    LowRankDecoder,
    MetaController,
    kl_to_prior,
    nearest_switch_codes,
    random_switches,
    switch_scores,
)
from agents.internal_rl.metacontroller_training import (
    SUBGOAL_NAMES,
    loss_weights,
    metacontroller_losses,
    other_choices,
    segment_gate_loss,
    segment_probes,
    train_metacontroller,
    two_point_gate_loss,
)
from agents.internal_rl.ppo import normalised_returns, ppo_clip_loss
from agents.internal_rl.probes import load_base_model
from agents.internal_rl.report import text_report
from agents.internal_rl.rl import load_frozen_agent, load_internal_rl_agent
from agents.internal_rl.rollouts import (
    ChoicePolicy,
    LatentPolicy,
    SwitchGatedAgent,
    Trajectories,
)
from agents.internal_rl.run_dir import RunDir
from hier_envs.tasks import (
    ANT_POST_TRAINING,
    ANT_PRETRAINING,
    GRID_POST_TRAINING,
    GRID_PRETRAINING,
    GRID_SUBGOALS,
)

CFG = MetacontrollerConfig(
    latent_size=4, history_size=8, summary_size=8, hidden=16, decoder_hidden=8, rank=4
)
WIDTH = 12


def run(out, *args: str) -> None:
    main(["--env", "HierGrid-v0", "--preset", "smoke", "--out", str(out), "--device", "cpu", *args])


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "smoke"
    run(out)
    return out


def test_codes_gates_and_edits_have_the_documented_shapes_and_ranges():
    torch.manual_seed(0)
    meta = MetaController(WIDTH, CFG)
    e = torch.randn(5, 9, WIDTH)
    out = meta(e, torch.tensor([9, 3, 5, 1, 9]))
    assert out["z"].shape == out["mu"].shape == out["log_var"].shape == (5, 9, 4)
    assert out["beta"].shape == (5, 9) and out["edit"].shape == e.shape
    assert ((out["beta"] >= 0) & (out["beta"] <= 1)).all()
    assert (out["beta"][:, 0] == 1).all(), "every episode starts with a new code"
    assert torch.allclose(out["z"][:, 0], out["mu"][:, 0] + 0 * out["z"][:, 0], atol=10)
    assert out["edit"].abs().max() < 1e-2 * e.abs().max(), "a new decoder starts as almost no edit"


def test_edits_are_the_decoded_codes_within_each_episode_and_zero_after_it():
    torch.manual_seed(2)
    meta = MetaController(WIDTH, CFG)
    with torch.no_grad():
        meta.decoder.a.normal_()  # a decoder that edits
    e, lengths = torch.randn(3, 7, WIDTH), torch.tensor([7, 2, 5])
    out = meta(e, lengths, sample=False)
    for episode, length in enumerate(lengths):
        own = meta.decoder(out["z"][episode, :length], e[episode, :length])
        assert torch.allclose(out["edit"][episode, :length], own, atol=1e-5)
        assert (out["edit"][episode, length:] == 0).all()
    assert out["edit"][1, :2].abs().min() > 0


def test_codes_integrate_as_beta_mixes_the_proposal_with_the_previous_code():
    torch.manual_seed(1)
    meta = MetaController(WIDTH, CFG)
    out = meta(torch.randn(3, 6, WIDTH), torch.tensor([6, 6, 6]), sample=False)
    beta, z, mu = out["beta"][..., None], out["z"], out["mu"]
    expected = beta[:, 1:] * mu[:, 1:] + (1 - beta[:, 1:]) * z[:, :-1]
    assert torch.allclose(z[:, 1:], expected, atol=1e-6)


def test_forced_switching_sets_beta_to_one_everywhere():
    meta = MetaController(WIDTH, CFG, forced=True)
    out = meta(torch.randn(2, 7, WIDTH), torch.tensor([7, 4]), sample=False)
    assert torch.all(out["beta"] == 1)
    assert torch.allclose(out["z"], out["mu"])


def test_a_hard_switch_is_zero_or_one_going_forward_and_keeps_a_gradient():
    torch.manual_seed(3)
    meta = MetaController(WIDTH, dataclasses.replace(CFG, hard_switch=True))
    out = meta(torch.randn(4, 8, WIDTH), torch.tensor([8, 8, 5, 2]))
    assert set(out["beta"].unique().tolist()) <= {0.0, 1.0}
    out["z"].sum().backward()
    assert meta.switch_out.weight.grad.abs().sum() > 0, "the gate learns through its sigmoid"


def test_switch_noise_samples_a_relaxed_bernoulli_gate_only_when_sampling():
    torch.manual_seed(6)
    meta = MetaController(WIDTH, dataclasses.replace(CFG, switch_noise=1.0))
    context, z = torch.randn(20_000, CFG.hidden), torch.randn(20_000, CFG.latent_size)
    clean = meta.gate(context, z, first=False)
    assert torch.equal(meta.gate(context, z, first=False), clean), "no noise unless asked"
    noisy = meta.gate(context, z, first=False, noisy=True)
    # sigmoid(logit + L), L ~ Logistic(0, 1), is >= 0.5 with probability sigmoid(logit)
    assert abs((noisy >= 0.5).float().mean() - clean.mean()) < 0.01
    assert (noisy - clean).abs().mean() > 0.1
    e, lengths = torch.randn(2, 6, WIDTH), torch.tensor([6, 4])
    assert torch.equal(
        meta(e, lengths, sample=False)["beta"], meta(e, lengths, sample=False)["beta"]
    )


def test_binary_codes_are_signs_going_forward_and_train_the_encoder():
    torch.manual_seed(7)
    cfg = dataclasses.replace(CFG, hard_switch=True, binary_codes=True)
    meta = MetaController(WIDTH, cfg)
    torch.nn.init.zeros_(meta.switch_out.bias)  # a gate that both holds and switches
    out = meta(torch.randn(3, 9, WIDTH), torch.tensor([9, 9, 4]))
    assert set(out["z"].unique().tolist()) == {-1.0, 1.0}
    held = out["beta"][:, 1:] == 0
    assert held.any() and not held.all()
    assert torch.equal(out["z"][:, 1:][held], out["z"][:, :-1][held]), "held codes stay put"
    out["edit"].sum().backward()
    assert meta.encoder[0].weight.grad.abs().sum() > 0, "the encoder learns through the sign"


def test_the_two_point_gate_loss_prices_each_switch_against_its_own_gain():
    beta = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    probability = torch.tensor([[1.0, 0.8, 0.3, 0.4]], requires_grad=True)
    nll = torch.tensor([[9.0, 1.0, 2.0, 1.0]])
    other = torch.tensor([[9.0, 4.0, 1.0, 1.5]])  # hold at 1, switch at 2 and 3
    valid = torch.tensor([[True, True, True, False]])
    out = {"beta": beta, "switch_probability": probability}
    loss = two_point_gate_loss(out, nll, other, valid, switch_cost=0.5)
    # gains: step 1 switched, 4 - 1 = 3; step 2 held, 2 - 1 = 1; step 3 is padding
    assert loss.item() == pytest.approx((0.8 * (0.5 - 3) + 0.3 * (0.5 - 1)) / 2)
    loss.backward()
    assert probability.grad[0].tolist() == pytest.approx([0, -1.25, -0.25, 0])


def test_a_two_point_gate_learns_only_from_its_own_loss():
    torch.manual_seed(9)
    cfg = dataclasses.replace(CFG, hard_switch=True, switch_gradient="two_point")
    meta = MetaController(WIDTH, cfg)
    torch.nn.init.zeros_(meta.switch_out.bias)
    out = meta(torch.randn(3, 8, WIDTH), torch.tensor([8, 8, 5]))
    assert set(out["beta"].unique().tolist()) == {0.0, 1.0}
    assert torch.equal(out["beta"], (out["switch_probability"] >= 0.5).float())
    out["edit"].sum().backward()
    assert meta.switch_out.weight.grad is None, "no gradient reaches the gate through the codes"
    assert meta.encoder[0].weight.grad.abs().sum() > 0


def test_the_segment_gate_loss_prices_each_probe_against_its_segments_gain():
    beta = torch.tensor([[1.0, 0.0, 0.0, 1.0, 0.0, 1.0]])  # segments 0-2, 3-4, 5 (padding)
    probability = torch.tensor([[1.0, 0.5, 0.3, 0.8, 0.6, 0.2]], requires_grad=True)
    nll = torch.tensor([[9.0, 1.0, 2.0, 1.0, 1.0, 0.0]])
    other = torch.tensor([[9.0, 1.0, 1.0, 3.0, 2.0, 0.0]])  # from the probes at 2 and 3 on
    probes = {
        "probe": torch.tensor([[False, False, True, True, False, False]]),
        "after": torch.tensor([[False, False, True, True, True, False]]),
        "segment": torch.tensor([[0, 0, 0, 1, 1, 2]]),
        "weight": torch.tensor([[2.0, 2.0, 2.0, 2.0, 2.0, 0.0]]),
    }
    out = {"beta": beta, "switch_probability": probability}
    loss = segment_gate_loss(out, nll, other, probes, switch_cost=0.5)
    # gains: step 2 held, a switch would gain 2 - 1 = 1; step 3 switched, holding would
    # cost (3 - 1) + (2 - 1) = 3; each probe stands for its segment's two eligible steps
    assert loss.item() == pytest.approx((2 * 0.3 * (0.5 - 1) + 2 * 0.8 * (0.5 - 3)) / 4)
    loss.backward()
    assert probability.grad[0].tolist() == pytest.approx([0, 0, -0.25, -1.25, 0, 0])


def test_segment_probes_reverse_one_choice_per_segment_until_its_end():
    beta = torch.tensor([[1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0], [1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0]])
    valid = torch.tensor([[True] * 7, [True] * 5 + [False] * 2])
    z = torch.randn(2, 7, 3)
    proposal = torch.randn(2, 7, 3)
    out = {"z": z, "beta": beta, "proposal": proposal}
    segments = {0: [(0, 2), (3, 4), (5, 6)], 1: [(0, 0), (1, 4)]}  # first and last steps
    seen = set()
    for seed in range(20):
        torch.manual_seed(seed)
        probes = segment_probes(out, other_choices(out), valid)
        for episode, bounds in segments.items():
            for first, last in bounds:
                eligible = range(max(first, 1), last + 1)
                drawn = [t for t in eligible if probes["probe"][episode, t]]
                if not eligible:
                    continue
                (probe,) = drawn
                seen.add((episode, probe))
                assert probes["weight"][episode, probe] == len(eligible)
                code = z[episode, probe - 1] if beta[episode, probe] else proposal[episode, probe]
                for t in range(first, last + 1):
                    reversed_here = t >= probe
                    expected = code if reversed_here else z[episode, t]
                    assert torch.equal(probes["other"][episode, t], expected), (seed, episode, t)
                    assert probes["after"][episode, t] == reversed_here
        assert not probes["after"][1, 5:].any(), "padding is never counted"
        assert probes["probe"].sum() == 4, "one probe per segment with eligible steps"
    assert len(seen) == 10, "every eligible step is drawn as a probe"


@pytest.mark.parametrize("switch_gradient", ["two_point", "segment"])
def test_metacontroller_losses_teach_a_scored_gate(smoke_run, switch_gradient):
    model, featurizer, batch, _ = smoke_loss_inputs(smoke_run)
    cfg = dataclasses.replace(CFG, hard_switch=True, switch_gradient=switch_gradient)
    meta = MetaController(model.config.width, cfg)
    cpu = torch.device("cpu")
    result = metacontroller_losses(model, meta, featurizer, batch, 0.0, cpu, True, True, 1.0)
    result["loss"].backward()
    assert meta.switch_out.weight.grad.abs().sum() > 0, "the gate learns from its scored loss"
    with torch.no_grad():  # evaluation: no extra pass, the plain price
        evaluated = metacontroller_losses(model, meta, featurizer, batch, 0.0, cpu, True, True, 1.0)
    expected = evaluated["action_nll"] + evaluated["switches"]
    assert evaluated["loss"].item() == pytest.approx(expected.item())


def test_the_episode_summary_is_one_vector_per_episode_the_step_summary_is_not():
    torch.manual_seed(4)
    e, lengths = torch.randn(2, 6, WIDTH), torch.tensor([6, 4])
    episode = MetaController(WIDTH, dataclasses.replace(CFG, episode_summary=True))
    s = episode.summarise(e, lengths)
    assert s.shape == (2, 6, 2 * CFG.summary_size)
    assert torch.allclose(s[0], s[0, :1].expand(6, -1)) and not torch.allclose(s[0], s[1])
    step = MetaController(WIDTH, dataclasses.replace(CFG, episode_summary=False))
    assert not torch.allclose(step.summarise(e, lengths)[0, 0], step.summarise(e, lengths)[0, 1])


def test_a_future_encoder_proposes_codes_from_the_steps_ahead_only():
    torch.manual_seed(5)
    e, lengths = torch.randn(2, 7, WIDTH), torch.tensor([7, 7])
    changed = e.clone()
    changed[:, :3] += torch.randn(2, 3, WIDTH)  # another past, the same steps 3..6
    for reads, past_matters in (("future", False), ("all", True)):
        meta = MetaController(
            WIDTH, dataclasses.replace(CFG, encoder_reads=reads, episode_summary=False)
        )
        mu, other = meta(e, lengths)["mu"], meta(changed, lengths)["mu"]
        assert torch.allclose(mu[:, 3:], other[:, 3:], atol=1e-6) != past_matters, reads
        assert not torch.allclose(mu[:, :3], other[:, :3])


def test_a_look_ahead_encoder_proposes_codes_from_steps_t_plus_k_on():
    torch.manual_seed(6)
    e, lengths = torch.randn(2, 7, WIDTH), torch.tensor([7, 5])
    changed = e.clone()
    changed[:, 3] += torch.randn(2, WIDTH)  # step 3 differs: codes from step 2 on read past it
    cfg = dataclasses.replace(CFG, encoder_reads="future", episode_summary=False)
    meta = MetaController(WIDTH, dataclasses.replace(cfg, encoder_lookahead=2))
    mu, other = meta(e, lengths)["mu"], meta(changed, lengths)["mu"]
    assert not torch.allclose(mu[:, :2], other[:, :2]), "steps 0, 1 read steps 2, 3 on"
    assert torch.allclose(mu[0, 2:], other[0, 2:], atol=1e-6), "steps 2.. read steps 4.. on"
    # Near the end of an episode the code reads its last step's summary.
    assert torch.allclose(mu[1, 3], mu[1, 4], atol=1e-6)
    plain = MetaController(WIDTH, cfg)
    plain.load_state_dict(meta.state_dict())
    assert torch.allclose(meta(e, lengths)["mu"][0, :5], plain(e, lengths)["mu"][0, 2:], atol=1e-6)


FUTURE_MEAN = dataclasses.replace(
    CFG, encoder_reads="future_mean", episode_summary=False, encoder_lookahead=2, encoder_window=3
)


def future_window(t: int, length: int) -> tuple[int, int]:
    """First and last step that ``FUTURE_MEAN``'s code at ``t`` reads, computed directly."""
    start = min(t + 2, length - 1)
    return start, max(min(start + 3, length), start + 1) - 1


def test_a_future_mean_encoder_reads_the_mean_of_a_window_of_steps_ahead():
    torch.manual_seed(7)
    e, lengths = torch.randn(2, 9, WIDTH), torch.tensor([9, 6])
    meta = MetaController(WIDTH, FUTURE_MEAN)
    mean = meta.future_mean(e, lengths)
    for episode, length in enumerate(lengths.tolist()):
        for t in range(9):
            start, last = future_window(t, length)
            expected = e[episode, start : last + 1].mean(0)
            assert torch.allclose(mean[episode, t], expected, atol=1e-5), (episode, t)
    normalised = meta.normalise(e)
    expected_mu = meta.encoder(meta.future_mean(normalised, lengths)).chunk(2, dim=-1)[0]
    assert torch.allclose(meta(e, lengths)["mu"], expected_mu, atol=1e-6)
    assert meta.summary is None, "no summary network to train"


def test_the_future_mean_encoder_can_also_read_the_windows_change():
    torch.manual_seed(8)
    e, lengths = torch.randn(2, 9, WIDTH), torch.tensor([9, 6])
    meta = MetaController(WIDTH, dataclasses.replace(FUTURE_MEAN, encoder_change=True))
    read = meta.future_mean(e, lengths)
    assert read.shape == (2, 9, 2 * WIDTH)
    for episode, length in enumerate(lengths.tolist()):
        for t in range(9):
            start, last = future_window(t, length)
            window = e[episode, start : last + 1]
            assert torch.allclose(read[episode, t, :WIDTH], window.mean(0), atol=1e-5)
            expected = e[episode, last] - e[episode, start]
            assert torch.allclose(read[episode, t, WIDTH:], expected, atol=1e-6), (episode, t)
    assert meta(e, lengths)["mu"].shape == (2, 9, CFG.latent_size)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"encoder_reads": "past"}, "encoder_reads must be one of"),
        ({"encoder_reads": "future", "episode_summary": True}, "with episode_summary=True"),
        ({"encoder_reads": "future_mean", "episode_summary": True}, "episode_summary=True"),
        (
            {"encoder_lookahead": 2},
            'encoder_lookahead must be 0 unless encoder_reads is "future" or "future_mean"',
        ),
        (
            {"encoder_reads": "future_mean", "episode_summary": False},
            "encoder_window must be > 0",
        ),
        ({"encoder_window": 4}, 'encoder_window must be 0 unless encoder_reads="future_mean"'),
        ({"switch_gradient": "reinforce"}, "switch_gradient must be one of"),
        ({"switch_gradient": "two_point"}, '"straight_through" unless hard_switch'),
        ({"switch_gradient": "segment"}, '"straight_through" unless hard_switch'),
        ({"switch_at": "labels"}, "switch_at must be one of"),
        (
            {"encoder_change": True},
            'encoder_change must be False unless encoder_reads="future_mean"',
        ),
    ],
)
def test_encoder_inputs_are_checked(changes, message):
    with pytest.raises(ConfigError, match=message):
        dataclasses.replace(CFG, **changes)


def test_the_beta_plot_names_each_envs_subgoals():
    """Grid labels are pairs A..D; ant labels are the colours sought, named by number."""
    assert set(SUBGOAL_NAMES) == set(SUPPORTED_ENVS)
    assert SUBGOAL_NAMES["HierGrid-v0"] == "ABCD"[: len(GRID_SUBGOALS)]
    ant_colours = sorted({c for task in (*ANT_PRETRAINING, ANT_POST_TRAINING) for c in task})
    assert [SUBGOAL_NAMES["HierAnt-v0"][c] for c in ant_colours] == [str(c) for c in ant_colours]


def test_alpha_and_the_switch_cost_follow_their_schedules():
    cfg = dataclasses.replace(
        CFG, alpha=0.2, kl_warmup=0.5, switch_cost=0.1, switch_cost_start=0.4, switch_cost_ramp=0.4
    )
    weights = [loss_weights(cfg, done) for done in (0.0, 0.25, 0.4, 0.6, 0.8, 1.0)]
    expected = [(0, 0), (0.1, 0), (0.16, 0), (0.2, 0.05), (0.2, 0.1), (0.2, 0.1)]
    assert np.allclose(weights, expected)
    assert loss_weights(CFG, 0.0) == (CFG.alpha, 0.0), "paper: constant alpha, no switch cost"


def smoke_loss_inputs(smoke_run) -> tuple:
    """The smoke run's base model and featurizer, one training batch of 4 windows and a
    fresh hard-switch metacontroller: the inputs of ``metacontroller_losses``."""
    run_dir = RunDir(smoke_run)
    config = run_dir.read_config()
    model, featurizer = load_base_model(run_dir, config, torch.device("cpu"))
    batch = next(load_split(run_dir, "train").batches(config.base.window, 4, seed=0))
    torch.manual_seed(5)
    meta = MetaController(model.config.width, dataclasses.replace(CFG, hard_switch=True))
    return model, featurizer, batch, meta


def test_switches_at_the_true_changes_replace_the_gate(smoke_run):
    model, featurizer, batch, _ = smoke_loss_inputs(smoke_run)
    cfg = dataclasses.replace(CFG, switch_at="true_changes")
    meta = MetaController(model.config.width, cfg)
    result = metacontroller_losses(model, meta, featurizer, batch, 0.0, torch.device("cpu"))
    layout, beta = result["layout"], result["outputs"]["beta"]
    subgoal = layout.to_episodes(torch.as_tensor(batch.subgoal), fill=IGNORE)
    for episode, length in enumerate(layout.lengths.tolist()):
        labels = subgoal[episode, :length].tolist()
        expected = [1.0] + [
            float(a != b and IGNORE not in (a, b)) for a, b in zip(labels, labels[1:])
        ]
        assert beta[episode, :length].tolist() == expected, episode
    assert beta[:, 1:].sum() > 0, "the smoke batch has subgoal changes"


def test_the_cotrained_baseline_runs_when_the_metacontroller_reads_the_stream_whitened(
    smoke_run, tmp_path
):
    run_dir = RunDir(smoke_run)
    config = run_dir.read_config()
    meta = dataclasses.replace(config.metacontroller, whiten=True, read_whitened=True)
    config = dataclasses.replace(config, metacontroller=meta)
    result = cotrained(run_dir, config, torch.device("cpu"), tmp_path / "cotrained")
    assert 0 <= result["success_rate"] <= 1


def test_random_switches_start_every_episode_and_fall_at_their_rate():
    torch.manual_seed(7)
    layout = types.SimpleNamespace(num_episodes=50, steps=200, lengths=torch.full((50,), 200))
    assert torch.equal(random_switches(layout, 1.0), torch.ones(50, 200))
    never = random_switches(layout, 1e-9)
    assert never[:, 0].all() and not never[:, 1:].any()
    assert random_switches(layout, 0.2)[:, 1:].mean().item() == pytest.approx(0.2, abs=0.01)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"code_phase": 0.5}, "random_switch_rate"),
        ({"random_switch_rate": 0.1}, "random_switch_rate"),
        ({"code_phase": 1.0, "random_switch_rate": 0.1}, "code_phase"),
        ({"code_phase": 0.5, "random_switch_rate": 0.1, "switch_at": "true_changes"}, "code_phase"),
    ],
)
def test_a_code_phase_needs_a_switch_rate_and_the_gate(changes, message):
    with pytest.raises(ConfigError, match=message):
        dataclasses.replace(CFG, **changes)


def test_a_code_phase_trains_the_codes_under_random_switches_then_the_gate_alone(
    smoke_run, tmp_path, monkeypatch
):
    run_dir = RunDir(smoke_run)
    config = run_dir.read_config()
    model, featurizer = load_base_model(run_dir, config, torch.device("cpu"))
    cfg = dataclasses.replace(
        CFG,
        hard_switch=True,
        switch_gradient="segment",
        code_phase=0.5,
        random_switch_rate=0.2,
        batch_size=2,
    )
    torch.manual_seed(6)
    meta = MetaController(model.config.width, cfg)
    calls = []
    losses = metacontroller_training.metacontroller_losses

    def spy(*args, **kwargs):
        weights = (meta.encoder[0].weight.clone(), meta.switch_out.weight.clone())
        calls.append((kwargs["random_switch_rate"], *weights))
        return losses(*args, **kwargs)

    monkeypatch.setattr(metacontroller_training, "metacontroller_losses", spy)
    train = load_split(run_dir, "train")
    train_metacontroller(
        model, meta, featurizer, train, cfg, config.base.window, tmp_path, 0, 4, torch.device("cpu")
    )
    rates, encoder, gate = zip(*calls, (None, meta.encoder[0].weight, meta.switch_out.weight))
    assert rates[:4] == (0.2, 0.2, 0.0, 0.0)
    steps = range(4)
    assert [not torch.equal(encoder[i], encoder[i + 1]) for i in steps] == [1, 1, 0, 0]
    assert [not torch.equal(gate[i], gate[i + 1]) for i in steps] == [0, 0, 1, 1]


def test_internal_rl_refuses_a_metacontroller_with_switches_from_labels(smoke_run):
    run_dir = RunDir(smoke_run)
    config = run_dir.read_config()
    diagnostic = dataclasses.replace(
        config,
        metacontroller=dataclasses.replace(config.metacontroller, switch_at="true_changes"),
    )
    with pytest.raises(ConfigError, match="switch_at=gate"):
        load_internal_rl_agent(run_dir, diagnostic, torch.device("cpu"))
    with pytest.raises(ConfigError, match="switch_at=gate"):
        run_baselines_stage(run_dir, diagnostic, torch.device("cpu"))


def test_the_switch_cost_adds_its_price_for_each_switch(smoke_run):
    model, featurizer, batch, meta = smoke_loss_inputs(smoke_run)
    losses = [
        metacontroller_losses(
            model, meta, featurizer, batch, 0.1, torch.device("cpu"), False, True, cost
        )
        for cost in (0.0, 2.0)
    ]
    switches = losses[0]["switches"]
    assert 0 < switches <= 1
    assert losses[1]["loss"].item() == pytest.approx(losses[0]["loss"].item() + 2 * switches.item())


def test_swapped_codes_are_the_nearest_switch_codes_of_other_episodes():
    z = torch.tensor(
        [
            [[0.0, 0.0], [0.0, 0.0], [5.0, 5.0]],  # switches at steps 0 and 2
            [[1.0, 0.0], [1.0, 0.0], [4.0, 6.0]],  # switches at step 0; step 2 is padding
            [[9.0, 9.0], [9.0, 9.0], [9.0, 9.0]],  # switches at step 0
        ]
    )
    beta = torch.tensor([[1.0, 0.0, 1.0], [1.0, 0.2, 0.9], [1.0, 0.0, 0.0]])
    valid = torch.tensor([[True, True, True], [True, True, False], [True, True, True]])
    donors = nearest_switch_codes(z, beta, valid)
    expected = torch.tensor(
        [
            [[1.0, 0.0], [1.0, 0.0], [9.0, 9.0]],  # (4, 6) of episode 1 is padding: no donor
            [[0.0, 0.0], [0.0, 0.0], [5.0, 5.0]],
            [[5.0, 5.0], [5.0, 5.0], [5.0, 5.0]],
        ]
    )
    assert torch.equal(donors, expected)
    lone = nearest_switch_codes(z[:1], beta[:1], valid[:1])
    assert torch.equal(lone, z[:1]), "no other episode: every step keeps its own code"


def test_the_code_swap_adds_the_nll_under_swapped_codes_and_trains_only_the_decoder(smoke_run):
    model, featurizer, batch, meta = smoke_loss_inputs(smoke_run)
    cpu = torch.device("cpu")
    plain, swapped = (
        metacontroller_losses(model, meta, featurizer, batch, 0.1, cpu, False, True, 0.0, swap)
        for swap in (0.0, 3.0)
    )
    assert plain["swap_nll"].item() == 0.0
    assert swapped["swap_nll"].item() > 0
    expected = plain["loss"].item() + 3 * swapped["swap_nll"].item()
    assert swapped["loss"].item() == pytest.approx(expected, rel=1e-5)
    swapped["swap_nll"].backward()
    assert meta.decoder.a.grad is not None and meta.decoder.a.grad.abs().sum() > 0
    assert all(p.grad is None for p in meta.encoder.parameters()), "donors are detached"


def test_decoder_applies_the_low_rank_matrix_it_stands_for():
    torch.manual_seed(2)
    decoder = LowRankDecoder(latent_size=3, width=6, rank=2, hidden=4)
    torch.nn.init.normal_(decoder.a)
    z, e = torch.randn(3), torch.randn(6)
    g = torch.cat([decoder.hidden(z), torch.ones(1)])
    a = decoder.a.view(6, 2, 5) @ g  # A(z): (width, rank)
    b = decoder.b @ g  # B(z): (width, rank)
    assert torch.allclose(decoder(z, e), a @ (b.T @ e), atol=1e-5)
    assert torch.allclose(decoder.matrix(z) @ e, decoder(z, e), atol=1e-5)


def test_whitening_gives_unit_scale_on_the_streams_directions_and_zero_off_them():
    torch.manual_seed(0)
    basis = torch.linalg.qr(torch.randn(6, 6))[0]
    scales = torch.tensor([10.0, 1.0, 0.3, 0.1])
    residuals = (torch.randn(4000, 4) * scales) @ basis[:, :4].T  # a 4-dim stream in 6 dims
    s, x = whitening(residuals).double(), residuals.double()
    moment = x.T @ x / len(x)
    assert torch.allclose(s @ moment @ s, (basis[:, :4] @ basis[:, :4].T).double(), atol=1e-4)
    assert torch.allclose(s @ basis[:, 4:].double(), torch.zeros(6, 2).double(), atol=1e-4)


def test_whitened_controllers_and_decoder_apply_their_map_to_the_whitened_stream():
    torch.manual_seed(1)
    s = whitening(torch.randn(500, 6) * torch.arange(1.0, 7.0))
    controllers = LowRankControllers(3, 6, 2, whiten=s)
    torch.nn.init.normal_(controllers.A)
    e, which = torch.randn(5, 6), torch.tensor([0, 1, 2, 1, 0])
    u = controllers.A @ controllers.B.transpose(1, 2)  # (3, 6, 6)
    expected = torch.einsum("nwv,nv->nw", u[which] @ s, e)
    assert torch.allclose(controllers.edit(which)(e), expected, atol=1e-5)
    weights = controllers.state_dict()
    restored = LowRankControllers(3, 6, 2, whiten=weights["whiten"])
    restored.load_state_dict(weights)
    assert torch.allclose(restored.edit(which)(e), expected, atol=1e-5)
    assert "whiten" not in LowRankControllers(3, 6, 2).state_dict()  # older runs load as before

    decoder = LowRankDecoder(latent_size=3, width=6, rank=2, hidden=4, whiten=s)
    plain = LowRankDecoder(latent_size=3, width=6, rank=2, hidden=4)
    plain.load_state_dict({k: v for k, v in decoder.state_dict().items() if k != "whiten"})
    z = torch.randn(5, 3)
    torch.nn.init.normal_(decoder.a)
    plain.a.data.copy_(decoder.a)
    assert torch.allclose(decoder(z, e) * (2 * 5) ** 0.5, plain(z, e @ s), atol=1e-5)
    assert torch.allclose(
        torch.einsum("nvw,nw->nv", decoder.matrix(z), e), decoder(z, e), atol=1e-5
    )


def test_read_whitened_feeds_the_networks_the_whitened_stream():
    torch.manual_seed(2)
    e = torch.randn(2, 5, WIDTH) * torch.linspace(0.1, 10.0, WIDTH)
    s = whitening(e.flatten(0, 1))
    meta = MetaController(
        WIDTH, dataclasses.replace(CFG, whiten=True, read_whitened=True), whiten=s
    )
    assert torch.allclose(meta.normalise(e), e @ s)
    plain = MetaController(WIDTH, dataclasses.replace(CFG, whiten=True), whiten=s)
    assert torch.allclose(plain.normalise(e), F.layer_norm(e, (WIDTH,)))
    with pytest.raises(ValueError, match="pass whiten"):
        MetaController(WIDTH, dataclasses.replace(CFG, whiten=True, read_whitened=True))
    with pytest.raises(ConfigError, match="read_whitened"):
        dataclasses.replace(CFG, read_whitened=True)


def test_kl_to_the_prior_is_zero_at_the_prior_and_known_elsewhere():
    assert kl_to_prior(torch.zeros(4), torch.zeros(4)).item() == 0
    assert math.isclose(kl_to_prior(torch.ones(2), torch.zeros(2)).item(), 1.0, rel_tol=1e-6)


def test_switch_scores_on_a_hand_made_episode():
    labels = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 2])  # changes at steps 3 and 6
    beta = np.array([1, 0, 0, 0.95, 0, 0, 0, 0.7, 0, 0])  # switches at 3 (hit) and 7 (hit, +1)
    scores = switch_scores([beta], [labels], [10])
    assert scores["switch_f1"] == 1.0
    beta_late = np.array([1, 0, 0, 0, 0, 0.9, 0, 0, 0.6, 0])  # 5 (finds 6), 8 (miss); 3 missed
    scores = switch_scores([beta_late], [labels], [10])
    assert scores["switch_precision"] == 0.5 and scores["switch_recall"] == 0.5
    assert scores["beta_binary_fraction"] == 6 / 8  # steps 1..8; 0.9 and 0.6 are neither


def test_the_switch_gated_agent_changes_its_code_only_at_switches():
    torch.manual_seed(3)
    meta = MetaController(WIDTH, CFG).requires_grad_(False)
    torch.nn.init.normal_(meta.switch_out.weight, std=3.0)  # gates far from 0.5 both ways
    policy = LatentPolicy(WIDTH, CFG.latent_size, 8).requires_grad_(False)
    agent = SwitchGatedAgent(meta, policy, 16, torch.Generator().manual_seed(0), "cpu")
    codes = []
    for _ in range(12):
        agent(torch.randn(16, 1, WIDTH))
        codes.append(agent.z.clone())
    switches = torch.stack(agent.switches, dim=1)
    codes = torch.stack(codes, dim=1)
    proposals = torch.stack(agent.latents, dim=1)
    assert switches[:, 0].all() and 0 < switches[:, 1:].float().mean() < 1
    changed = (codes[:, 1:] != codes[:, :-1]).any(-1)
    assert torch.equal(changed, switches[:, 1:])
    assert torch.equal(codes[switches], proposals[switches])


def test_the_greedy_switch_gated_agent_proposes_the_policys_mean_code():
    torch.manual_seed(3)
    meta = MetaController(WIDTH, CFG).requires_grad_(False)
    policy = LatentPolicy(WIDTH, CFG.latent_size, 8).requires_grad_(False)
    torch.nn.init.normal_(policy.mean.weight)
    e = torch.randn(4, 6, WIDTH)
    greedy = SwitchGatedAgent(meta, policy, 4, torch.Generator().manual_seed(0), "cpu", True)
    for t in range(6):
        greedy(e[:, t : t + 1])
    means = policy.mean(policy.rnn(meta.normalise(e))[0])
    assert torch.allclose(torch.stack(greedy.latents, dim=1), means, atol=1e-5)


@pytest.mark.parametrize("gate_reads_change", [False, True])
def test_the_agents_gate_steps_as_the_trained_gate_reads_whole_episodes(gate_reads_change):
    torch.manual_seed(4)
    cfg = dataclasses.replace(CFG, gate_reads_change=gate_reads_change)
    meta = MetaController(WIDTH, cfg).requires_grad_(False)
    torch.nn.init.normal_(meta.switch_out.weight, std=3.0)
    torch.nn.init.zeros_(meta.switch_latent.weight)  # the gate reads the stream alone
    policy = LatentPolicy(WIDTH, CFG.latent_size, 8).requires_grad_(False)
    agent = SwitchGatedAgent(meta, policy, 3, torch.Generator().manual_seed(0), "cpu")
    e = torch.randn(3, 10, WIDTH)
    for t in range(10):
        agent(e[:, t : t + 1])
    trained = meta(e, torch.tensor([10, 10, 10]), sample=False)["switch_probability"]
    assert torch.allclose(torch.stack(agent.betas, dim=1), trained, atol=1e-5)
    meta.switch_context.weight[:, WIDTH : WIDTH + CFG.history_size] = 0  # and no history
    before = meta(e, torch.tensor([10, 10, 10]), sample=False)["switch_probability"]
    shifted = e.clone()
    shifted[:, 4] += torch.randn(
        WIDTH
    )  # the gate at step 5 sees e_4 only through the change e_5 - e_4
    after = meta(shifted, torch.tensor([10, 10, 10]), sample=False)["switch_probability"]
    assert torch.allclose(after[:, 5], before[:, 5]) != gate_reads_change


def test_ppo_clip_loss_on_a_hand_made_batch():
    old = torch.zeros(2, 2)
    new = torch.log(torch.tensor([[1.5, 1.0], [0.5, 2.0]]))
    advantages = torch.tensor([1.0, -1.0])
    decisions = torch.tensor([[True, True], [True, False]])
    # ep 0 (A=+1): min(1.5, 1.2) = 1.2 and 1.0; ep 1 (A=-1): min(-0.5, -0.8) = -0.8
    loss = ppo_clip_loss(new, old, advantages, decisions, clip=0.2)
    assert math.isclose(loss.item(), -(1.2 + 1.0 - 0.8) / 3, rel_tol=1e-6)


def test_returns_are_normalised_over_the_batch():
    advantages = normalised_returns(torch.tensor([1.0, 0.0, 0.0, 0.0]))
    assert math.isclose(advantages.mean().item(), 0, abs_tol=1e-6)
    assert advantages[0] > 0 > advantages[1]
    assert torch.all(normalised_returns(torch.zeros(8)) == 0), "no success, no update"


class SeedRecorder:
    """A PPO learner that records the env seeds of its batches and never succeeds."""

    def __init__(self) -> None:
        self.module = torch.nn.Linear(1, 1)
        self.seeds: list[range] = []

    def collect(self, episodes: int, seed: int, greedy: bool = False) -> Trajectories:
        self.seeds.append(range(seed, seed + episodes))  # a vector env's envs: seed + i
        zeros = np.zeros((episodes, 1), dtype=np.int64)
        return Trajectories(
            features=torch.zeros(episodes, 1, 1),
            actions=torch.zeros(episodes, 1, dtype=torch.long),
            alive=torch.ones(episodes, 1, dtype=torch.bool),
            subgoal=zeros,
            visited=zeros - 1,
            success=torch.zeros(episodes),
            progress=zeros[:, 0],
            timed_out=zeros[:, 0].astype(bool),
        )

    def decisions(self, trajectories: Trajectories) -> torch.Tensor:
        return trajectories.alive

    def log_prob(self, trajectories: Trajectories, index: torch.Tensor) -> torch.Tensor:
        return self.module.bias * trajectories.alive[index]


def test_ppo_batches_never_share_an_env_seed_with_each_other_or_the_evaluation(tmp_path):
    learner = SeedRecorder()
    cfg = RLConfig(batch_size=8, iterations=5, minibatch_size=4, checkpoint_interval=5)
    ppo.train_ppo(learner, cfg, 1e-3, tmp_path, seed=3, desc="seeds")
    evaluation = range(ppo.evaluation_seed(3), ppo.evaluation_seed(3) + 1_000)
    seeds = [set(batch) for batch in learner.seeds] + [set(evaluation)]
    assert sum(map(len, seeds)) == len(set().union(*seeds)), "disjoint"


def test_smoke_run_reports_every_stage_of_part_two(smoke_run):
    summary = json.loads((smoke_run / "summary.json").read_text())
    for key in (
        "metacontroller.switch_f1",
        "metacontroller.beta_binary_fraction",
        "internal_rl.success_rate",
        "internal_rl.episodes",
        "baselines.raw_action_rl.success_rate",
        "baselines.forced_switch.success_rate",
        "baselines.cotrained.success_rate",
    ):
        assert key in summary, key
    assert 0 <= summary["metacontroller.switch_f1"] <= 1
    assert 0 <= summary["internal_rl.mean_progress"] <= 12, "colours of the post task reached"
    episodes = summary["internal_rl.episodes"]
    for name in ("raw_action_rl", "forced_switch", "cotrained"):
        assert summary[f"baselines.{name}.episodes"] == episodes, "same RL budget for all"
    assert (
        summary["baselines.forced_switch.decisions_per_episode"]
        > summary["internal_rl.decisions_per_episode"]
        or summary["metacontroller.switches_per_episode"] > 5
    )
    for plot in ("beta.png", "internal_rl.png", "success.png"):
        assert (smoke_run / "plots" / plot).stat().st_size > 0
    assert "internal RL" in (smoke_run / "report.txt").read_text()


def test_the_generalisation_probe_injects_codes_only_after_the_first_subgoal(smoke_run):
    run_dir = RunDir(smoke_run)
    config = run_dir.read_config()
    device = torch.device("cpu")
    model, featurizer, meta = load_frozen_agent(run_dir, config, device, "metacontroller", False)
    codes = codes_by_subgoal(
        model, meta, featurizer, load_split(run_dir, "heldout"), config, device
    )
    assert codes and all(z.shape[1] == config.metacontroller.latent_size for z in codes.values())
    huge = next(iter(codes.values()))[:1] * 0 + 50.0  # an edit that takes over the model
    first, target = 0, 1
    args = (model, featurizer, meta, config.env_id, (first, target))
    with_code = reach_rate(*args, huge, 32, 7, device)
    without = reach_rate(*args, None, 32, 7, device)
    assert with_code[0] == without[0], "the same episodes complete the first subgoal"
    assert 0 <= with_code[1] <= with_code[0]
    results = json.loads((smoke_run / "generalisation" / "result.json").read_text())
    assert (
        len(results) == json.loads((smoke_run / "summary.json").read_text())["generalisation.pairs"]
    )
    assert all(r["with_code"][0] == r["without_code"][0] for r in results)
    assert (smoke_run / "plots" / "generalisation.png").stat().st_size > 0


@pytest.mark.parametrize(
    ("env_id", "pretraining", "post", "subgoal_2"),
    [
        ("HierGrid-v0", GRID_PRETRAINING, GRID_POST_TRAINING, (4, 5)),
        ("HierAnt-v0", ANT_PRETRAINING, ANT_POST_TRAINING, (2,)),
    ],
)
def test_the_probe_reads_tasks_as_subgoals_and_the_post_tasks_transitions_are_unseen(
    env_id, pretraining, post, subgoal_2
):
    assert subgoal_colours(env_id, 2) == subgoal_2
    for task in (*pretraining, post):
        labels = task_subgoals(env_id, task)
        assert sum((subgoal_colours(env_id, k) for k in labels), ()) == tuple(task)

    def transitions(task):
        labels = task_subgoals(env_id, task)
        return set(zip(labels[:-1], labels[1:]))

    seen = set().union(*(transitions(task) for task in pretraining))
    assert transitions(post) and not transitions(post) & seen, "every post-task transition is new"


def test_code_transfer_compares_own_donor_and_no_codes_on_the_same_steps(smoke_run):
    run_dir = RunDir(smoke_run)
    config = run_dir.read_config()
    device = torch.device("cpu")
    model, featurizer, meta = load_frozen_agent(run_dir, config, device, "metacontroller", False)
    heldout = load_split(run_dir, "heldout")
    args = (model, meta, featurizer, heldout, config, device)
    nll = code_transfer_nll(*args)
    assert nll == code_transfer_nll(*args), "the donors are drawn with the run's seed"
    summary = json.loads((smoke_run / "summary.json").read_text())
    for key, value in nll.items():
        assert math.isfinite(value) and value > 0
        assert summary[key] == pytest.approx(value)
    assert len(set(nll.values())) > 1, "a trained decoder's codes change the actions"
    with torch.no_grad():
        meta.decoder.a.zero_()  # every code now makes no edit
    assert len(set(round(v, 9) for v in code_transfer_nll(*args).values())) == 1


def test_an_interrupted_rl_stage_resumes_from_its_checkpoint(smoke_run, tmp_path, monkeypatch):
    out = tmp_path / "resume"
    run(out, "--stage", "data")
    for stage in ("base", "metacontroller", "codebook"):
        run(out, "--stage", stage)
    calls = []
    original = ppo.normalised_returns

    def interrupt_after_three(returns):
        calls.append(1)
        if len(calls) == 3:  # iteration 3 of 4; the checkpoint interval is 2
            raise KeyboardInterrupt
        return original(returns)

    monkeypatch.setattr(ppo, "normalised_returns", interrupt_after_three)
    with pytest.raises(SystemExit):
        run(out, "--stage", "rl")
    checkpoint = torch.load(out / "rl" / "checkpoint.pt", weights_only=True)
    assert checkpoint["iteration"] == 2
    monkeypatch.setattr(ppo, "normalised_returns", original)
    run(out, "--stage", "rl")
    metrics = [json.loads(line) for line in (out / "rl" / "metrics.jsonl").read_text().splitlines()]
    assert [m["iteration"] for m in metrics] == [1, 2, 3, 4]
    reference = json.loads((smoke_run / "rl" / "result.json").read_text())["curve"]
    resumed = json.loads((out / "rl" / "result.json").read_text())["curve"]
    assert resumed == reference, "same seed, same result, interrupted or not"


def test_the_agent_demo_records_a_run_directorys_agent(smoke_run, tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "demos"))
    record_agent = importlib.import_module("record_agent")
    out = tmp_path / "agent.gif"
    record_agent.main(["--run", str(smoke_run), "--episodes", "2", "--out", str(out)])
    assert out.stat().st_size > 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("episode")]
    assert len(lines) == 2 and all("switches" in line for line in lines)
    with pytest.raises(SystemExit):
        record_agent.main(["--run", str(tmp_path / "missing"), "--out", str(out)])


def test_the_text_report_rounds_its_figures_and_says_what_did_not_run():
    report = text_report(
        {
            "base_model.action_accuracy": 0.9409167702655319,
            "probe.accuracy_by_layer": [0.4449, 0.75],
            "internal_rl.episodes_to_0.9": None,
            "baselines.raw_action_rl.success_rate": 0.0,
            "baselines.raw_action_rl.greedy_success_rate": 0.25,
            "wall_time_s.base": 120.0,
        }
    ).splitlines()
    shown = {line[:50].strip(): line[50:].strip() for line in report[:-1]}
    assert shown["base model: held-out action accuracy"] == "0.941"
    assert shown["probe accuracy by layer"] == "[0.445, 0.750]"
    assert shown["expert success (pretraining tasks)"] == "not run"
    assert shown["internal RL: episodes to reach 0.9"] == "never"
    assert shown["baseline raw_action_rl: success (post task)"] == "0.000"
    assert shown["baseline raw_action_rl: colours reached in order"] == "not run"
    assert shown["baseline raw_action_rl: success, greedy policy"] == "0.250"
    assert sum(line.startswith("baseline raw_action_rl: success (") for line in report) == 1
    assert "base model: held-out squared error of mean torques" not in shown  # the ant's
    assert report[-1].endswith(" 2.0 min")


def test_the_code_book_learner_chooses_exactly_at_the_true_subgoal_changes(smoke_run):
    codebook_rl = importlib.import_module("agents.internal_rl.codebook_rl")
    run_dir = RunDir(smoke_run)
    config = run_dir.read_config()
    model, featurizer = load_base_model(run_dir, config, torch.device("cpu"))
    controllers = load_controllers(run_dir, torch.device("cpu"))
    policy = ChoicePolicy(model.config.width, len(controllers.A), 8)
    learner = codebook_rl.CodebookLearner(
        model, featurizer, controllers, policy, "HierGrid-v0", torch.device("cpu")
    )
    batch = learner.collect(16, seed=3)
    alive = batch.alive.numpy()
    changes = (batch.subgoal[:, 1:] != batch.subgoal[:, :-1]) & alive[:, 1:]
    assert batch.switches[:, 0].all()
    assert np.array_equal(batch.switches[:, 1:].numpy(), changes)
    held = batch.latents[:, 1:] == batch.latents[:, :-1]
    assert held[~batch.switches[:, 1:] & batch.alive[:, 1:]].all(), "a choice holds until a change"


def test_the_code_book_diagnostic_runs_on_a_finished_run(smoke_run, capsys):
    codebook_rl = importlib.import_module("agents.internal_rl.codebook_rl")
    codebook_rl.main(["--out", str(smoke_run), "--iterations", "2", "--device", "cpu"])
    result = json.loads((smoke_run / "codebook_rl" / "result.json").read_text())
    assert 0.0 <= result["success_rate"] <= 1.0 and result["episodes"] > 0
    assert (smoke_run / "codebook_rl" / "success.png").exists()
    assert "[codebook_rl] success_rate" in capsys.readouterr().out


def test_labelled_codes_train_through_the_frozen_or_a_fresh_decoder_and_are_probed(
    smoke_run, capsys
):
    labelled_codes = importlib.import_module("agents.internal_rl.labelled_codes")
    run_dir = RunDir(smoke_run)
    config = run_dir.read_config()
    device = torch.device("cpu")
    _, _, meta = load_frozen_agent(run_dir, config, device, "metacontroller", False)
    before = {k: v.clone() for k, v in meta.decoder.state_dict().items()}
    results = {}
    for decoder in labelled_codes.DECODERS:
        labelled_codes.main(
            ["--out", str(smoke_run), "--decoder", decoder, "--steps", "3", "--device", "cpu"]
        )
        results[decoder] = json.loads(
            (smoke_run / "labelled_codes" / f"{decoder}.json").read_text()
        )
    assert "[labelled_codes] decoder fresh" in capsys.readouterr().out
    _, _, meta = load_frozen_agent(run_dir, config, device, "metacontroller", False)
    for name, value in meta.decoder.state_dict().items():
        assert torch.equal(value, before[name]), "the run's decoder is never changed"
    for result in results.values():
        assert result["steps"] == 3 and math.isfinite(result["final_loss"])
        assert len(result["codes"]) == 4, "one code per grid subgoal"
        assert result["pairs"] == len(result["pairs_detail"]) > result["unseen_pairs"] > 0
        for pair in result["pairs_detail"]:
            reached, hits = pair["with_code"]
            assert 0 <= hits <= reached
    with pytest.raises(ValueError, match="decoder must be one of"):
        labelled_codes.run_labelled_codes(smoke_run, "mean", 1, device)


def test_an_interrupted_controllers_stage_resumes_at_the_batch_it_stopped_at(
    smoke_run, tmp_path, monkeypatch
):
    """Stopped at step 7 of 20 (checkpoint at 4, mid-epoch), the rerun trains on the
    batches an uninterrupted run saw: the same losses."""
    from agents.internal_rl import controllers

    out = tmp_path / "resume"
    every_four = ("--set", "controllers.checkpoint_interval=4")
    for stage in ("data", "base"):
        run(out, "--stage", stage, *every_four)
    original = controllers.labelled_action_nll
    calls = []

    def interrupt_at_seven(*args, **kwargs):
        calls.append(1)
        if len(calls) == 7:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(controllers, "labelled_action_nll", interrupt_at_seven)
    with pytest.raises(SystemExit):
        run(out, "--stage", "controllers", *every_four)
    checkpoint = torch.load(out / "controllers" / "checkpoint.pt", weights_only=True)
    assert (checkpoint["step"], checkpoint["epoch"], checkpoint["batch_in_epoch"]) == (4, 0, 4)
    monkeypatch.setattr(controllers, "labelled_action_nll", original)
    run(out, "--stage", "controllers", *every_four)

    def losses(path):
        lines = (path / "controllers" / "metrics.jsonl").read_text().splitlines()
        return [json.loads(line)["loss"] for line in lines]

    resumed, reference = losses(out), losses(smoke_run)
    assert len(resumed) == len(reference) == 20
    # the stage drifts by up to ~1e-3 run to run on CPU; other batches differ by more
    np.testing.assert_allclose(resumed, reference, atol=2e-3)
