"""Stage ``generalisation``: do the metacontroller's codes name subgoals across layouts?

The paper's Fig. A4. Codes: on held-out expert episodes, the code the metacontroller (at
its means) chooses at each switch, grouped by the subgoal that begins there (a colour on
the ant, a colour pair A..D on the grid). Probe: in fresh layouts on the task made of
subgoals ``(a, b)``, the base model acts on its own until it completes ``a``; from then on
a code of ``b``, drawn from the held-out episodes (other layouts), is held for the rest of
the episode. Reported: of the episodes that complete ``a``, the share that complete ``b``
next, with the code and without it (the same episodes' seeds), over all pairs and over
the pairs whose transition ``a -> b`` no pretraining task contains (unseen contexts).
Also, teacher-forced on held-out episodes, how well codes carry over to other episodes
(``code_transfer_nll``).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from matplotlib.figure import Figure

from agents.internal_rl.base_model import BaseModel
from agents.internal_rl.base_training import tensors
from agents.internal_rl.config import RunConfig
from agents.internal_rl.data import IGNORE, EpisodeDataset, load_split
from agents.internal_rl.metacontroller import (
    SWITCH_THRESHOLD,
    EpisodeLayout,
    MetaController,
    given_switches,
)
from agents.internal_rl.observations import Featurizer
from agents.internal_rl.rl import load_frozen_agent
from agents.internal_rl.rollouts import rollout
from agents.internal_rl.run_dir import RunDir
from hier_envs.tasks import GRID_SUBGOALS


@dataclasses.dataclass
class HeldoutPass:
    """One held-out batch through the frozen model and the metacontroller (at its means)."""

    batch: dict[str, torch.Tensor]  # ``tensors`` of the batch
    stream: torch.Tensor  # the controlled layer's stream, in windows
    context: torch.Tensor  # what the layers above it need (``to_controlled_layer``)
    layout: EpisodeLayout
    outputs: dict[str, torch.Tensor]  # the metacontroller's, in episodes
    subgoal: torch.Tensor  # ``(E, T)`` label of every step, IGNORE at padding

    def action_nll(self, model: BaseModel, meta: MetaController, z: torch.Tensor | None):
        """Per step ``(E, T)``: the expert action's NLL with the edits of codes ``z (E, T,
        n_z)`` (``None``: no edit); NaN where a step has no action."""
        stream = self.stream
        if z is not None:
            edit = meta.decoder(z, self.layout.to_episodes(stream))
            stream = stream + self.layout.to_windows(edit, stream)
        params = model.from_controlled_layer(stream, self.context)
        acts = self.batch["has_action"]
        nll = torch.full(acts.shape, float("nan"), device=params.device)
        nll[acts] = -model.action_distribution(params[acts]).log_prob(self.batch["actions"][acts])
        return self.layout.to_episodes(nll, fill=float("nan"))


@torch.no_grad()
def heldout_passes(
    model: BaseModel,
    meta: MetaController,
    featurizer: Featurizer,
    heldout: EpisodeDataset,
    config: RunConfig,
    device: torch.device,
) -> Iterator[HeldoutPass]:
    """``metacontroller.eval_batches`` held-out batches, always the same ones."""
    cfg = config.metacontroller
    batches = heldout.batches(config.base.window, cfg.batch_size, seed=0)
    for _, batch in zip(range(cfg.eval_batches), batches):
        t = tensors(featurizer, batch, device)
        stream, context = model.to_controlled_layer(t["features"], t["segments"])
        layout = EpisodeLayout(batch, device)
        switches = given_switches(meta, layout, batch)
        outputs = meta(layout.to_episodes(stream), layout.lengths, False, switches)
        subgoal = torch.as_tensor(batch.subgoal, device=device)
        yield HeldoutPass(
            t, stream, context, layout, outputs, layout.to_episodes(subgoal, fill=IGNORE)
        )


def switch_codes(heldout_pass: HeldoutPass) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The codes chosen at switches ``(n, n_z)``, their episodes and the subgoals beginning there."""
    out, subgoal = heldout_pass.outputs, heldout_pass.subgoal
    switch = (out["beta"] >= SWITCH_THRESHOLD) & (subgoal != IGNORE)
    episode = switch.nonzero()[:, 0]
    return out["z"][switch], episode, subgoal[switch]


def codes_by_subgoal(
    model: BaseModel,
    meta: MetaController,
    featurizer: Featurizer,
    heldout: EpisodeDataset,
    config: RunConfig,
    device: torch.device,
) -> dict[int, torch.Tensor]:
    """Subgoal -> the codes ``(n, n_z)`` chosen at switches where that subgoal begins."""
    codes, labels = [], []
    for heldout_pass in heldout_passes(model, meta, featurizer, heldout, config, device):
        z, _, label = switch_codes(heldout_pass)
        codes.append(z)
        labels.append(label)
    z, label = torch.cat(codes), torch.cat(labels)
    return {int(k): z[label == k] for k in label.unique()}


TRANSFER_ARMS = ("own", "same_subgoal", "other_subgoal", "no_code")


@torch.no_grad()
def code_transfer_nll(
    model: BaseModel,
    meta: MetaController,
    featurizer: Featurizer,
    heldout: EpisodeDataset,
    config: RunConfig,
    device: torch.device,
) -> dict[str, float]:
    """Do codes carry over to other episodes? Teacher-forced, on held-out expert episodes:
    the action NLL of each subgoal's steps under the episode's own codes, under one code of
    the same subgoal from another episode (another layout), under one of another subgoal,
    and with no edit. Codes that name subgoals carry over (same ~ own < no code < other);
    codes that describe one episode, such as where its target lies, do not (same ~ no code).
    Only steps for which both donors exist count."""
    generator = torch.Generator().manual_seed(config.seed)
    totals = dict.fromkeys(TRANSFER_ARMS, 0.0)
    count = 0
    for heldout_pass in heldout_passes(model, meta, featurizer, heldout, config, device):
        z = heldout_pass.outputs["z"]
        pool, pool_episode, pool_subgoal = switch_codes(heldout_pass)
        donors = {"same_subgoal": z.clone(), "other_subgoal": z.clone()}
        counted = torch.zeros_like(heldout_pass.subgoal, dtype=torch.bool)
        for episode in range(len(z)):
            for subgoal in heldout_pass.subgoal[episode].unique().tolist():
                if subgoal == IGNORE:
                    continue
                others = pool_episode != episode
                same = (others & (pool_subgoal == subgoal)).nonzero()[:, 0]
                different = (others & (pool_subgoal != subgoal)).nonzero()[:, 0]
                if not len(same) or not len(different):
                    continue
                steps = heldout_pass.subgoal[episode] == subgoal
                for arm, choices in (("same_subgoal", same), ("other_subgoal", different)):
                    pick = choices[torch.randint(len(choices), (), generator=generator)]
                    donors[arm][episode, steps] = pool[pick]
                counted[episode] |= steps
        for arm, codes in (("own", z), *donors.items(), ("no_code", None)):
            nll = heldout_pass.action_nll(model, meta, codes)
            totals[arm] += nll[counted & ~nll.isnan()].sum().item()
        count += int((counted & ~nll.isnan()).sum())
    return {
        f"generalisation.transfer_nll_{arm}": totals[arm] / max(count, 1) for arm in TRANSFER_ARMS
    }


def subgoal_colours(env_id: str, subgoal: int) -> tuple[int, ...]:
    """The colours a subgoal label stands for: a pair A..D on the grid, one colour on the ant."""
    return GRID_SUBGOALS[subgoal] if env_id == "HierGrid-v0" else (subgoal,)


def task_subgoals(env_id: str, task: Sequence[int]) -> list[int]:
    """A task's colours read as its sequence of subgoal labels."""
    if env_id != "HierGrid-v0":
        return [int(colour) for colour in task]
    return [GRID_SUBGOALS.index((int(a), int(b))) for a, b in zip(task[::2], task[1::2])]


def reach_rate(
    model: BaseModel,
    featurizer: Featurizer,
    meta: MetaController,
    env_id: str,
    pair: tuple[int, int],
    codes: torch.Tensor | None,
    episodes: int,
    seed: int,
    device: torch.device,
) -> tuple[int, int]:
    """On the task of subgoals ``pair = (a, b)``: (episodes that complete ``a``, of those,
    the ones that complete ``b`` next), holding one of ``codes`` (drawn per episode) from
    the end of ``a`` on, or no code."""
    first = subgoal_colours(env_id, pair[0])
    task = first + subgoal_colours(env_id, pair[1])
    hook = None
    if codes is not None:
        generator = torch.Generator().manual_seed(seed)
        z = codes[torch.randint(len(codes), (episodes,), generator=generator)]

        def hook(step: int, info: dict):
            active = torch.as_tensor(info["progress"] >= len(first), device=device)
            return lambda x: meta.decoder(z, x[:, 0])[:, None] * active[:, None, None]

    trajectories = rollout(model, featurizer, env_id, episodes, seed, device, hook, task=task)
    completed_first = int((trajectories.progress >= len(first)).sum())
    return completed_first, int(trajectories.success.sum().item())


def probe_pairs(config: RunConfig, subgoals: list[int], tasks: np.ndarray) -> list[tuple[int, int]]:
    """``config.generalisation.pairs`` pairs of subgoals ``(a, b)``, ``a`` the first of a
    pretraining task and ``b`` another with codes, drawn with the run's seed."""
    firsts = sorted({task_subgoals(config.env_id, task)[0] for task in tasks})
    pairs = [(a, b) for a in firsts for b in subgoals if b != a]
    rng = np.random.default_rng([config.seed, 41])
    chosen = rng.permutation(len(pairs))[: config.generalisation.pairs]
    return [pairs[i] for i in sorted(chosen)]


def probe_codes(
    model: BaseModel,
    featurizer: Featurizer,
    meta: MetaController,
    config: RunConfig,
    codes: dict[int, torch.Tensor],
    tasks: np.ndarray,
    device: torch.device,
    arms: Sequence[str] = ("with_code", "without_code"),
) -> tuple[list[dict], dict[str, float | None]]:
    """The probe on :func:`probe_pairs` (``tasks``: the pretraining tasks, which say which
    transitions are seen): per pair the :func:`reach_rate` of each arm, and the rates
    pooled over all pairs and over the unseen ones."""
    cfg = config.generalisation
    sequences = [task_subgoals(config.env_id, task) for task in tasks]
    seen = {(a, b) for labels in sequences for a, b in zip(labels[:-1], labels[1:])}
    results = []
    for number, (first, target) in enumerate(probe_pairs(config, sorted(codes), tasks)):
        seed = config.seed * 1_000 + 50_000 + number * cfg.episodes
        result = {"pair": [first, target], "seen_in_pretraining": (first, target) in seen}
        for arm in arms:
            result[arm] = reach_rate(
                model,
                featurizer,
                meta,
                config.env_id,
                (first, target),
                codes[target] if arm == "with_code" else None,
                cfg.episodes,
                seed,
                device,
            )
        results.append(result)
    summary = {}
    for name, subset in (
        ("", results),
        ("unseen_", [r for r in results if not r["seen_in_pretraining"]]),
    ):
        for arm in arms:
            reached = sum(r[arm][0] for r in subset)
            hits = sum(r[arm][1] for r in subset)
            summary[f"{name}reach_rate_{arm}"] = hits / reached if reached else None
    summary["pairs"] = len(results)
    summary["unseen_pairs"] = sum(not r["seen_in_pretraining"] for r in results)
    return results, summary


def run_generalisation_stage(run: RunDir, config: RunConfig, device: torch.device) -> None:
    model, featurizer, meta = load_frozen_agent(run, config, device, "metacontroller", False)
    heldout = load_split(run, "heldout")
    codes = codes_by_subgoal(model, meta, featurizer, heldout, config, device)
    results, rates = probe_codes(model, featurizer, meta, config, codes, heldout.tasks, device)
    summary = {f"generalisation.{k}": v for k, v in rates.items()}
    summary.update(code_transfer_nll(model, meta, featurizer, heldout, config, device))
    directory = run.stage_dir("generalisation")
    (directory / "result.json").write_text(json.dumps(results))
    run.update_summary(summary)
    print("[generalisation] " + ", ".join(f"{k.split('.')[1]} {v}" for k, v in summary.items()))
    plot_reach_rates(results, run.plots / "generalisation.png")


def plot_reach_rates(results: list[dict], path) -> None:
    """Per pair, the share reaching the target next, with and without the injected code."""
    figure = Figure(figsize=(max(5, 0.5 * len(results) + 2), 3))
    axis = figure.subplots()
    x = np.arange(len(results))
    for offset, arm in ((-0.2, "with_code"), (0.2, "without_code")):
        rates = [r[arm][1] / r[arm][0] if r[arm][0] else 0.0 for r in results]
        axis.bar(x + offset, rates, width=0.4, label=arm.replace("_", " "))
    labels = [
        "{}->{}{}".format(*r["pair"], "" if r["seen_in_pretraining"] else "*") for r in results
    ]
    axis.set_xticks(x, labels, fontsize=7)
    axis.set_ylabel("next subgoal is the target")
    axis.set_xlabel("first subgoal -> target (*: transition unseen in pretraining)")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
