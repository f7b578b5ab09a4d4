"""Stage ``codebook``: the metacontroller's switch codes distilled into a few abstract actions.

The project's addition to the paper (docs/internal-rl-notes.md, "A code book of abstract
actions"). The metacontroller's codes name subgoals, but its decoder's edits steer only
where the base model already expects the subgoal they name. Three steps, no subgoal labels:

1. k-means (``codebook.clusters``) on the codes the metacontroller (at its means) chooses at
   its switches on held-out episodes: the abstract actions.
2. Each training token gets the cluster of the code in force there; a fresh decoder (the
   metacontroller's form) and one learned code per cluster are fitted to the expert's
   actions. In each batch the share ``codebook.drop`` of segments (runs of one cluster in
   one episode) with the highest mean action NLL is left out of the loss: k-means gets
   about 1.5% of segments wrong, and those few would teach the decoder to trust the
   context over the code, which is what stops an edit steering at transitions that
   pretraining never showed. This is done ``codebook.fits`` times from other seeds and
   the fits' edits averaged: fits steer differently well, their mean better than one
   does on average.
3. Scored against the true subgoals (used only here): cluster purity at held-out
   switches, and the generalisation probe with each subgoal's majority cluster.

Internal RL then picks one of the clusters wherever the metacontroller's switch fires
(``rl.policy=codebook``, :class:`~agents.internal_rl.rollouts.CodeBookAgent`).
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

from agents.internal_rl.base_model import BaseModel
from agents.internal_rl.base_training import tensors
from agents.internal_rl.codebook import (
    STAGE,
    CodeBook,
    codebook_like,
    kmeans,
    loss_without_worst_segments,
    segment_ids,
    with_members,
)
from agents.internal_rl.config import RunConfig
from agents.internal_rl.data import IGNORE, Batch, DataPosition, load_split
from agents.internal_rl.generalisation import heldout_passes, probe_codes, switch_codes
from agents.internal_rl.metacontroller import (
    EpisodeLayout,
    LowRankDecoder,
    MetaController,
    given_switches,
)
from agents.internal_rl.observations import Featurizer
from agents.internal_rl.rl import load_frozen_agent
from agents.internal_rl.run_dir import RunDir, load_checkpoint, save_checkpoint


def distillation_loss(
    model: BaseModel,
    meta: MetaController,
    featurizer: Featurizer,
    codebook: CodeBook,
    batch: Batch,
    drop: float,
    device: torch.device,
) -> tuple[torch.Tensor, float]:
    """The expert actions' NLL with each token edited by the abstract action of the
    metacontroller's code in force there, worst segments left out; and the share kept."""
    t = tensors(featurizer, batch, device)
    with torch.no_grad():
        stream, context = model.to_controlled_layer(t["features"], t["segments"])
        layout = EpisodeLayout(batch, device)
        switches = given_switches(meta, layout, batch)
        z = meta(layout.to_episodes(stream), layout.lengths, False, switches)["z"]
        like = torch.zeros(stream.shape[:2], dtype=torch.long, device=device)
        clusters = layout.to_windows(codebook.nearest(z), like)
    params = model.from_controlled_layer(stream + codebook.edit(clusters)(stream), context)
    acts = t["has_action"]
    nll = -model.action_distribution(params[acts]).log_prob(t["actions"][acts])
    episode = torch.as_tensor(batch.episode, device=device)
    return loss_without_worst_segments(nll, segment_ids(clusters, episode)[acts], drop)


def heldout_switch_codes(
    model: BaseModel,
    meta: MetaController,
    featurizer: Featurizer,
    run: RunDir,
    config: RunConfig,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The codes chosen at switches on the held-out episodes ``(n, n_z)`` and the true
    subgoals beginning there ``(n,)`` (for scoring only)."""
    codes, labels = [], []
    heldout = load_split(run, "heldout")
    for heldout_pass in heldout_passes(model, meta, featurizer, heldout, config, device):
        z, _, label = switch_codes(heldout_pass)
        codes.append(z)
        labels.append(label)
    return torch.cat(codes), torch.cat(labels)


def fresh_codebook(
    config: RunConfig,
    model: BaseModel,
    meta: MetaController,
    centroids: torch.Tensor,
    seed: int,
    device: torch.device,
) -> CodeBook:
    """An untrained code book of one fit: a decoder of the metacontroller's form (of rank
    ``codebook.rank``) and codes, their initial weights drawn from ``seed``."""
    mc = config.metacontroller
    torch.manual_seed(seed + 47)
    decoder = LowRankDecoder(
        mc.latent_size,
        model.config.width,
        config.codebook.rank or mc.rank,
        mc.decoder_hidden,
        meta.decoder.whiten,
    )
    return CodeBook(centroids, [decoder]).to(device)


def fit_codebook(
    run: RunDir,
    config: RunConfig,
    model: BaseModel,
    meta: MetaController,
    featurizer: Featurizer,
    centroids: torch.Tensor,
    device: torch.device,
) -> CodeBook:
    """Fit ``codebook.fits`` code books to the clusters, one after another (fit ``i`` draws
    its initial weights and batches from ``seed + 1000 i``), and average them; resumable
    from the stage's checkpoint, which holds the finished fits and the one in progress."""
    cfg = config.codebook
    path = run.stage_dir(STAGE) / "checkpoint.pt"
    state = load_checkpoint(path, map_location=device) or {"step": 0}
    finished = [codebook_like(weights).to(device) for weights in state.get("finished", [])]
    step = state["step"]  # over all fits
    log = run.metrics(STAGE, resume_step=step)
    train = load_split(run, "train")
    progress = tqdm(total=cfg.fits * cfg.steps, initial=step, desc="code book", unit="step")
    while len(finished) < cfg.fits:
        seed = config.seed + 1_000 * len(finished)
        codebook = fresh_codebook(config, model, meta, centroids, seed, device)
        optimizer = torch.optim.Adam(codebook.parameters(), lr=cfg.lr)
        position = DataPosition()
        if "codebook" in state:  # this fit was interrupted
            codebook.load_state_dict(with_members(state["codebook"]))
            optimizer.load_state_dict(state["optimizer"])
            position = DataPosition.from_checkpoint(state, path)
        batches = train.endless_batches(config.base.window, cfg.batch_size, seed + 53, position)
        end = (len(finished) + 1) * cfg.steps
        while step < end:
            position, batch = next(batches)
            loss, kept = distillation_loss(
                model, meta, featurizer, codebook, batch, cfg.drop, device
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            progress.update(1)
            progress.set_postfix(fit=len(finished), nll=f"{loss.item():.4f}")
            log.log(step=step, fit=len(finished), loss=round(loss.item(), 5), kept=round(kept, 4))
            if step == end:
                finished.append(codebook.requires_grad_(False).eval())
            if step == end or step % cfg.checkpoint_interval == 0:
                state = {"finished": [book.state_dict() for book in finished], "step": step}
                if step < end:  # the fit in progress
                    state.update(
                        codebook=codebook.state_dict(),
                        optimizer=optimizer.state_dict(),
                        **position.checkpoint_fields(),
                    )
                save_checkpoint(path, state)
    progress.close()
    return CodeBook.averaged(finished)


def cluster_scores(clusters: np.ndarray, subgoals: np.ndarray) -> tuple[float, dict[int, int]]:
    """Purity of ``clusters`` against the true ``subgoals`` (the share of codes in their
    cluster's majority subgoal), and each subgoal's majority cluster."""
    table = np.zeros((clusters.max() + 1, subgoals.max() + 1), dtype=np.int64)
    np.add.at(table, (clusters, subgoals), 1)
    purity = table.max(1).sum() / len(clusters)
    return float(purity), {int(s): int(table[:, s].argmax()) for s in np.unique(subgoals)}


def run_codebook_stage(run: RunDir, config: RunConfig, device: torch.device) -> None:
    cfg = config.codebook
    if not cfg.clusters:
        print("[codebook] codebook.clusters is 0: no code book (rl.policy=latent)")
        return
    model, featurizer, meta = load_frozen_agent(run, config, device, "metacontroller", False)
    codes, subgoals = heldout_switch_codes(model, meta, featurizer, run, config, device)
    centroids = kmeans(codes, cfg.clusters, config.seed + 59).to(device)
    codebook = fit_codebook(run, config, model, meta, featurizer, centroids, device)
    save_checkpoint(run.stage_dir(STAGE) / "codebook.pt", {"codebook": codebook.state_dict()})
    purity, majority = cluster_scores(codebook.nearest(codes).cpu().numpy(), subgoals.cpu().numpy())
    meta.decoder = codebook.decoder
    table = {s: codebook.codes.weight[c][None] for s, c in majority.items() if s != IGNORE}
    _, rates = probe_codes(
        model, featurizer, meta, config, table, load_split(run, "heldout").tasks, device
    )
    summary = {"codebook.purity": purity, "codebook.switch_codes": len(codes)}
    summary.update({f"codebook.{k}": v for k, v in rates.items()})
    run.update_summary(summary)
    print("[codebook] " + ", ".join(f"{k.split('.')[1]} {v}" for k, v in summary.items()))
