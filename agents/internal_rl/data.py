"""Stage ``data``: expert episodes on the pretraining tasks, and the dataset that serves them.

The batched env and its batched expert play many episodes at once: the grid's own
``vector_entry_point`` batch plays 100k episodes in a few seconds; ants are stepped in a
``SyncVectorEnv`` with one walker call for the whole batch (about 1,500 steps/s).
Each split is one ``.npz`` in ``<out>/data/``: ``train.npz`` and ``heldout.npz`` (the
same tasks on layouts from other env seeds). Arrays are flat over *tokens*, one token
per observation, episodes back to back; episode ``e`` is tokens ``offsets[e]:offsets[e+1]``:

    obs            (N, ceil(D / 8)) uint8   o_0 .. o_T bit-packed (np.packbits): 637 -> 80 bytes
                   (binary observations, the grid); (N, D) float32 otherwise (the ant)
    actions        (N,) int8    a_t taken at o_t; IGNORE (-1) at the final observation o_T
                   (discrete actions); (N, A) float32 with NaN at o_T (continuous actions)
    subgoal        (N,) int8    ground-truth subgoal at o_t (info["subgoal"]): a label only,
                                never a model input
    subgoal_index  (N,) int8    its position in the task (info["subgoal_index"])
    offsets        (E + 1,) int64
    task           (E,) int8    row of ``tasks`` that the episode played
    success        (E,) bool
    env            (E,) int32   the batched env that played it, reset with seed ``seeds[env]``
    seeds          (num_envs,) uint64
    tasks          (num_tasks, task_length) int8   the env's pretraining tasks
    obs_dim        ()           D

An episode of T steps has T + 1 tokens: the observation after the last action is kept, as
the target of the next-observation loss at step T - 1.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import gymnasium as gym
import numpy as np
import torch
from matplotlib.figure import Figure
from tqdm import tqdm

import hier_envs  # noqa: F401  (registers the env IDs)
from agents.internal_rl.config import ConfigError, RunConfig
from agents.internal_rl.run_dir import RunDir, RunDirError
from hier_envs.experts import make_expert

IGNORE = -1
"""Marks a token with no action (an episode's final observation) and padding."""

SPLITS: tuple[str, ...] = ("train", "heldout")

T = TypeVar("T")


# --- collection ----------------------------------------------------------------------


def collect_episodes(
    env_id: str,
    num_episodes: int,
    num_envs: int,
    expert_eps: float,
    entropy: Sequence[int],
    expert_ties: str = "uniform",
    desc: str = "data",
    workers: int = 1,
) -> dict[str, np.ndarray]:
    """Play ``num_episodes`` expert episodes of the pretraining tasks; returns the split's arrays.

    Env ``i`` keeps exactly its first ``quota[i]`` episodes (quotas differ by at most one):
    keeping the first ``num_episodes`` episodes to end would favour short ones. Env seeds
    and the expert's seed come from ``np.random.SeedSequence(entropy)``. ``workers``
    processes (0: one per CPU core) play contiguous groups of the envs; each env plays the
    same episodes whatever the grouping, so a deterministic expert (the ant's Gaussian
    mean, the grid's ordered ties) gives the same data for any ``workers``; a random one
    draws from one stream per worker.
    """
    num_envs = min(num_envs, num_episodes)
    quota = np.full(num_envs, num_episodes // num_envs)
    quota[: num_episodes % num_envs] += 1
    seeds = np.random.SeedSequence(list(entropy)).generate_state(num_envs + 1, np.uint64)
    groups = np.array_split(np.arange(num_envs), min(workers or os.cpu_count() or 1, num_envs))
    expert_seeds = (
        seeds[-1:]
        if len(groups) == 1
        else np.random.SeedSequence([*entropy, len(groups)]).generate_state(len(groups), np.uint64)
    )
    jobs = [
        (env_id, seeds[group], quota[group], expert_eps, int(seed), expert_ties)
        for group, seed in zip(groups, expert_seeds)
    ]
    with tqdm(total=num_episodes, desc=desc, unit="episode", leave=False) as bar:
        if len(jobs) == 1:
            parts = [play_episodes(*jobs[0], progress=bar.update)]
        else:
            parts = _play_in_processes(jobs, bar)
    return _concatenate(parts, seeds[:-1])


ONE_THREAD = {name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
"""Thread limits of the data workers, whose walker calls are small: sixteen workers with
default thread pools (sixteen threads each) played only 3,900 ant steps/s on a 16-core
machine, most likely contending for the cores."""


def _play_in_processes(jobs: list[tuple], bar: tqdm) -> list[dict[str, np.ndarray]]:
    """:func:`play_episodes` for each job in its own process; episode counts reach ``bar``."""
    context = multiprocessing.get_context("spawn")  # no fork of a process holding torch threads
    with context.Manager() as manager:
        counts = manager.Queue()
        with ProcessPoolExecutor(len(jobs), mp_context=context) as pool:
            with _environment(ONE_THREAD):  # spawned now: N workers share N cores
                futures = [pool.submit(_play_job, job, counts) for job in jobs]
            while not all(future.done() for future in futures):
                try:
                    bar.update(counts.get(timeout=0.5))
                except queue.Empty:
                    pass
            return [future.result() for future in futures]


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """``os.environ`` updated with ``values`` (inherited by processes started meanwhile)."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _play_job(job: tuple, counts: Any) -> dict[str, np.ndarray]:
    return play_episodes(*job, progress=counts.put)


def play_episodes(
    env_id: str,
    seeds: np.ndarray,
    quota: np.ndarray,
    expert_eps: float,
    expert_seed: int,
    expert_ties: str,
    progress: Callable[[int], Any] = lambda count: None,
) -> dict[str, np.ndarray]:
    """Env ``i`` (reset with ``seeds[i]``) plays its first ``quota[i]`` expert episodes;
    ``progress(n)`` hears of every ``n`` episodes done. Returns the arrays of a split for
    these envs."""
    num_envs = len(seeds)
    envs = make_batch(env_id, num_envs)
    encode = observation_encoder(env_id, envs.single_observation_space)
    continuous = isinstance(envs.single_action_space, gym.spaces.Box)
    expert = make_expert(
        envs, eps=expert_eps, seed=expert_seed, **({} if continuous else {"ties": expert_ties})
    )
    tasks = np.asarray(batch_config(envs).tasks, dtype=np.int8)
    task_of = _task_lookup(tasks)

    # Frame k of env i is o_k with its info; actions[k] is the action chosen at frame k.
    # Next-step autoreset: after a frame that ends an episode (ended), the env ignores the
    # action and returns the next episode's first observation. Each env's frames are
    # therefore its episodes back to back, and an ended frame is an episode's o_T.
    obs, info = envs.reset(seed=[int(s) for s in seeds])
    ended = np.zeros(num_envs, dtype=bool)
    frames: list[tuple[np.ndarray, ...]] = []
    actions: list[np.ndarray] = []
    finished = np.zeros(num_envs, dtype=np.int64)
    while True:
        frames.append(
            (
                encode(obs),
                info["subgoal"].astype(np.int8),
                info["subgoal_index"].astype(np.int8),
                task_of(_task_rows(info["task"])),
                info["success"],
                ended,
            )
        )
        if (finished >= quota).all():
            break
        action = expert.act(obs, info)
        actions.append(action.astype(np.float32 if continuous else np.int8))
        obs, _, terminated, truncated, info = envs.step(action)
        ended = terminated | truncated
        counted = ended & (finished < quota)
        finished += ended
        if counted.any():
            progress(int(counted.sum()))
    envs.close()
    no_action = np.full_like(actions[-1], np.nan if continuous else IGNORE)
    actions.append(no_action)

    packed, subgoal, subgoal_index, task, success, final = (np.stack(x) for x in zip(*frames))
    del frames  # the per-step copies: only the stacked arrays are needed from here on
    episode = np.cumsum(final, axis=0) - final  # (frames, num_envs): which of its env's episodes
    # Kept frames in env-major order: each env's episodes back to back.
    env, frame = np.nonzero((episode < quota).T)
    ends = np.flatnonzero(final[frame, env])
    offsets = np.concatenate([[0], ends + 1]).astype(np.int64)
    return {
        "obs": packed[frame, env],
        "actions": np.where(trailing_axes(final, no_action.ndim + 1), no_action, np.stack(actions))[
            frame, env
        ],
        "subgoal": subgoal[frame, env],
        "subgoal_index": subgoal_index[frame, env],
        "offsets": offsets,
        "task": task[frame, env][offsets[:-1]],
        "success": success[frame, env][ends],
        "env": np.repeat(np.arange(num_envs, dtype=np.int32), quota),
        "tasks": tasks,
        "obs_dim": np.array(envs.single_observation_space.shape[0]),
    }


def _concatenate(parts: list[dict[str, np.ndarray]], seeds: np.ndarray) -> dict[str, np.ndarray]:
    """One split from the arrays of consecutive groups of envs (env ids and token offsets
    shifted to follow the previous groups')."""
    tokens = np.cumsum([0] + [len(part["obs"]) for part in parts])
    envs = np.cumsum([0] + [part["env"].max() + 1 for part in parts])  # every env has episodes
    joined = {
        key: np.concatenate([part[key] for part in parts])
        for key in ("obs", "actions", "subgoal", "subgoal_index", "task", "success")
    }
    joined["offsets"] = np.concatenate(
        [[0]] + [part["offsets"][1:] + start for part, start in zip(parts, tokens)]
    )
    joined["env"] = np.concatenate([part["env"] + start for part, start in zip(parts, envs)])
    return joined | {"seeds": seeds, "tasks": parts[0]["tasks"], "obs_dim": parts[0]["obs_dim"]}


def prefetched(items: Iterable[T], depth: int = 2) -> Generator[T, None, None]:
    """``items`` produced up to ``depth`` ahead by a background thread, in order (numpy
    releases the GIL, so preparing batches overlaps the training step). Closing the
    generator stops the thread; an exception in the thread is raised here."""
    buffer: queue.Queue = queue.Queue(depth)
    stop = threading.Event()
    end = object()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                buffer.put(item, timeout=0.1)
                return True
            except queue.Full:
                pass
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
        except BaseException as error:  # handed to the consumer
            put(error)
            return
        put(end)

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    try:
        while (item := buffer.get()) is not end:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


def trailing_axes(mask, ndim: int):
    """``mask`` (array or tensor) with singleton axes appended up to ``ndim`` axes, so that
    a per-token mask broadcasts over per-token vectors (continuous actions, observations)."""
    return mask.reshape(*mask.shape, *[1] * (ndim - mask.ndim))


def _task_rows(task: np.ndarray) -> np.ndarray:
    """``(B, task_length)`` ints from a batch's ``info["task"]`` (a ``SyncVectorEnv`` gives
    an object array of tuples)."""
    return np.array(task.tolist()) if task.dtype == object else task


def _task_lookup(tasks: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """A function from ``(B, task_length)`` task rows to their row numbers in ``tasks``."""
    powers = (int(tasks.max()) + 1) ** np.arange(tasks.shape[1])
    codes = tasks.astype(np.int64) @ powers
    order = np.argsort(codes)
    return lambda rows: order[np.searchsorted(codes[order], rows @ powers)].astype(np.int8)


def expert_success(env_id: str, task: str, episodes: int, seed: int) -> float:
    """Success rate of the expert (its exact or mean action) on ``task``: the first episode
    of each of ``episodes`` envs reset from ``seed``."""
    envs = make_batch(env_id, episodes, task=task)
    expert = make_expert(envs, seed=seed)
    obs, info = envs.reset(seed=seed)
    running, success = np.ones(episodes, dtype=bool), np.zeros(episodes, dtype=bool)
    while running.any():
        obs, reward, terminated, truncated, info = envs.step(expert.act(obs, info))
        success |= running & (reward > 0)
        running &= ~(terminated | truncated)
    envs.close()
    return float(success.mean())


def make_batch(
    env_id: str, num_envs: int, task: str | tuple[int, ...] = "pretrain", **kwargs: Any
) -> gym.vector.VectorEnv:
    """``num_envs`` envs of ``env_id`` on ``task``: the env's own batched version when it
    registers one (the grid), else a ``SyncVectorEnv`` (the ant)."""
    mode = "vector_entry_point" if gym.spec(env_id).vector_entry_point else "sync"
    return gym.make_vec(env_id, num_envs=num_envs, vectorization_mode=mode, task=task, **kwargs)


def batch_config(envs: gym.vector.VectorEnv):
    """The env config of a batch (the grid batch holds one; a ``SyncVectorEnv``, its envs)."""
    config = getattr(envs.unwrapped, "config", None)
    return config if config is not None else envs.get_attr("config")[0]


def observation_encoder(env_id: str, space: gym.Space) -> Callable[[np.ndarray], np.ndarray]:
    """How a split stores a batch of observations: bit-packed when binary, else float32."""
    if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
        raise ValueError(f"The data stage stores 1-D Box observations; {env_id} observes {space}.")
    if space.dtype == np.uint8 and (space.low == 0).all() and (space.high == 1).all():
        return lambda obs: np.packbits(obs, axis=1)
    return lambda obs: np.asarray(obs, dtype=np.float32)


def save_split(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write a split's arrays to ``path`` (``.npz``, uncompressed) atomically."""
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


# --- the stage --------------------------------------------------------------------------


def run_data_stage(run: RunDir, config: RunConfig, device: torch.device) -> None:
    """Stage ``data``: the train split and, from other env seeds, the held-out split.

    Runs on numpy whatever ``device``. Regenerating is cheap, so an interrupted data
    stage simply starts over.
    """
    data = config.data
    directory = run.stage_dir("data")
    datasets: dict[str, EpisodeDataset] = {}
    log = run.metrics("data", resume_step=0)
    for number, (split, num_episodes) in enumerate(
        zip(SPLITS, (data.train_episodes, data.heldout_episodes))
    ):
        start = time.perf_counter()
        arrays = collect_episodes(
            config.env_id,
            num_episodes,
            data.num_envs,
            data.expert_eps,
            entropy=(config.seed, number),
            expert_ties=data.expert_ties,
            desc=f"data {split}",
            workers=data.workers,
        )
        seconds = time.perf_counter() - start
        save_split(directory / f"{split}.npz", arrays)
        dataset = datasets[split] = EpisodeDataset(arrays)
        log.log(
            split=split,
            episodes=dataset.num_episodes,
            steps=dataset.num_steps,
            success_rate=float(dataset.success.mean()),
            mean_length=float(dataset.lengths.mean()),
            seconds=seconds,
            episodes_per_second=dataset.num_episodes / seconds,
        )
        print(
            f"data {split}: {dataset.num_episodes} episodes, {dataset.num_steps} steps "
            f"in {seconds:.1f} s, expert success {dataset.success.mean():.3f}"
        )
    train = datasets["train"]
    all_success = np.concatenate([d.success for d in datasets.values()])
    post_success = expert_success(
        config.env_id, "post", data.expert_post_episodes, seed=config.seed + 2
    )
    print(f"expert on the post-training task: success {post_success:.3f}")
    run.update_summary(
        {
            "expert.success_rate": float(all_success.mean()),
            "expert.post_success_rate": post_success,
            "data.episodes": train.num_episodes,
            "data.steps": train.num_steps,
            "data.mean_length": float(train.lengths.mean()),
            "data.heldout_episodes": datasets["heldout"].num_episodes,
        }
    )
    plot_data(datasets, run.plots / "data.png")


def plot_data(datasets: dict[str, EpisodeDataset], path: Path) -> None:
    """Episode lengths per split, and steps spent on each subgoal (between label changes)."""
    figure = Figure(figsize=(9, 3.5), layout="constrained")
    episodes, subgoals = figure.subplots(1, 2)
    for split, dataset in datasets.items():
        for axes, lengths in ((episodes, dataset.lengths), (subgoals, dataset.subgoal_lengths())):
            axes.hist(
                lengths,
                bins=np.arange(lengths.max() + 2),
                density=True,
                histtype="step",
                label=f"{split} ({dataset.num_episodes} episodes)",
            )
    episodes.set(xlabel="steps", ylabel="share of episodes", title="Expert episode length")
    subgoals.set(xlabel="steps", ylabel="share of subgoals", title="Steps per ground-truth subgoal")
    episodes.legend()
    figure.savefig(path, dpi=100)


# --- the dataset -------------------------------------------------------------------------


@dataclass(frozen=True)
class Episode:
    """One episode of T steps: T + 1 observations, T actions, a label per observation."""

    obs: np.ndarray  # (T + 1, D) uint8 (binary) or float32: o_0 .. o_T
    actions: np.ndarray  # (T,) int64 or (T, A) float32: a_0 .. a_{T-1}
    subgoal: np.ndarray  # (T + 1,) int64
    subgoal_index: np.ndarray  # (T + 1,) int64
    task: int
    success: bool


@dataclass(frozen=True)
class DataPosition:
    """Where a training loop is in its data: the epoch, and how many of its batches it has
    trained on. Saved in each checkpoint, so that a resumed stage sees the batches an
    uninterrupted one would have."""

    epoch: int = 0
    batch: int = 0

    @classmethod
    def from_checkpoint(cls, state: dict, path: Path) -> DataPosition:
        if "epoch" not in state or "batch_in_epoch" not in state:
            raise RunDirError(
                f"{path} has no data position (an older version wrote it): delete it to "
                "train that stage again from its first step."
            )
        return cls(state["epoch"], state["batch_in_epoch"])

    def checkpoint_fields(self) -> dict[str, int]:
        return {"epoch": self.epoch, "batch_in_epoch": self.batch}


@dataclass(frozen=True)
class Batch:
    """``B`` packed windows of ``L`` tokens; padding tokens have ``episode == IGNORE``.

    Whole episodes only: the next observation of token ``t`` is ``obs[:, t + 1]`` wherever
    ``has_action[:, t]``. Attention must stay within an episode: token ``t`` may
    attend to token ``s <= t`` iff ``episode[:, s] == episode[:, t]``.
    """

    obs: np.ndarray  # (B, L, D) uint8 or float32; zeros at padding
    actions: np.ndarray  # (B, L) int64, IGNORE at an episode's o_T and at padding; or
    # (B, L, A) float32, NaN there
    has_action: np.ndarray  # (B, L) bool: an action was taken at this token
    position: np.ndarray  # (B, L) int64: t within the episode; 0 at padding
    episode: np.ndarray  # (B, L) int64: episode index in the split; IGNORE at padding
    subgoal: np.ndarray  # (B, L) int64 label; IGNORE at padding
    subgoal_index: np.ndarray  # (B, L) int64 label; IGNORE at padding
    tokens: np.ndarray  # (B, L) int64: token index in the split; IGNORE at padding


class EpisodeDataset:
    """One split of the data stage, in memory: episodes, and batches of packed windows.

    Packing rather than padding: an epoch shuffles the episodes and lays them end to end
    into windows of ``length`` tokens, starting a new window when the next episode does
    not fit (episodes are never cut: each token needs its episode's history, since the
    task is latent). Padding is only the tail of each window: with the expert's episodes
    (32.5 tokens on average) 3% of tokens in windows of 512, 6.5% at 256, 13% at 128,
    where padding every episode to T + 1 = 101 tokens would waste two thirds.
    """

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        self.stored_obs = arrays["obs"]
        self.obs_dim = int(arrays["obs_dim"])
        self.packed = self.stored_obs.dtype == np.uint8
        self.actions = arrays["actions"]
        self.subgoal = arrays["subgoal"]
        self.subgoal_index = arrays["subgoal_index"]
        self.offsets = arrays["offsets"]
        self.task = arrays["task"]
        self.success = arrays["success"]
        self.env = arrays["env"]
        self.seeds = arrays["seeds"]
        self.tasks = arrays["tasks"]
        self.episode_of = np.repeat(
            np.arange(self.num_episodes, dtype=np.int32), np.diff(self.offsets)
        )
        self.has_action = np.ones(self.num_tokens, dtype=bool)
        self.has_action[self.offsets[1:] - 1] = False  # an episode's final observation

    @classmethod
    def load(cls, path: Path) -> EpisodeDataset:
        if not Path(path).exists():
            raise FileNotFoundError(f"{path} does not exist: run the data stage first.")
        with np.load(path) as npz:
            return cls({key: npz[key] for key in npz.files})

    @property
    def num_episodes(self) -> int:
        return len(self.offsets) - 1

    @property
    def num_tokens(self) -> int:
        return int(self.offsets[-1])

    @property
    def lengths(self) -> np.ndarray:
        """Steps (actions) per episode."""
        return np.diff(self.offsets) - 1

    @property
    def num_steps(self) -> int:
        return self.num_tokens - self.num_episodes

    def subgoal_lengths(self) -> np.ndarray:
        """Steps of each run of one subgoal within an episode, over all episodes."""
        steps = np.flatnonzero(self.has_action)
        episode, label = self.episode_of[steps], self.subgoal_index[steps]
        starts = np.flatnonzero(np.diff(episode, prepend=-1) | np.diff(label, prepend=-1))
        return np.diff(starts, append=len(steps))

    def observations(self, tokens: np.ndarray) -> np.ndarray:
        """The observations of ``tokens`` (any shape): ``(*tokens.shape, D)``, uint8 (unpacked
        bits) or float32."""
        if not self.packed:
            return self.stored_obs[tokens]
        return np.unpackbits(self.stored_obs[tokens], axis=-1, count=self.obs_dim)

    def episode(self, index: int) -> Episode:
        start, stop = self.offsets[index], self.offsets[index + 1]
        return Episode(
            obs=self.observations(np.arange(start, stop)),
            actions=self.actions[start : stop - 1].astype(
                np.int64 if self.actions.ndim == 1 else np.float32
            ),
            subgoal=self.subgoal[start:stop].astype(np.int64),
            subgoal_index=self.subgoal_index[start:stop].astype(np.int64),
            task=int(self.task[index]),
            success=bool(self.success[index]),
        )

    def __len__(self) -> int:
        return self.num_episodes

    def __iter__(self) -> Iterator[Episode]:
        return (self.episode(i) for i in range(self.num_episodes))

    def batches(
        self, length: int, batch_size: int, seed: int, epoch: int = 0, start: int = 0
    ) -> Iterator[Batch]:
        """One epoch of batches of ``batch_size`` windows (the last may be smaller).

        The episode order is drawn from ``(seed, epoch)``, so a resumed run can skip the
        ``start`` batches it already trained on and see the same data.
        """
        order = np.random.default_rng([seed, epoch]).permutation(self.num_episodes)
        windows = pack_windows(self.offsets, order, length)
        for first in range(start * batch_size, len(windows), batch_size):
            yield self.batch(windows[first : first + batch_size])

    def endless_batches(
        self, length: int, batch_size: int, seed: int, position: DataPosition = DataPosition()
    ) -> Iterator[tuple[DataPosition, Batch]]:
        """:meth:`batches`, epoch after epoch, from ``position`` on; each with the position
        after it (the one to save with the weights it trained)."""
        epoch, start = position.epoch, position.batch
        while True:
            index = start
            for index, batch in enumerate(
                self.batches(length, batch_size, seed, epoch, start), start=start + 1
            ):
                yield DataPosition(epoch, index), batch
            if index == 0:
                raise ValueError(f"the dataset has no windows of {length} tokens to train on")
            epoch, start = epoch + 1, 0

    def batch(self, tokens: np.ndarray) -> Batch:
        """The :class:`Batch` of a ``(B, L)`` array of token indices (IGNORE: padding)."""
        valid = tokens != IGNORE
        index = np.where(valid, tokens, 0)

        def take(values: np.ndarray) -> np.ndarray:
            return np.where(valid, values[index], IGNORE).astype(np.int64)

        episode = self.episode_of[index]
        obs = self.observations(index)
        if self.actions.ndim == 1:
            actions = take(self.actions)
        else:
            actions = np.where(valid[..., None], self.actions[index], np.nan).astype(np.float32)
        return Batch(
            obs=obs * valid[..., None].astype(obs.dtype),
            actions=actions,
            has_action=valid & self.has_action[index],
            position=np.where(valid, index - self.offsets[episode], 0),
            episode=take(self.episode_of),
            subgoal=take(self.subgoal),
            subgoal_index=take(self.subgoal_index),
            tokens=np.where(valid, tokens, IGNORE).astype(np.int64),
        )


def load_split(run: RunDir, split: str) -> EpisodeDataset:
    """The ``split`` (``"train"`` or ``"heldout"``) written by the data stage of ``run``."""
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}: the data stage writes {', '.join(SPLITS)}.")
    return EpisodeDataset.load(run.path / "data" / f"{split}.npz")


def pack_windows(offsets: np.ndarray, order: np.ndarray, length: int) -> np.ndarray:
    """Lay whole episodes, in ``order``, into windows of ``length`` tokens (next fit).

    Returns ``(num_windows, length)`` token indices, IGNORE where a window is padded;
    every token of the episodes in ``order`` appears exactly once.
    """
    sizes = np.diff(offsets)[order]
    if sizes.size and sizes.max() > length:
        raise ConfigError(
            f"Windows of {length} tokens cannot hold an episode of {sizes.max()} tokens: "
            f"use base.window >= {sizes.max()} (the env's max_steps + 1)."
        )
    window = np.empty(len(sizes), dtype=np.int64)
    start = np.empty(len(sizes), dtype=np.int64)
    current = used = 0
    for i, size in enumerate(sizes.tolist()):
        if used + size > length:
            current, used = current + 1, 0
        window[i], start[i] = current, used
        used += size
    num_windows = current + 1 if len(sizes) else 0
    index = np.full((num_windows, length), IGNORE, dtype=np.int64)
    within = np.arange(sizes.sum()) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    index[np.repeat(window, sizes), np.repeat(start, sizes) + within] = (
        np.repeat(offsets[:-1][order], sizes) + within
    )
    return index
