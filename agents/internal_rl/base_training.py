"""Stage ``base``: train the causal base model on the expert data, then measure it.

Loss per step: ``-log p(a_t | o_1:t) - lambda_obs * log p(o_t+1 | o_1:t)`` on packed
windows, AdamW with a linear warm-up and a cosine decay. Checkpoints every
``checkpoint_interval`` steps (resumable). Measures on the held-out split: action
accuracy and NLL; and ``valid_rate``: the share of the model's own rollouts (sampled,
batched, incremental) whose visited colours complete some pretraining task within T
without touching a colour that no pretraining task allows next.
"""

from __future__ import annotations

import math
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from matplotlib.figure import Figure
from tqdm import tqdm

from agents.internal_rl.base_model import BaseModel, ModelConfig
from agents.internal_rl.config import BaseModelConfig, RunConfig
from agents.internal_rl.data import (
    Batch,
    DataPosition,
    EpisodeDataset,
    load_split,
    prefetched,
    trailing_axes,
)
from agents.internal_rl.observations import Featurizer, make_featurizer
from agents.internal_rl.rollouts import rollout
from agents.internal_rl.run_dir import RunDir, RunDirError, load_checkpoint, save_checkpoint


def build_model(featurizer: Featurizer, cfg: BaseModelConfig) -> BaseModel:
    return BaseModel(
        ModelConfig(
            num_features=featurizer.num_features,
            num_actions=featurizer.num_actions,
            num_next=featurizer.num_next,
            continuous=featurizer.continuous,
            num_layers=cfg.num_layers,
            width=cfg.width,
            num_heads=cfg.num_heads,
            mlp_width=cfg.mlp_width,
            position_buckets=cfg.position_buckets,
            backbone=cfg.backbone,
        )
    )


def load_base_weights(model: BaseModel, state: dict, path: Path) -> None:
    """``state["model"]`` into ``model``; weights of other input features stop the command
    with the file's path and the fix (the model's message), not a traceback."""
    try:
        model.load_state_dict(state["model"])
    except ValueError as error:
        raise RunDirError(f"{path}: {error}") from None


def tensors(featurizer: Featurizer, batch: Batch, device: torch.device) -> dict[str, torch.Tensor]:
    """A batch on ``device``; actions and next targets are zero where ``has_action`` is False."""
    features, next_target = featurizer.batch(batch)
    has_action = batch.has_action
    actions = np.where(trailing_axes(has_action, batch.actions.ndim), batch.actions, 0)
    next_target = np.where(trailing_axes(has_action, next_target.ndim), next_target, 0)
    return {
        "features": torch.as_tensor(features, device=device),
        "segments": torch.as_tensor(batch.episode, device=device),
        "actions": torch.as_tensor(actions, device=device),
        "has_action": torch.as_tensor(has_action, device=device),
        "next": torch.as_tensor(next_target, device=device),
    }


def action_score(model: BaseModel, params: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Per token: 1 if the most likely action is the expert's (discrete), else the squared
    error of the mean torques (continuous)."""
    best = model.sample_action(params.flatten(0, -2), None, greedy=True)
    best = best.view(*params.shape[:-1], *best.shape[1:])
    if model.config.continuous:
        return (best - actions).square().mean(-1)
    return (best == actions).float()


SCORE_LABELS = {"accuracy": "action accuracy", "mse": "squared error of the mean torques"}


def score_name(model: BaseModel) -> str:
    """What :func:`action_score` measures (a key of :data:`SCORE_LABELS`)."""
    return "mse" if model.config.continuous else "accuracy"


def losses(
    model: BaseModel, t: dict[str, torch.Tensor], lambda_obs: float
) -> dict[str, torch.Tensor]:
    out = model(t["features"], t["segments"])
    mask = t["has_action"]
    action_nll = -model.action_distribution(out.action[mask]).log_prob(t["actions"][mask]).mean()
    obs_nll = model.next_nll(out.next, t["next"])[mask].mean()
    return {
        "loss": action_nll + lambda_obs * obs_nll,
        "action_nll": action_nll,
        "obs_nll": obs_nll,
        score_name(model): action_score(model, out.action, t["actions"])[mask].mean(),
    }


def learning_rate(cfg: BaseModelConfig, step: int) -> float:
    warmup = max(1, cfg.steps // 50)
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, cfg.steps - warmup)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


@torch.no_grad()
def evaluate(
    model: BaseModel,
    featurizer: Featurizer,
    data: EpisodeDataset,
    cfg: BaseModelConfig,
    device: torch.device,
) -> dict[str, float]:
    """Action accuracy (or squared error of the mean torques) and NLL over every step of ``data``."""
    model.eval()
    score = nll = count = 0.0
    for batch in data.batches(cfg.window, cfg.batch_size, seed=0):
        t = tensors(featurizer, batch, device)
        out = model(t["features"], t["segments"])
        mask = t["has_action"]
        params, actions = out.action[mask], t["actions"][mask]
        score += action_score(model, params, actions).sum().item()
        nll -= model.action_distribution(params).log_prob(actions).sum().item()
        count += mask.sum().item()
    model.train()
    return {f"action_{score_name(model)}": score / count, "action_nll": nll / count}


def validity(visited: tuple[int, ...], tasks: tuple[tuple[int, ...], ...]) -> str:
    """``"valid"``: the visited colours complete some task; ``"open"``: they are a proper
    prefix of one; ``"invalid"``: a colour that no task allows next was visited."""
    if visited in tasks:
        return "valid"
    if any(task[: len(visited)] == visited for task in tasks):
        return "open"
    return "invalid"


def judge(visited: tuple[int, ...], tasks: tuple[tuple[int, ...], ...]) -> tuple[str, int]:
    """The :func:`validity` of a rollout's visited colours, decided at the first colour
    that settles it (``"open"`` if none does), and how many colours that took."""
    for count in range(1, len(visited) + 1):
        verdict = validity(visited[:count], tasks)
        if verdict != "open":
            return verdict, count
    return "open", len(visited)


@torch.no_grad()
def valid_rate(
    model: BaseModel,
    featurizer: Featurizer,
    env_id: str,
    episodes: int,
    seed: int,
    device: torch.device,
) -> dict[str, float]:
    """Share of sampled rollouts whose visited colours complete some pretraining task.

    The env runs in free play (``end_on_wrong_colour=False``): the task it drew is
    hidden from the model, so only the visited sequence is judged (ants still stop on a
    wall or a fall).
    """
    env = gym.make(env_id)
    tasks = env.unwrapped.config.pretraining
    env.close()
    was_training = model.training
    model.eval()
    trajectories = rollout(
        model,
        featurizer,
        env_id,
        episodes,
        seed,
        device,
        task="pretrain",
        end_on_wrong_colour=False,
    )
    model.train(was_training)
    verdicts = [judge(tuple(int(c) for c in row[row >= 0]), tasks) for row in trajectories.visited]
    return {
        "valid_rate": float(np.mean([verdict == "valid" for verdict, _ in verdicts])),
        "mean_colours": float(np.mean([count for _, count in verdicts])),
    }


def run_base_stage(run: RunDir, config: RunConfig, device: torch.device) -> None:
    cfg = config.base
    train, heldout = load_split(run, "train"), load_split(run, "heldout")
    featurizer = make_featurizer(config.env_id)
    torch.manual_seed(config.seed)
    model = build_model(featurizer, cfg).to(device)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.95)
    )
    stage_dir = run.stage_dir("base")
    step, position = 0, DataPosition()
    path = stage_dir / "checkpoint.pt"
    state = load_checkpoint(path, map_location=device)
    if state is not None:
        load_base_weights(model, state, path)
        optimizer.load_state_dict(state["optimizer"])
        step, position = state["step"], DataPosition.from_checkpoint(state, path)
        print(f"[base] resuming at step {step}")
    log = run.metrics("base", resume_step=step)
    progress = tqdm(total=cfg.steps, initial=step, desc="base model", unit="step")
    # batches prepared as CPU tensors ahead while the model trains
    batches = prefetched(
        (position, tensors(featurizer, batch, torch.device("cpu")))
        for position, batch in train.endless_batches(
            cfg.window, cfg.batch_size, config.seed, position
        )
    )
    while step < cfg.steps:
        position, batch = next(batches)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(cfg, step)
        batch = {key: value.to(device, non_blocking=True) for key, value in batch.items()}
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            result = losses(model, batch, cfg.lambda_obs)
        optimizer.zero_grad(set_to_none=True)
        result["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        step += 1
        progress.update(1)
        score = score_name(model)
        progress.set_postfix(
            {score: f"{result[score].item():.3f}", "nll": f"{result['action_nll'].item():.3f}"}
        )
        record = {k: round(v.item(), 5) for k, v in result.items()}
        if step % cfg.eval_interval == 0 or step == cfg.steps:
            record |= {
                f"heldout_{k}": v
                for k, v in evaluate(model, featurizer, heldout, cfg, device).items()
            }
        log.log(step=step, epoch=position.epoch, lr=learning_rate(cfg, step - 1), **record)
        if step % cfg.checkpoint_interval == 0 or step == cfg.steps:
            save_checkpoint(
                path,
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "step": step,
                    **position.checkpoint_fields(),
                },
            )
    progress.close()
    batches.close()  # stops the thread preparing the next batches
    save_checkpoint(stage_dir / "model.pt", {"model": model.state_dict()})
    scores = evaluate(model, featurizer, heldout, cfg, device)
    scores |= valid_rate(
        model, featurizer, config.env_id, cfg.rollout_episodes, config.seed + 1, device
    )
    run.update_summary({f"base_model.{k}": v for k, v in scores.items()})
    print("[base] " + ", ".join(f"{k} {v:.3f}" for k, v in scores.items()))
    plot_training(run.read_metrics("base"), run.plots / "base.png")


def plot_training(records: list[dict], path) -> None:
    figure = Figure(figsize=(7, 3.5))
    axis = figure.subplots()
    steps = [r["step"] for r in records]
    score = next(name for name in SCORE_LABELS if name in records[0])
    axis.plot(steps, [r[score] for r in records], alpha=0.4, label="train batch")
    evals = [r for r in records if f"heldout_action_{score}" in r]
    axis.plot(
        [r["step"] for r in evals],
        [r[f"heldout_action_{score}"] for r in evals],
        "o-",
        label="held-out",
    )
    axis.set_xlabel("step")
    axis.set_ylabel(SCORE_LABELS[score])
    axis.legend()
    figure.tight_layout()
    figure.savefig(path)
