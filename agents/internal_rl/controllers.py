"""Stage ``controllers``: one low-rank residual controller per ground-truth subgoal.

Controller ``k`` writes ``e <- e + U_k e`` with ``U_k = A_k B_k^T`` (rank ``rank``) into
the residual stream at the controlled layer of the frozen base model (L/2, the paper's,
unless ``controlled_layer`` says otherwise), and is trained to imitate the
expert on the steps labelled with subgoal ``k``. Composed on the post-training task
(controller ``k`` while the env reports subgoal ``k``, switching when it changes), they
test whether the representation is steerable: the paper reports about 0.5-0.7 success.

With ``whiten``, ``U_k = A_k B_k^T S``, where ``S = E[e e^T]^(-1/2)`` (on the directions
the stream uses) is measured once on the frozen model: the same family of linear maps,
but gradient steps see every direction at unit scale. Where the stream's scales differ
widely (the ant's encoder output), plain ``A B^T`` barely moves in the steps a budget allows.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from agents.internal_rl.base_model import BaseModel
from agents.internal_rl.base_training import tensors
from agents.internal_rl.config import RunConfig
from agents.internal_rl.data import Batch, DataPosition, load_split
from agents.internal_rl.observations import Featurizer
from agents.internal_rl.probes import load_base_model, residuals_and_labels
from agents.internal_rl.rollouts import rollout
from agents.internal_rl.run_dir import RunDir, load_checkpoint, save_checkpoint


class LowRankControllers(nn.Module):
    """``num`` controllers ``U_k = A_k B_k^T`` (times ``whiten`` when given); ``A`` starts at
    zero, so each starts as no edit."""

    def __init__(self, num: int, width: int, rank: int, whiten: torch.Tensor | None = None) -> None:
        super().__init__()
        self.A = nn.Parameter(torch.zeros(num, width, rank))
        self.B = nn.Parameter(torch.randn(num, width, rank) / width**0.5)
        self.register_buffer("whiten", whiten)

    def edit(self, which: torch.Tensor):
        """The controller hook: residuals ``(..., width)`` get controller ``which[...]``'s edit."""

        def controller(e: torch.Tensor) -> torch.Tensor:
            if self.whiten is not None:
                e = e @ self.whiten  # S is symmetric
            z = torch.einsum("...w,...wr->...r", e, self.B[which])
            return torch.einsum("...r,...wr->...w", z, self.A[which])

        return controller


def whitening(residuals: torch.Tensor, tolerance: float = 1e-5) -> torch.Tensor:
    """``S = E[e e^T]^(-1/2)`` of ``residuals (N, width)``, zero on the directions whose
    second moment is below ``tolerance`` times the largest (the stream does not use them)."""
    moment = residuals.double().T @ residuals.double() / len(residuals)
    values, vectors = torch.linalg.eigh(moment)
    used = values > tolerance * values.max()
    scale = torch.where(used, values.clamp_min(torch.finfo(values.dtype).tiny).rsqrt(), 0.0)
    return ((vectors * scale) @ vectors.T).to(residuals.dtype)


def stream_whitening(
    model: BaseModel,
    featurizer: Featurizer,
    run: RunDir,
    config: RunConfig,
    device: torch.device,
    tokens: int = 20_000,
) -> torch.Tensor:
    """:func:`whitening` of the frozen model's stream at its controlled layer, measured on
    ``tokens`` training tokens."""
    streams, _ = residuals_and_labels(
        model, featurizer, load_split(run, "train"), config.base.window, 8, tokens, device
    )
    return whitening(streams[model.controlled_layer])


def onset_weights(batch, steps: int, extra: float) -> torch.Tensor:
    """``(B, L)`` loss weights: ``1 + extra`` on the first ``steps`` steps of each subgoal."""
    index = batch.subgoal_index
    change = np.ones(index.shape, dtype=bool)
    change[:, 1:] = (index[:, 1:] != index[:, :-1]) | (
        batch.episode[:, 1:] != batch.episode[:, :-1]
    )
    position = np.arange(index.shape[1])[None, :]
    since_onset = position - np.maximum.accumulate(np.where(change, position, 0), axis=1)
    return torch.as_tensor(1.0 + extra * (since_onset < steps), dtype=torch.float32)


def labelled_action_nll(
    model: BaseModel,
    featurizer: Featurizer,
    batch: Batch,
    edit_for: Callable[[torch.Tensor], Callable[[torch.Tensor], torch.Tensor]],
    device: torch.device,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """The expert actions' NLL on a labelled batch, each token's stream edited by
    ``edit_for(subgoals)`` (its own subgoal's edit), averaged with ``weight`` per token."""
    t = tensors(featurizer, batch, device)
    subgoals = torch.as_tensor(np.maximum(batch.subgoal, 0), device=device)
    out = model(t["features"], t["segments"], controller=edit_for(subgoals))
    nll = -model.action_distribution(out.action).log_prob(t["actions"])
    weight = t["has_action"].float() if weight is None else weight.to(device) * t["has_action"]
    return (nll * weight).sum() / weight.sum()


def train_controllers(
    model: BaseModel, featurizer: Featurizer, run: RunDir, config: RunConfig, device: torch.device
) -> LowRankControllers:
    """Fit every controller at once: each token uses the controller of its own subgoal."""
    cfg, base = config.controllers, config.base
    stage_dir = run.stage_dir("controllers")
    train = load_split(run, "train")
    num_subgoals = int(train.subgoal.max()) + 1
    whiten = stream_whitening(model, featurizer, run, config, device) if cfg.whiten else None
    controllers = LowRankControllers(num_subgoals, base.width, cfg.rank, whiten).to(device)
    optimizer = torch.optim.Adam(controllers.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    step, position = 0, DataPosition()
    path = stage_dir / "checkpoint.pt"
    state = load_checkpoint(path, map_location=device)
    if state is not None:
        controllers.load_state_dict(state["controllers"])
        optimizer.load_state_dict(state["optimizer"])
        step, position = state["step"], DataPosition.from_checkpoint(state, path)
    log = run.metrics("controllers", resume_step=step)
    batches = train.endless_batches(base.window, cfg.batch_size, config.seed + 7, position)
    progress = tqdm(total=cfg.steps, initial=step, desc="controllers", unit="step")
    while step < cfg.steps:
        position, batch = next(batches)
        weight = onset_weights(batch, cfg.onset_steps, cfg.onset_weight)
        loss = labelled_action_nll(model, featurizer, batch, controllers.edit, device, weight)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        step += 1
        progress.update(1)
        progress.set_postfix(nll=f"{loss.item():.3f}")
        log.log(step=step, loss=round(loss.item(), 5))
        if step % cfg.checkpoint_interval == 0 or step == cfg.steps:
            save_checkpoint(
                path,
                {
                    "controllers": controllers.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "step": step,
                    **position.checkpoint_fields(),
                },
            )
    progress.close()
    return controllers


def composed_success(
    model: BaseModel,
    featurizer: Featurizer,
    controllers: LowRankControllers | None,
    env_id: str,
    episodes: int,
    seed: int,
    device: torch.device,
    greedy: bool = False,
) -> float:
    """Success on the post-training task, with controller ``k`` while the env's subgoal is ``k``
    (or the plain base model when ``controllers`` is None); first episode of each env.
    Actions are sampled from the model, or its most likely action when ``greedy``."""

    def controller_for(step: int, info: dict):
        if controllers is None:
            return None
        return controllers.edit(torch.as_tensor(info["subgoal"], device=device)[:, None])

    trajectories = rollout(
        model, featurizer, env_id, episodes, seed, device, controller_for, greedy=greedy
    )
    return trajectories.success.mean().item()


def load_controllers(run: RunDir, device: torch.device) -> LowRankControllers:
    """The controllers saved by stage ``controllers``, frozen (clear error when missing)."""
    path = run.stage_dir("controllers") / "controllers.pt"
    state = load_checkpoint(path, map_location=device)
    if state is None:
        raise FileNotFoundError(f"{path} is missing: run the controllers stage first.")
    weights = state["controllers"]
    controllers = LowRankControllers(*weights["A"].shape, weights.get("whiten")).to(device)
    controllers.load_state_dict(weights)
    return controllers.requires_grad_(False)


def run_controllers_stage(run: RunDir, config: RunConfig, device: torch.device) -> None:
    model, featurizer = load_base_model(run, config, device)
    controllers = train_controllers(model, featurizer, run, config, device)
    save_checkpoint(
        run.stage_dir("controllers") / "controllers.pt", {"controllers": controllers.state_dict()}
    )
    cfg = config.controllers
    scores = {}
    for name, greedy in (("", False), ("_greedy", True)):
        for label, composed in (
            ("post_success_rate", controllers),
            ("base_only_post_success_rate", None),
        ):
            scores[f"controllers.{label}{name}"] = composed_success(
                model,
                featurizer,
                composed,
                config.env_id,
                cfg.eval_episodes,
                config.seed + 2,
                device,
                greedy,
            )
    run.update_summary(scores)
    print(
        "[controllers] post-training success: "
        + ", ".join(f"{k} {v:.3f}" for k, v in scores.items())
    )
