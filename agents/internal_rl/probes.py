"""Stage ``probe``: linear probes from every layer's residual stream to the current subgoal.

The base model is frozen; residual streams are collected on training windows and a
multinomial logistic regression per layer is fit to the ground-truth subgoal labels
(never seen by the base model), then scored on held-out windows. The paper sees the
subgoal become linearly decodable around mid-depth.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from tqdm import tqdm

from agents.internal_rl.base_model import BaseModel
from agents.internal_rl.base_training import build_model, load_base_weights, tensors
from agents.internal_rl.config import RunConfig
from agents.internal_rl.data import IGNORE, EpisodeDataset, load_split
from agents.internal_rl.observations import Featurizer, make_featurizer
from agents.internal_rl.run_dir import RunDir, load_checkpoint


def load_base_model(
    run: RunDir, config: RunConfig, device: torch.device
) -> tuple[BaseModel, Featurizer]:
    """The trained base model of ``run``, frozen, and its featurizer."""
    featurizer = make_featurizer(config.env_id)
    model = build_model(featurizer, config.base).to(device)
    state = load_checkpoint(run.stage_dir("base") / "model.pt", map_location=device)
    if state is None:
        raise FileNotFoundError(
            f"{run.stage_dir('base') / 'model.pt'} is missing: run the base stage first."
        )
    load_base_weights(model, state, run.stage_dir("base") / "model.pt")
    configure_for_later_stages(model, config)
    model.requires_grad_(False)
    return model.eval(), featurizer


def configure_for_later_stages(model: BaseModel, config: RunConfig) -> BaseModel:
    """The run's settings of a base model in the stages after ``base``: the layer that
    controllers edit and how far back it attends."""
    model.controlled_layer = config.controlled_layer
    model.attention_span = config.base.attention_span
    return model


@torch.no_grad()
def residuals_and_labels(
    model: BaseModel,
    featurizer: Featurizer,
    data: EpisodeDataset,
    window: int,
    batch_size: int,
    max_tokens: int,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(L + 1, N, width)`` residual streams and ``(N,)`` subgoal labels of up to ``max_tokens`` tokens."""
    streams, labels, count = [], [], 0
    for batch in data.batches(window, batch_size, seed=1):
        t = tensors(featurizer, batch, device)
        out = model(t["features"], t["segments"])
        mask = torch.as_tensor(batch.subgoal != IGNORE, device=device)
        streams.append(torch.stack([r[mask] for r in out.residuals]))
        labels.append(torch.as_tensor(batch.subgoal, device=device)[mask])
        count += int(mask.sum())
        if count >= max_tokens:
            break
    return torch.cat(streams, dim=1), torch.cat(labels)


def fit_probe(
    x: torch.Tensor, y: torch.Tensor, num_classes: int, steps: int, lr: float, weight_decay: float
) -> torch.nn.Linear:
    """Logistic regression on standardised features (full-batch Adam)."""
    probe = torch.nn.Linear(x.shape[1], num_classes).to(x.device)
    optimizer = torch.optim.Adam(probe.parameters(), lr=lr, weight_decay=weight_decay)
    for _ in range(steps):
        loss = F.cross_entropy(probe(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return probe


def run_probe_stage(run: RunDir, config: RunConfig, device: torch.device) -> None:
    cfg, base = config.probe, config.base
    model, featurizer = load_base_model(run, config, device)
    max_tokens = cfg.batch_size * base.window * 4
    train_x, train_y = residuals_and_labels(
        model, featurizer, load_split(run, "train"), base.window, cfg.batch_size, max_tokens, device
    )
    test_x, test_y = residuals_and_labels(
        model,
        featurizer,
        load_split(run, "heldout"),
        base.window,
        cfg.batch_size,
        max_tokens,
        device,
    )
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    log = run.metrics("probe")
    accuracy = []
    for layer in tqdm(range(len(train_x)), desc="probes", unit="layer"):
        mean, std = train_x[layer].mean(0), train_x[layer].std(0) + 1e-6
        probe = fit_probe(
            (train_x[layer] - mean) / std, train_y, num_classes, cfg.steps, cfg.lr, cfg.weight_decay
        )
        with torch.no_grad():
            predicted = probe((test_x[layer] - mean) / std).argmax(-1)
        accuracy.append(float((predicted == test_y).float().mean()))
        log.log(layer=layer, heldout_accuracy=accuracy[-1])
    chance = float(torch.bincount(test_y).max() / len(test_y))
    run.update_summary(
        {
            "probe.accuracy_by_layer": [round(a, 4) for a in accuracy],
            "probe.majority_baseline": round(chance, 4),
        }
    )
    print("[probe] held-out subgoal accuracy by layer: " + ", ".join(f"{a:.3f}" for a in accuracy))
    plot_probes(accuracy, chance, run.plots / "probe.png")


def plot_probes(accuracy: list[float], chance: float, path) -> None:
    figure = Figure(figsize=(5, 3.5))
    axis = figure.subplots()
    axis.plot(range(len(accuracy)), accuracy, "o-", label="linear probe (held-out)")
    axis.axhline(chance, color="grey", linestyle=":", label="majority class")
    axis.set_xlabel("layer (0: encoder output, L: final stream)")
    axis.set_ylabel("subgoal accuracy")
    axis.set_ylim(0, 1)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path)
