"""Stage ``generalisation``: do the metacontroller's codes name colours across layouts?

The paper's Fig. A4. Codes: on held-out expert episodes, the code the metacontroller (at
its means) chooses at each switch, grouped by the subgoal that begins there. Probe: in
fresh layouts on the task ``(c, k)``, the base model acts on its own until it reaches
colour ``c``; from then on a code of colour ``k``, drawn from the held-out episodes (other
layouts), is held for the rest of the episode. Reported: of the episodes that reach ``c``,
the share whose next colour is ``k``, with the code and without it (the same episodes'
seeds), over all pairs and over the pairs whose transition ``c -> k`` no pretraining task
contains (unseen contexts).
"""

from __future__ import annotations

import json

import numpy as np
import torch
from matplotlib.figure import Figure

from agents.internal_rl.base_model import BaseModel
from agents.internal_rl.config import RunConfig
from agents.internal_rl.data import IGNORE, EpisodeDataset, load_split
from agents.internal_rl.metacontroller import SWITCH_THRESHOLD, MetaController
from agents.internal_rl.metacontroller_training import metacontroller_losses
from agents.internal_rl.observations import Featurizer
from agents.internal_rl.rl import load_frozen_agent
from agents.internal_rl.rollouts import rollout
from agents.internal_rl.run_dir import RunDir


@torch.no_grad()
def codes_by_subgoal(
    model: BaseModel,
    meta: MetaController,
    featurizer: Featurizer,
    heldout: EpisodeDataset,
    config: RunConfig,
    device: torch.device,
) -> dict[int, torch.Tensor]:
    """Subgoal -> the codes ``(n, n_z)`` chosen at switches where that subgoal begins."""
    cfg = config.metacontroller
    codes: list[torch.Tensor] = []
    labels: list[torch.Tensor] = []
    batches = heldout.batches(config.base.window, cfg.batch_size, seed=0)
    for _, batch in zip(range(cfg.eval_batches), batches):
        result = metacontroller_losses(model, meta, featurizer, batch, 0.0, device, sample=False)
        subgoal = torch.as_tensor(batch.subgoal, device=device)
        subgoal = result["layout"].to_episodes(subgoal, fill=IGNORE)
        switch = (result["outputs"]["beta"] >= SWITCH_THRESHOLD) & (subgoal != IGNORE)
        codes.append(result["outputs"]["z"][switch])
        labels.append(subgoal[switch])
    z, label = torch.cat(codes), torch.cat(labels)
    return {int(k): z[label == k] for k in label.unique()}


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
    """On the task ``pair = (c, k)``: (episodes that reach ``c``, of those, the ones that reach
    ``k`` next), holding one of ``codes`` (drawn per episode) from ``c`` on, or no code."""
    hook = None
    if codes is not None:
        generator = torch.Generator().manual_seed(seed)
        z = codes[torch.randint(len(codes), (episodes,), generator=generator)]

        def hook(step: int, info: dict):
            active = torch.as_tensor(info["progress"] >= 1, device=device)[:, None, None]
            return lambda x: meta.decoder(z, x[:, 0])[:, None] * active

    trajectories = rollout(model, featurizer, env_id, episodes, seed, device, hook, task=pair)
    reached_first = int((trajectories.progress >= 1).sum())
    return reached_first, int(trajectories.success.sum().item())


def probe_pairs(config: RunConfig, colours: list[int], tasks: np.ndarray) -> list[tuple[int, int]]:
    """``config.generalisation.pairs`` pairs ``(c, k)``, ``c`` a first colour of a pretraining
    task and ``k`` another colour with codes, drawn with the run's seed."""
    firsts = sorted({int(task[0]) for task in tasks})
    pairs = [(c, k) for c in firsts for k in colours if k != c]
    rng = np.random.default_rng([config.seed, 41])
    chosen = rng.permutation(len(pairs))[: config.generalisation.pairs]
    return [pairs[i] for i in sorted(chosen)]


def run_generalisation_stage(run: RunDir, config: RunConfig, device: torch.device) -> None:
    cfg = config.generalisation
    model, featurizer, meta = load_frozen_agent(run, config, device, "metacontroller", False)
    heldout = load_split(run, "heldout")
    codes = codes_by_subgoal(model, meta, featurizer, heldout, config, device)
    seen = {(int(a), int(b)) for task in heldout.tasks for a, b in zip(task[:-1], task[1:])}
    results = []
    for number, (first, target) in enumerate(probe_pairs(config, sorted(codes), heldout.tasks)):
        seed = config.seed * 1_000 + 50_000 + number * cfg.episodes
        result = {"pair": [first, target], "seen_in_pretraining": (first, target) in seen}
        for arm, arm_codes in (("with_code", codes[target]), ("without_code", None)):
            result[arm] = reach_rate(
                model,
                featurizer,
                meta,
                config.env_id,
                (first, target),
                arm_codes,
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
        for arm in ("with_code", "without_code"):
            reached = sum(r[arm][0] for r in subset)
            hits = sum(r[arm][1] for r in subset)
            summary[f"generalisation.{name}reach_rate_{arm}"] = hits / reached if reached else None
    summary["generalisation.pairs"] = len(results)
    summary["generalisation.unseen_pairs"] = sum(not r["seen_in_pretraining"] for r in results)
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
    axis.set_ylabel("next colour is the target")
    axis.set_xlabel("first colour -> target (*: transition unseen in pretraining)")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
