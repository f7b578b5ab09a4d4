"""Diagnostic: can the metacontroller's decoder make edits that steer at unseen transitions?

One code per subgoal is learned with the true subgoal labels, as the supervised
controllers are (each token of the training split edited by its subgoal's code, action
NLL, ``controllers.steps`` batches of ``controllers.batch_size`` windows at
``controllers.lr``; no onset weighting), and decoded by either

- ``trained``: the metacontroller's own decoder, frozen; the codes start at the mean code
  it chooses for each subgoal on held-out episodes; or
- ``fresh``: a new decoder of the same shape, trained with the codes.

Then the generalisation probe (the same pairs and episodes as stage ``generalisation``):
the code of subgoal ``b`` held from the end of subgoal ``a``, at seen and unseen
transitions. A fresh decoder that steers at unseen transitions where the trained one
does not says that the metacontroller's training, not the decoder's form, limits the
edits its codes can make, and so what any policy over its codes can reach. Needs a run
whose ``metacontroller`` stage finished::

    python -m agents.internal_rl.labelled_codes --out runs/HierGrid-v0-quick-0 --decoder trained
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from agents.internal_rl.base_model import BaseModel
from agents.internal_rl.config import DEVICES, RunConfig
from agents.internal_rl.controllers import labelled_action_nll
from agents.internal_rl.data import EpisodeDataset, load_split
from agents.internal_rl.generalisation import codes_by_subgoal, probe_codes
from agents.internal_rl.metacontroller import LowRankDecoder
from agents.internal_rl.observations import Featurizer
from agents.internal_rl.pipeline import resolve_device
from agents.internal_rl.rl import load_frozen_agent
from agents.internal_rl.run_dir import RunDir

STAGE = "labelled_codes"
DECODERS = ("trained", "fresh")


def fit_labelled_codes(
    model: BaseModel,
    featurizer: Featurizer,
    decoder: LowRankDecoder,
    codes: nn.Embedding,
    train: EpisodeDataset,
    config: RunConfig,
    steps: int,
    device: torch.device,
) -> list[float]:
    """Train ``codes`` (and ``decoder``, where it requires grad) on the labelled training
    split; returns the loss of each step."""
    cfg = config.controllers
    parameters = [p for module in (codes, decoder) for p in module.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(parameters, lr=cfg.lr)
    losses: list[float] = []

    def edit_by_code(subgoals: torch.Tensor):
        z = codes(subgoals)
        return lambda e: decoder(z, e)

    progress = tqdm(total=steps, desc="labelled codes", unit="step")
    epoch = 0
    while len(losses) < steps:
        for batch in train.batches(config.base.window, cfg.batch_size, config.seed + 43, epoch):
            loss = labelled_action_nll(model, featurizer, batch, edit_by_code, device)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            progress.update(1)
            progress.set_postfix(nll=f"{losses[-1]:.3f}")
            if len(losses) == steps:
                break
        epoch += 1
    progress.close()
    return losses


def run_labelled_codes(
    out: Path, decoder_kind: str, steps: int | None, device: torch.device
) -> dict:
    """Fit labelled codes through the ``decoder_kind`` decoder of run ``out`` and probe
    them; results in ``out/labelled_codes/<decoder_kind>.json``."""
    if decoder_kind not in DECODERS:
        raise ValueError(f"decoder must be one of {DECODERS}, got {decoder_kind!r}.")
    run = RunDir(out)
    config = run.read_config()
    model, featurizer, meta = load_frozen_agent(run, config, device, "metacontroller", False)
    heldout, train = load_split(run, "heldout"), load_split(run, "train")
    num_subgoals = int(train.subgoal.max()) + 1
    torch.manual_seed(config.seed + 47)
    codes = nn.Embedding(num_subgoals, meta.latent_size).to(device)
    if decoder_kind == "trained":
        chosen = codes_by_subgoal(model, meta, featurizer, heldout, config, device)
        with torch.no_grad():
            for subgoal, z in chosen.items():
                codes.weight[subgoal] = z.mean(0)
    else:
        mc = config.metacontroller
        meta.decoder = LowRankDecoder(
            mc.latent_size, model.config.width, mc.rank, mc.decoder_hidden, meta.decoder.whiten
        ).to(device)
    losses = fit_labelled_codes(
        model,
        featurizer,
        meta.decoder.requires_grad_(decoder_kind == "fresh"),
        codes,
        train,
        config,
        steps or config.controllers.steps,
        device,
    )
    table = {k: codes.weight[k : k + 1].detach() for k in range(num_subgoals)}
    results, rates = probe_codes(
        model, featurizer, meta, config, table, heldout.tasks, device, ("with_code",)
    )
    result = {
        "decoder": decoder_kind,
        "steps": len(losses),
        "final_loss": float(np.mean(losses[-20:])),
        **rates,
        "pairs_detail": results,
        "codes": codes.weight.detach().cpu().tolist(),
    }
    directory = run.stage_dir(STAGE)
    (directory / f"{decoder_kind}.json").write_text(json.dumps(result))
    return result


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m agents.internal_rl.labelled_codes", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--out", type=Path, required=True, help="a run directory")
    parser.add_argument("--decoder", choices=DECODERS, default="trained", help="(default: trained)")
    parser.add_argument("--steps", type=int, help="training batches (default: controllers.steps)")
    parser.add_argument("--device", default="auto", choices=DEVICES, help="(default: auto)")
    args = parser.parse_args(argv)
    result = run_labelled_codes(args.out, args.decoder, args.steps, resolve_device(args.device))
    shown = {k: v for k, v in result.items() if k not in ("pairs_detail", "codes")}
    print("[labelled_codes] " + ", ".join(f"{k} {v}" for k, v in shown.items()))


if __name__ == "__main__":
    main()
