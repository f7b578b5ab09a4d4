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

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from tqdm import tqdm

from agents.internal_rl.base_model import BaseModel, ModelConfig
from agents.internal_rl.config import BaseModelConfig, RunConfig
from agents.internal_rl.data import IGNORE, Batch, EpisodeDataset, load_split
from agents.internal_rl.features import decode_layouts, distance_fields, step_features
from agents.internal_rl.run_dir import RunDir, load_checkpoint, save_checkpoint
from hier_envs.grid.layout import GridConfig


class Featurizer:
    """Observations -> model features, and the agent's cell (the next-observation target)."""

    def __init__(self, grid: GridConfig) -> None:
        self.grid = grid
        self.geometry = grid.geometry
        self.num_features = 6 * grid.num_colors + self.geometry.num_cells

    def agent_cells(self, obs: np.ndarray) -> np.ndarray:
        """``(...)`` cell of the agent in observations ``(..., D)``."""
        per_cell = obs.reshape(*obs.shape[:-1], self.geometry.num_cells, self.grid.num_features)
        return per_cell[..., -1].argmax(axis=-1)

    def layouts(self, first_obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Colour cells ``(E, O)`` and distance fields ``(E, O, cells)`` of episodes' first observations."""
        g = self.grid
        walls, colours = decode_layouts(first_obs, g.size, g.num_walls, g.num_colors)
        return colours, distance_fields(walls, colours, self.geometry)

    def batch(self, batch: Batch) -> tuple[np.ndarray, np.ndarray]:
        """Features ``(B, L, F)`` and next cells ``(B, L)`` (IGNORE where there is no next step)."""
        cells = self.agent_cells(batch.obs)
        valid = batch.episode != IGNORE
        _, first, inverse = np.unique(batch.episode[valid], return_index=True, return_inverse=True)
        colours, fields = self.layouts(batch.obs[valid][first])
        features = np.zeros((*batch.episode.shape, self.num_features), dtype=np.float32)
        features[valid] = step_features(
            fields[inverse], cells[valid], colours[inverse], self.geometry
        )
        next_cell = np.full(batch.episode.shape, IGNORE, dtype=np.int64)
        has_next = batch.actions != IGNORE
        next_cell[:, :-1][has_next[:, :-1]] = cells[:, 1:][has_next[:, :-1]]
        return features, next_cell


def build_model(featurizer: Featurizer, cfg: BaseModelConfig, num_actions: int = 4) -> BaseModel:
    return BaseModel(
        ModelConfig(
            num_features=featurizer.num_features,
            num_actions=num_actions,
            num_cells=featurizer.geometry.num_cells,
            num_layers=cfg.num_layers,
            width=cfg.width,
            num_heads=cfg.num_heads,
            mlp_width=cfg.mlp_width,
            position_buckets=cfg.position_buckets,
            backbone=cfg.backbone,
        )
    )


def tensors(featurizer: Featurizer, batch: Batch, device: torch.device) -> dict[str, torch.Tensor]:
    features, next_cell = featurizer.batch(batch)
    return {
        "features": torch.as_tensor(features, device=device),
        "segments": torch.as_tensor(batch.episode, device=device),
        "actions": torch.as_tensor(batch.actions, device=device),
        "next_cell": torch.as_tensor(next_cell, device=device),
    }


def losses(
    model: BaseModel, t: dict[str, torch.Tensor], lambda_obs: float
) -> dict[str, torch.Tensor]:
    out = model(t["features"], t["segments"])
    action_nll = F.cross_entropy(
        out.action_logits.flatten(0, 1), t["actions"].flatten(), ignore_index=IGNORE
    )
    obs_nll = F.cross_entropy(
        out.next_cell_logits.flatten(0, 1), t["next_cell"].flatten(), ignore_index=IGNORE
    )
    mask = t["actions"] != IGNORE
    accuracy = (out.action_logits.argmax(-1) == t["actions"])[mask].float().mean()
    return {
        "loss": action_nll + lambda_obs * obs_nll,
        "action_nll": action_nll,
        "obs_nll": obs_nll,
        "accuracy": accuracy,
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
    """Action accuracy and NLL over every step of ``data``."""
    model.eval()
    correct = nll = count = 0.0
    for batch in data.batches(cfg.window, cfg.batch_size, seed=0):
        t = tensors(featurizer, batch, device)
        out = model(t["features"], t["segments"])
        mask = t["actions"] != IGNORE
        logits, actions = out.action_logits[mask], t["actions"][mask]
        correct += (logits.argmax(-1) == actions).sum().item()
        nll += F.cross_entropy(logits, actions, reduction="sum").item()
        count += mask.sum().item()
    model.train()
    return {"action_accuracy": correct / count, "action_nll": nll / count}


def validity(visited: tuple[int, ...], tasks: tuple[tuple[int, ...], ...]) -> str:
    """``"valid"``: the visited colours complete some task; ``"open"``: they are a proper
    prefix of one; ``"invalid"``: a colour that no task allows next was visited."""
    if visited in tasks:
        return "valid"
    if any(task[: len(visited)] == visited for task in tasks):
        return "open"
    return "invalid"


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
    hidden from the model, so only the visited sequence is judged.
    """
    envs = gym.make_vec(
        env_id,
        num_envs=episodes,
        vectorization_mode="vector_entry_point",
        task="pretrain",
        end_on_wrong_colour=False,
    )
    tasks = envs.unwrapped.config.tasks
    obs, _ = envs.reset(seed=seed)
    colours, fields = featurizer.layouts(obs)
    colour_of_cell = np.full((episodes, featurizer.geometry.num_cells), -1)
    np.put_along_axis(colour_of_cell, colours, np.arange(colours.shape[1])[None], axis=1)
    visited: list[tuple[int, ...]] = [() for _ in range(episodes)]
    alive = np.ones(episodes, dtype=bool)
    generator = torch.Generator(device=device).manual_seed(seed)
    model.eval()
    cache = model.new_cache()
    cell = featurizer.agent_cells(obs)
    for step in range(envs.unwrapped.config.max_steps):
        features = step_features(fields, cell, colours, featurizer.geometry)
        out = model.step(torch.as_tensor(features, device=device), step, cache)
        actions = (
            torch.multinomial(out.action_logits.softmax(-1), 1, generator=generator)[:, 0]
            .cpu()
            .numpy()
        )
        obs, _, terminated, truncated, _ = envs.step(actions)
        new_cell = featurizer.agent_cells(obs)
        for i in np.flatnonzero(
            alive & (new_cell != cell) & (colour_of_cell[np.arange(episodes), new_cell] >= 0)
        ):
            visited[i] = visited[i] + (int(colour_of_cell[i, new_cell[i]]),)
        alive &= ~(terminated | truncated)
        alive &= np.array([validity(v, tasks) == "open" for v in visited])
        cell = new_cell
        if not alive.any():
            break
    model.train()
    envs.close()
    valid = np.array([validity(v, tasks) == "valid" for v in visited])
    return {
        "valid_rate": float(valid.mean()),
        "mean_colours": float(np.mean([len(v) for v in visited])),
    }


def run_base_stage(run: RunDir, config: RunConfig, device: torch.device) -> None:
    cfg = config.base
    train, heldout = load_split(run, "train"), load_split(run, "heldout")
    grid = gym.make(config.env_id).unwrapped.config
    featurizer = Featurizer(grid)
    torch.manual_seed(config.seed)
    model = build_model(featurizer, cfg).to(device)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.95)
    )
    stage_dir = run.stage_dir("base")
    step = epoch = batch_in_epoch = 0
    state = load_checkpoint(stage_dir / "checkpoint.pt", map_location=device)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, epoch, batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
        print(f"[base] resuming at step {step}")
    log = run.metrics("base", resume_step=step)
    progress = tqdm(total=cfg.steps, initial=step, desc="base model", unit="step")
    batches = train.batches(
        cfg.window, cfg.batch_size, seed=config.seed, epoch=epoch, start=batch_in_epoch
    )
    while step < cfg.steps:
        batch = next(batches, None)
        if batch is None:
            epoch, batch_in_epoch = epoch + 1, 0
            batches = train.batches(cfg.window, cfg.batch_size, seed=config.seed, epoch=epoch)
            continue
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(cfg, step)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            result = losses(model, tensors(featurizer, batch, device), cfg.lambda_obs)
        optimizer.zero_grad(set_to_none=True)
        result["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        step, batch_in_epoch = step + 1, batch_in_epoch + 1
        progress.update(1)
        progress.set_postfix(
            acc=f"{result['accuracy'].item():.3f}", nll=f"{result['action_nll'].item():.3f}"
        )
        record = {k: round(v.item(), 5) for k, v in result.items()}
        if step % cfg.eval_interval == 0 or step == cfg.steps:
            record |= {
                f"heldout_{k}": v
                for k, v in evaluate(model, featurizer, heldout, cfg, device).items()
            }
        log.log(step=step, epoch=epoch, lr=learning_rate(cfg, step - 1), **record)
        if step % cfg.checkpoint_interval == 0 or step == cfg.steps:
            save_checkpoint(
                stage_dir / "checkpoint.pt",
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "step": step,
                    "epoch": epoch,
                    "batch_in_epoch": batch_in_epoch,
                },
            )
    progress.close()
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
    axis.plot(steps, [r["accuracy"] for r in records], alpha=0.4, label="train batch")
    evals = [r for r in records if "heldout_action_accuracy" in r]
    axis.plot(
        [r["step"] for r in evals],
        [r["heldout_action_accuracy"] for r in evals],
        "o-",
        label="held-out",
    )
    axis.set_xlabel("step")
    axis.set_ylabel("action accuracy")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path)
