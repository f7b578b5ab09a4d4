"""The code book (stage ``codebook``): k-means of the switch codes, the segment-dropping
refit of the decoder, and internal RL choosing among the abstract actions at switches."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from agents.internal_rl import codebook_oracle, codebook_training
from agents.internal_rl.__main__ import main
from agents.internal_rl.codebook import (
    CodeBook,
    kmeans,
    load_codebook,
    loss_without_worst_segments,
    segment_ids,
)
from agents.internal_rl.codebook_oracle import OracleAgent
from agents.internal_rl.config import ConfigError, MetacontrollerConfig, RunConfig
from agents.internal_rl.metacontroller import LowRankDecoder, MetaController
from agents.internal_rl.probes import load_base_model
from agents.internal_rl.rl import load_internal_rl_agent
from agents.internal_rl.rollouts import ChoicePolicy, CodeBookAgent, Trajectories, rollout
from agents.internal_rl.run_dir import RunDir, RunDirError
from hier_envs.grid.layout import GridConfig

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


def test_segments_start_where_the_label_or_the_episode_changes_and_at_each_window():
    labels = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 2, 2]])
    episode = torch.tensor([[5, 5, 5, 6, 6], [6, 6, 7, 7, 7]])
    assert segment_ids(labels, episode).tolist() == [[0, 0, 1, 2, 2], [3, 3, 4, 5, 5]]


def test_the_worst_fitted_segments_are_left_out_of_the_loss():
    nll = torch.tensor([1.0, 1.0, 5.0, 5.0, 0.5, 2.0], requires_grad=True)
    segments = torch.tensor([0, 0, 1, 1, 2, 3])
    loss, kept = loss_without_worst_segments(nll, segments, drop=0.25)  # 1 of 4 segments
    assert loss.item() == pytest.approx((1 + 1 + 0.5 + 2) / 4) and kept == pytest.approx(4 / 6)
    loss.backward()
    assert nll.grad.tolist() == [0.25, 0.25, 0.0, 0.0, 0.25, 0.25]
    half, _ = loss_without_worst_segments(nll, segments, drop=0.5)  # segments 1 and 3
    assert half.item() == pytest.approx(2.5 / 3)
    plain, kept = loss_without_worst_segments(nll, segments, drop=0.1)  # floor(0.4) = 0
    assert plain.item() == pytest.approx(nll.mean().item()) and kept == 1.0


def test_kmeans_finds_separated_clusters_and_is_deterministic():
    generator = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    points = centres.repeat_interleave(50, 0) + 0.3 * torch.randn(200, 2, generator=generator)
    found = kmeans(points, 4, seed=1)
    matched = torch.cdist(centres, found).min(1).values
    assert (matched < 0.2).all()
    assert torch.equal(found, kmeans(points, 4, seed=1))
    with pytest.raises(RunDirError, match="Only 3 switch codes to cluster into 4"):
        kmeans(points[:3], 4, seed=1)


def test_kmeans_restarts_escape_a_seeding_that_merges_two_clusters():
    generator = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [3.0, 0.0], [20.0, 0.0], [0.0, 20.0]])
    points = torch.cat(
        [
            c + 0.5 * torch.randn(n, 2, generator=generator)
            for c, n in zip(centres, [100, 100, 20, 20])
        ]
    )

    def finds_every_centre(found: torch.Tensor) -> bool:
        return bool((torch.cdist(centres, found).min(1).values < 0.5).all())

    single = [finds_every_centre(kmeans(points, 4, seed=s, restarts=1)) for s in range(20)]
    assert not all(single), "some single seeding settles in a worse optimum"
    assert all(finds_every_centre(kmeans(points, 4, seed=s)) for s in range(20))


def gated_code_book() -> tuple[MetaController, CodeBook]:
    """A frozen metacontroller whose gates lie far from 0.5 both ways, and a code book of 3."""
    meta = MetaController(WIDTH, CFG).requires_grad_(False)
    torch.nn.init.normal_(meta.switch_out.weight, std=3.0)
    decoder = LowRankDecoder(CFG.latent_size, WIDTH, CFG.rank, CFG.decoder_hidden)
    return meta, CodeBook(torch.randn(3, CFG.latent_size), [decoder]).requires_grad_(False)


def test_an_averaged_code_book_edits_by_the_mean_of_its_fits():
    torch.manual_seed(5)
    books = []
    for _ in range(3):
        decoder = LowRankDecoder(CFG.latent_size, WIDTH, CFG.rank, CFG.decoder_hidden)
        torch.nn.init.normal_(decoder.a)
        books.append(CodeBook(torch.randn(3, CFG.latent_size), [decoder]))
    averaged = CodeBook.averaged(books)
    which, e = torch.tensor([2, 0, 1, 2]), torch.randn(4, WIDTH)
    mean = sum(book.edit(which)(e) for book in books) / 3
    assert averaged.codes.weight.shape == (3, 3 * CFG.latent_size)
    assert torch.allclose(averaged.edit(which)(e), mean, atol=1e-6)
    per_token = averaged.decoder(averaged.codes(which), e)  # a hypernetwork pass per token
    assert torch.allclose(averaged.edit(which)(e), per_token, atol=1e-5)
    assert not torch.allclose(books[0].edit(which)(e), mean, atol=1e-3), "the fits differ"


def test_a_code_book_saved_with_one_decoder_loads_as_one_fit(tmp_path):
    torch.manual_seed(6)
    decoder = LowRankDecoder(CFG.latent_size, WIDTH, CFG.rank, CFG.decoder_hidden)
    torch.nn.init.normal_(decoder.a)
    codebook = CodeBook(torch.randn(3, CFG.latent_size), [decoder])
    before_fits = {  # the keys of code books saved before codebook.fits
        key.replace("decoder.members.0.", "decoder."): value
        for key, value in codebook.state_dict().items()
    }
    (tmp_path / "codebook").mkdir()
    torch.save({"codebook": before_fits}, tmp_path / "codebook" / "codebook.pt")
    loaded = load_codebook(RunDir(tmp_path), torch.device("cpu"))
    which, e = torch.tensor([0, 1, 2]), torch.randn(3, WIDTH)
    assert len(loaded.decoder.members) == 1
    assert torch.equal(loaded.edit(which)(e), codebook.edit(which)(e))


def test_the_code_book_agent_chooses_an_abstract_action_only_at_switches():
    torch.manual_seed(3)
    meta, codebook = gated_code_book()
    policy = ChoicePolicy(WIDTH, len(codebook), 8).requires_grad_(False)
    agent = CodeBookAgent(meta, codebook, policy, 16, torch.Generator().manual_seed(0), "cpu")
    x = torch.randn(12, 16, 1, WIDTH)
    edits = [agent(x[t]) for t in range(12)]
    switches, choices = torch.stack(agent.switches, 1), torch.stack(agent.latents, 1)
    assert switches[:, 0].all() and 0 < switches[:, 1:].float().mean() < 1
    assert choices.unique().tolist() == [0, 1, 2]
    assert (choices[:, 1:] == choices[:, :-1])[~switches[:, 1:]].all(), "held between switches"
    expected = codebook.edit(choices[:, 5])(x[5, :, 0])
    assert torch.allclose(edits[5][:, 0], expected)


@pytest.mark.parametrize("reads_choice, keep_bias", [(True, None), (False, 1.5), (True, 1.5)])
def test_a_policy_using_the_action_in_force_scores_its_own_samples_over_whole_episodes(
    reads_choice, keep_bias
):
    torch.manual_seed(4)
    meta, codebook = gated_code_book()
    policy = ChoicePolicy(WIDTH, len(codebook), 8, reads_choice, keep_bias).requires_grad_(False)
    torch.nn.init.normal_(policy.head.weight, std=1.0)
    sampled_from: list[torch.Tensor] = []
    logits = policy.logits

    def recorded_logits(*args: torch.Tensor) -> torch.Tensor:
        sampled_from.append(logits(*args))
        return sampled_from[-1]

    policy.logits = recorded_logits
    agent = CodeBookAgent(meta, codebook, policy, 16, torch.Generator().manual_seed(0), "cpu")
    for t in range(12):
        agent(torch.randn(16, 1, WIDTH))
    residuals, choices = torch.stack(agent.residuals, 1), torch.stack(agent.latents, 1)
    switches = torch.stack(agent.switches, 1)
    step_by_step = torch.stack(sampled_from[:12], 1).log_softmax(-1)
    step_by_step = step_by_step.gather(-1, choices[..., None])[..., 0]
    whole = policy.log_prob(residuals, choices)
    assert torch.allclose(whole[switches], step_by_step[switches], atol=1e-5)
    other = choices.clone()
    other[:, 5] = (other[:, 5] + 1) % len(codebook)
    changed = policy.log_prob(residuals, other)
    assert torch.equal(changed[:, :5], whole[:, :5]), "causal"
    assert not torch.allclose(changed[:, 6], whole[:, 6]), "uses the action in force"


def test_a_keep_bias_policy_starts_uniform_then_keeps_the_action_in_force():
    policy = ChoicePolicy(WIDTH, 3, 8, keep_bias=2.0)
    residuals = torch.randn(5, 4, WIDTH)
    choices = torch.tensor([[0, 0, 2, 2], [1, 1, 1, 1], [2, 0, 0, 1], [0, 1, 2, 0], [1, 2, 2, 2]])
    probs = policy.log_prob(residuals, choices).exp()
    assert torch.allclose(probs[:, 0], torch.full((5,), 1 / 3))
    kept = choices[:, 1:] == choices[:, :-1]
    keep = math.exp(2.0) / (math.exp(2.0) + 2)
    assert torch.allclose(probs[:, 1:][kept], torch.tensor(keep))
    assert torch.allclose(probs[:, 1:][~kept], torch.tensor((1 - keep) / 2))
    policy.log_prob(residuals, choices).sum().backward()
    assert policy.keep_bias.grad is not None and policy.keep_bias.grad != 0, "learnt"


def test_the_oracle_takes_the_current_subgoals_cluster_at_each_switch():
    torch.manual_seed(3)
    meta, codebook = gated_code_book()
    lookup = torch.tensor([2, 0, 1, 2])
    agent = OracleAgent(meta, codebook, lookup, WIDTH, 16, torch.device("cpu"))
    subgoals = torch.randint(4, (12, 16))
    for t in range(12):
        agent.controller_for(t, {"subgoal": subgoals[t].numpy()})(torch.randn(16, 1, WIDTH))
    switches, choices = torch.stack(agent.switches, 1), torch.stack(agent.latents, 1)
    assert 0 < switches[:, 1:].float().mean() < 1
    assert torch.equal(choices[switches], lookup[subgoals.T][switches])
    assert (choices[:, 1:] == choices[:, :-1])[~switches[:, 1:]].all(), "held between switches"


def test_the_oracle_counts_wrong_colours_and_step_backs():
    # Three episodes: a success; a failure stepping back onto colour 1 (entered at step 1,
    # left at step 2, re-entered at step 3); a failure entering colour 4 after progress 2.
    visited = np.array([[0, 1, -1, 2], [0, 1, -1, 1], [0, 1, 4, -1]])
    alive = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 0]], dtype=torch.bool)
    trajectories = Trajectories(
        features=torch.zeros(3, 4, 1),
        actions=torch.zeros(3, 4, dtype=torch.long),
        alive=alive,
        subgoal=np.zeros((3, 4), dtype=np.int64),
        visited=visited,
        success=torch.tensor([1.0, 0.0, 0.0]),
        progress=np.array([12, 2, 2]),
        timed_out=np.zeros(3, dtype=bool),
    )
    assert codebook_oracle.wrong_colours(trajectories) == {"2": {"1": 1, "4": 1}}
    assert codebook_oracle.step_backs(trajectories) == 1


def test_the_oracle_scores_a_runs_code_book(smoke_run, capsys):
    codebook_oracle.main(["--out", str(smoke_run), "--episodes", "16", "--device", "cpu"])
    result = json.loads((smoke_run / "codebook_oracle" / "result.json").read_text())
    assert 0 <= result["success_rate"] <= 1 and result["switches_per_episode"] >= 1
    failures = sum(map(sum, result["failures_by_progress"].values()))
    assert failures == round(16 * (1 - result["success_rate"]))
    wrong = sum(sum(by_colour.values()) for by_colour in result["wrong_colours"].values())
    assert wrong == sum(result["failures_by_progress"]["wrong_colour"])
    assert 0 <= result["step_backs"] <= wrong
    assert "[codebook_oracle] success_rate" in capsys.readouterr().out


def test_rollouts_mark_the_episodes_that_ran_out_of_steps(smoke_run):
    config = RunDir(smoke_run).read_config()
    cpu = torch.device("cpu")
    model, featurizer = load_base_model(RunDir(smoke_run), config, cpu)
    limit = GridConfig().max_steps
    free = rollout(model, featurizer, "HierGrid-v0", 16, 0, cpu, end_on_wrong_colour=False)
    assert free.timed_out.any()
    assert np.array_equal(free.timed_out, free.success.numpy() == 0), "free play ends only so"
    assert (free.alive.sum(1).numpy()[free.timed_out] == limit).all()
    strict = rollout(model, featurizer, "HierGrid-v0", 16, 0, cpu)
    lengths = strict.alive.sum(1).numpy()
    assert (lengths[strict.timed_out] == limit).all() and not strict.timed_out[
        lengths < limit
    ].any()


def test_a_code_book_policy_needs_a_code_book():
    with pytest.raises(ConfigError, match="rl.policy=codebook needs a code book"):
        RunConfig.from_preset("HierGrid-v0", "smoke", overrides=["codebook.clusters=0"])
    with pytest.raises(ConfigError, match="codebook.drop must be in"):
        RunConfig.from_preset("HierGrid-v0", "smoke", overrides=["codebook.drop=1.0"])
    with pytest.raises(ConfigError, match="rl.keep_bias needs rl.policy=codebook"):
        RunConfig.from_preset(
            "HierGrid-v0", "smoke", overrides=["rl.policy=latent", "rl.keep_bias=2"]
        )
    with pytest.raises(ConfigError, match="rl.keep_bias needs rl.policy=codebook"):
        RunConfig.from_preset(
            "HierGrid-v0", "smoke", overrides=["rl.policy=latent", "rl.keep_bias=0.0"]
        )
    with pytest.raises(ConfigError, match="rl.policy must be one of"):
        RunConfig.from_preset("HierGrid-v0", "smoke", overrides=['rl.policy="gaussian"'])


def test_smoke_run_distils_a_code_book_and_runs_internal_rl_over_it(smoke_run):
    summary = json.loads((smoke_run / "summary.json").read_text())
    assert 0.25 <= summary["codebook.purity"] <= 1.0
    assert summary["codebook.switch_codes"] >= 4
    metrics = [
        json.loads(line)
        for line in (smoke_run / "codebook" / "metrics.jsonl").read_text().splitlines()
    ]
    assert [m["step"] for m in metrics] == list(range(1, 11))
    assert all(math.isfinite(m["loss"]) and 0.5 < m["kept"] <= 1 for m in metrics)
    device = torch.device("cpu")
    run_dir = RunDir(smoke_run)
    codebook = load_codebook(run_dir, device)
    assert len(codebook) == 4 and not any(p.requires_grad for p in codebook.parameters())
    agent = load_internal_rl_agent(run_dir, run_dir.read_config(), device)
    batch = agent.collect(8, seed=5)
    assert batch.latents.dtype == torch.long and batch.latents.max() < 4
    assert batch.switches[:, 0].all()
    assert 0.0 <= summary["internal_rl.greedy_success_rate"] <= 1.0


def test_the_greedy_code_book_agent_takes_the_policys_most_likely_action(smoke_run):
    device = torch.device("cpu")
    run_dir = RunDir(smoke_run)
    learner = load_internal_rl_agent(run_dir, run_dir.read_config(), device)
    with torch.no_grad():
        learner.module.head.bias.copy_(torch.tensor([0.0, 0.0, 1.0, 0.0]))
    greedy = learner.collect(16, seed=5, greedy=True)
    sampled = learner.collect(16, seed=5)
    chosen = greedy.latents[greedy.switches]
    assert chosen.numel() >= 16 and torch.all(chosen == 2)
    assert len(sampled.latents[sampled.switches].unique()) > 1, "sampling is not greedy"


def test_the_code_books_decoder_takes_its_own_rank_or_the_metacontrollers(smoke_run, tmp_path):
    out = tmp_path / "rank"
    for stage in ("data", "base", "metacontroller", "codebook"):
        run(out, "--stage", stage, "--set", "codebook.rank=6")
    device = torch.device("cpu")
    own = load_codebook(RunDir(out), device).decoder.members[0].b.shape[1]
    inherited = load_codebook(RunDir(smoke_run), device).decoder.members[0].b.shape[1]
    assert (own, inherited) == (6, RunDir(smoke_run).read_config().metacontroller.rank)


def test_a_missing_code_book_says_which_stage_to_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="run the codebook stage first"):
        load_codebook(RunDir(tmp_path), torch.device("cpu"))


def interrupted_then_resumed(out, monkeypatch, at_batch: int, *args: str) -> dict:
    """Run stage ``codebook`` in ``out`` (its inputs first), interrupted at its
    ``at_batch``-th batch, then again to the end; the checkpoint the interruption left."""
    for stage in ("data", "base", "metacontroller"):
        run(out, "--stage", stage, *args)
    original = codebook_training.distillation_loss
    calls = []

    def interrupting(*loss_args, **kwargs):
        calls.append(1)
        if len(calls) == at_batch:
            raise KeyboardInterrupt
        return original(*loss_args, **kwargs)

    monkeypatch.setattr(codebook_training, "distillation_loss", interrupting)
    with pytest.raises(SystemExit):
        run(out, "--stage", "codebook", *args)
    saved = torch.load(out / "codebook" / "checkpoint.pt", weights_only=True)
    monkeypatch.setattr(codebook_training, "distillation_loss", original)
    run(out, "--stage", "codebook", *args)
    return saved


def metric_records(stage_dir) -> list[dict]:
    return [json.loads(line) for line in (stage_dir / "metrics.jsonl").read_text().splitlines()]


def test_an_interrupted_codebook_stage_resumes_from_its_checkpoint(
    smoke_run, tmp_path, monkeypatch
):
    out = tmp_path / "resume"
    saved = interrupted_then_resumed(out, monkeypatch, 7)  # step 7 of 10; checkpoints every 5
    assert saved["step"] == 5
    losses = [[r["loss"] for r in metric_records(path / "codebook")] for path in (out, smoke_run)]
    assert losses[0] == losses[1], "same seed, same result"


def test_a_code_book_of_two_fits_resumes_within_its_second_fit(smoke_run, tmp_path, monkeypatch):
    out = tmp_path / "fits"
    saved = interrupted_then_resumed(out, monkeypatch, 17, "--set", "codebook.fits=2")
    assert (saved["step"], len(saved["finished"])) == (15, 1)  # step 7 of the second fit's 10

    records = metric_records(out / "codebook")
    assert [(r["step"], r["fit"]) for r in records] == [(s, s > 10) for s in range(1, 21)]
    one_fit = [r["loss"] for r in metric_records(smoke_run / "codebook")]
    assert [r["loss"] for r in records[:10]] == one_fit, "the first fit is the one-fit code book"
    assert [r["loss"] for r in records[10:]] != one_fit, "the second fit draws from another seed"
    device = torch.device("cpu")
    two, one = (load_codebook(RunDir(path), device) for path in (out, smoke_run))
    assert len(two.decoder.members) == 2
    assert torch.equal(two.decoder.members[0].a, one.decoder.members[0].a)
