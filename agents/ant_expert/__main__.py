"""Train the low level of the HierAnt-v0 expert: a walker that follows a commanded direction.

    python -m agents.ant_expert --out runs/ant_expert --steps 3000000 --export assets/ant_walker.npz

Re-running with the same ``--out`` resumes from the last checkpoint (at most one
checkpoint interval of work is lost). Metrics go to ``<out>/metrics.jsonl``; the
trained walker is exported as numpy weights (``--export``), which
``hier_envs.experts.make_expert`` loads for HierAnt-v0 with the grid-level planner.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from agents.ant_expert.ppo import ActorCritic, PPOConfig, RunningMeanStd, advantages, ppo_loss
from agents.ant_expert.walker_envs import WalkerEnvs, WalkerRewards
from hier_envs.ant.walker import NUM_FEATURES, canonicalise, torques_to_ctrl


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("runs/ant_expert"), help="run directory")
    parser.add_argument("--steps", type=int, default=3_000_000, help="environment steps in total")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--checkpoint-every", type=int, default=20, help="updates between checkpoints"
    )
    parser.add_argument(
        "--export", type=Path, default=None, help="write the walker's numpy weights here"
    )
    parser.add_argument(
        "--min-height",
        type=float,
        default=0.3,
        help="end training episodes when the torso drops below this (m): an ant on its back rests at 0.27",
    )
    args = parser.parse_args()
    if args.steps <= 0 or args.checkpoint_every <= 0:
        parser.error("--steps and --checkpoint-every must be positive")
    return args


def export_walker(model: ActorCritic, obs_rms: RunningMeanStd, path: Path) -> None:
    """Save the actor as the arrays that ``hier_envs.ant.walker.WalkerPolicy`` loads."""
    linears = [m for m in model.actor if isinstance(m, torch.nn.Linear)]
    arrays = {f"w{i}": m.weight.detach().numpy().T for i, m in enumerate(linears)}
    arrays |= {f"b{i}": m.bias.detach().numpy() for i, m in enumerate(linears)}
    arrays |= {
        "obs_mean": obs_rms.mean,
        "obs_std": obs_rms.std,
        "log_std": model.log_std.detach().numpy(),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        path, num_layers=len(linears), **{k: np.asarray(v, np.float32) for k, v in arrays.items()}
    )


def save_checkpoint(path: Path, state: dict) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # never leaves a half-written checkpoint


def main() -> None:
    args = parse_args()
    config = PPOConfig()
    args.out.mkdir(parents=True, exist_ok=True)
    checkpoint_path = args.out / "checkpoint.pt"
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)  # the simulation has the second core
    model = ActorCritic(NUM_FEATURES, 8, config.hidden)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, eps=1e-5)
    obs_rms, ret_rms = RunningMeanStd((NUM_FEATURES,)), RunningMeanStd(())
    batch = config.num_envs * config.rollout_steps
    num_updates = max(1, args.steps // batch)
    start = 0
    if checkpoint_path.exists():
        try:
            state = torch.load(checkpoint_path, weights_only=False)
        except Exception as error:  # noqa: BLE001 - any unreadable file is reported the same way
            raise SystemExit(
                f"Checkpoint {checkpoint_path} is unreadable ({error}); delete it to start over."
            )
        if state["config"] != dataclasses.asdict(config) or state["seed"] != args.seed:
            raise SystemExit(
                f"{args.out} holds a run with another config or seed: use another --out."
            )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        obs_rms, ret_rms, start = state["obs_rms"], state["ret_rms"], state["update"]
        print(f"Resuming from update {start} of {num_updates}")
    rewards = WalkerRewards(min_height=args.min_height)
    (args.out / "config.json").write_text(
        json.dumps(
            {
                **dataclasses.asdict(config),
                **dataclasses.asdict(rewards),
                "steps": args.steps,
                "seed": args.seed,
            },
            indent=2,
        )
    )

    envs = WalkerEnvs(config.num_envs, seed=args.seed * 100_003 + start, rewards=rewards)
    discounted = np.zeros(config.num_envs)
    episode_return, episode_length = np.zeros(config.num_envs), np.zeros(config.num_envs)
    features = envs.observe()
    progress = tqdm(
        range(start, num_updates),
        initial=start,
        total=num_updates,
        desc="walker PPO",
        unit="update",
    )
    with open(args.out / "metrics.jsonl", "a") as metrics_file:
        for update in progress:
            t0 = time.perf_counter()
            for group in optimizer.param_groups:
                group["lr"] = config.lr * (1.0 - update / num_updates)
            obs_buf, act_buf, logp_buf, val_buf, next_val_buf, rew_buf, end_buf, raw_obs = (
                [] for _ in range(8)
            )
            finished_returns, finished_lengths, speeds, falls = [], [], [], 0
            for _ in range(config.rollout_steps):
                canonical, k = canonicalise(features)
                obs = torch.as_tensor(
                    np.clip((canonical - obs_rms.mean) / obs_rms.std, -10, 10), dtype=torch.float32
                )
                with torch.no_grad():
                    dist = model.distribution(obs)
                    action = dist.sample()
                    logp, value = dist.log_prob(action).sum(-1), model.value(obs)
                ctrl = np.clip(torques_to_ctrl(action.numpy().astype(np.float64), k), -1.0, 1.0)
                features, reward, terminated, truncated, final = envs.step(ctrl)
                final_canonical, _ = canonicalise(final)
                final_obs = torch.as_tensor(
                    np.clip((final_canonical - obs_rms.mean) / obs_rms.std, -10, 10),
                    dtype=torch.float32,
                )
                with torch.no_grad():
                    next_value = model.value(final_obs) * torch.as_tensor(
                        1.0 - terminated, dtype=torch.float32
                    )
                ended = terminated | truncated
                discounted = discounted * config.gamma + reward
                ret_rms.update(discounted)
                discounted[ended] = 0.0
                episode_return += reward
                episode_length += 1
                speeds.append(
                    reward - envs.rewards.healthy + envs.rewards.control_cost * (ctrl**2).sum(1)
                )
                finished_returns += episode_return[ended].tolist()
                finished_lengths += episode_length[ended].tolist()
                falls += int(terminated.sum())
                episode_return[ended], episode_length[ended] = 0.0, 0.0
                raw_obs.append(canonical)
                (
                    obs_buf.append(obs),
                    act_buf.append(action),
                    logp_buf.append(logp),
                    val_buf.append(value),
                )
                next_val_buf.append(next_value)
                rew_buf.append(torch.as_tensor(reward / ret_rms.std, dtype=torch.float32))
                end_buf.append(torch.as_tensor(ended, dtype=torch.float32))
            obs_rms.update(np.concatenate(raw_obs))
            values = torch.stack(val_buf)
            adv = advantages(
                torch.stack(rew_buf),
                values,
                torch.stack(next_val_buf),
                torch.stack(end_buf),
                config.gamma,
                config.gae_lambda,
            )
            returns = (adv + values).flatten()
            flat_obs, flat_act = torch.cat(obs_buf), torch.cat(act_buf)
            flat_logp, flat_adv = torch.cat(logp_buf), adv.flatten()
            stats: dict[str, float] = {}
            for _ in range(config.epochs):
                for index in torch.randperm(batch).split(config.minibatch_size):
                    loss, stats = ppo_loss(
                        model,
                        flat_obs[index],
                        flat_act[index],
                        flat_logp[index],
                        flat_adv[index],
                        returns[index],
                        config,
                    )
                    optimizer.zero_grad()
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
                    optimizer.step()
            record = {
                "update": update + 1,
                "min_height": rewards.min_height,
                "env_steps": (update + 1) * batch,
                "speed_along_command": float(np.mean(speeds)),
                "episode_return": float(np.mean(finished_returns)) if finished_returns else None,
                "falls_per_1k_steps": 1000.0 * falls / batch,
                "steps_per_second": batch / (time.perf_counter() - t0),
                **stats,
            }
            metrics_file.write(json.dumps(record) + "\n")
            metrics_file.flush()
            progress.set_postfix(
                speed=f"{record['speed_along_command']:.2f}",
                falls=f"{record['falls_per_1k_steps']:.1f}",
                sps=f"{record['steps_per_second']:.0f}",
            )
            if (update + 1) % args.checkpoint_every == 0 or update + 1 == num_updates:
                save_checkpoint(
                    checkpoint_path,
                    {
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "obs_rms": obs_rms,
                        "ret_rms": ret_rms,
                        "update": update + 1,
                        "config": dataclasses.asdict(config),
                        "seed": args.seed,
                    },
                )
                export_walker(model, obs_rms, args.out / "ant_walker.npz")
    if args.export is not None:
        export_walker(model, obs_rms, args.export)
        print(f"Walker weights written to {args.export}")


if __name__ == "__main__":
    main()
