"""The data stage of agents.internal_rl: stored episodes replay exactly in a single env (grid
and ant), labels are the env's ``info["subgoal"]``, and packed windows cover every token once
per epoch."""

from __future__ import annotations

import time

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.internal_rl.data import (
    IGNORE,
    DataPosition,
    EpisodeDataset,
    collect_episodes,
    pack_windows,
    prefetched,
    save_split,
)
from hier_envs.grid.core import Geometry

SIZE, FEATURES = 7, 13  # HierGrid-v0: 7x7 cells, [wall 0..3, colour 0..7, agent] per cell


@pytest.fixture(scope="module")
def dataset() -> EpisodeDataset:
    return EpisodeDataset(
        collect_episodes("HierGrid-v0", 60, num_envs=8, expert_eps=0.0, entropy=(0, 0))
    )


@pytest.fixture(scope="module")
def exploring_dataset() -> EpisodeDataset:
    return EpisodeDataset(
        collect_episodes("HierGrid-v0", 24, num_envs=6, expert_eps=0.5, entropy=(3, 0))
    )


@pytest.fixture(scope="module")
def ant_dataset() -> EpisodeDataset:
    return EpisodeDataset(
        collect_episodes("HierAnt-v0", 6, num_envs=3, expert_eps=0.0, entropy=(0, 0))
    )


def assert_replays_in_single_envs(dataset: EpisodeDataset, env_id: str = "HierGrid-v0") -> None:
    """Each env's stored episodes, replayed in a single env with that env's seed, give the
    stored observations, labels, task and outcome, step for step."""
    episodes_of_env: dict[int, list[int]] = {}
    for index, env in enumerate(dataset.env.tolist()):
        episodes_of_env.setdefault(env, []).append(index)
    for env_index, episodes in episodes_of_env.items():
        env = gym.make(env_id, task="pretrain")
        for number, index in enumerate(episodes):
            episode = dataset.episode(index)
            seed = int(dataset.seeds[env_index]) if number == 0 else None
            obs, info = env.reset(seed=seed)
            assert tuple(dataset.tasks[episode.task]) == info["task"]
            terminated = truncated = False
            for t, action in enumerate(episode.actions.tolist()):
                np.testing.assert_array_equal(obs, episode.obs[t])
                assert (episode.subgoal[t], episode.subgoal_index[t]) == (
                    info["subgoal"],
                    info["subgoal_index"],
                )
                assert not (terminated or truncated), "the stored episode goes on after its end"
                obs, _, terminated, truncated, info = env.step(action)
            np.testing.assert_array_equal(obs, episode.obs[-1])
            assert (episode.subgoal[-1], episode.subgoal_index[-1]) == (
                info["subgoal"],
                info["subgoal_index"],
            )
            assert terminated or truncated, "the stored episode stops before its end"
            assert episode.success == info["success"]
        env.close()


def test_stored_episodes_replay_exactly_in_single_envs(dataset):
    assert_replays_in_single_envs(dataset)


def test_ant_episodes_replay_exactly_in_single_envs(ant_dataset):
    assert_replays_in_single_envs(ant_dataset, "HierAnt-v0")


def test_worker_processes_play_the_same_ant_episodes(ant_dataset):
    arrays = collect_episodes(
        "HierAnt-v0", 6, num_envs=3, expert_eps=0.0, entropy=(0, 0), workers=2
    )
    for key, value in arrays.items():
        stored = getattr(ant_dataset, "stored_obs" if key == "obs" else key)
        np.testing.assert_array_equal(value, stored, err_msg=key)


def test_ant_splits_store_float_observations_and_torques(ant_dataset):
    assert ant_dataset.stored_obs.dtype == np.float32 and ant_dataset.stored_obs.shape[1] == 41
    assert ant_dataset.actions.dtype == np.float32 and ant_dataset.actions.shape[1] == 8
    no_action = np.isnan(ant_dataset.actions).all(axis=1)
    np.testing.assert_array_equal(no_action, ~ant_dataset.has_action)
    np.testing.assert_array_equal(np.flatnonzero(no_action), ant_dataset.offsets[1:] - 1)
    assert (np.abs(ant_dataset.actions[~no_action]) <= 1).all()


def test_the_ant_expert_solves_the_pretraining_tasks(ant_dataset):
    assert ant_dataset.success.mean() >= 5 / 6  # shipped expert: 0.97 on 100 held-out seeds


def test_ant_batches_mark_steps_without_an_action(ant_dataset):
    batch = next(ant_dataset.batches(512, 8, seed=0))
    assert batch.actions.shape == (*batch.tokens.shape, 8)
    np.testing.assert_array_equal(np.isnan(batch.actions).any(-1), ~batch.has_action)
    padding = batch.tokens == IGNORE
    assert not batch.obs[padding].any()
    assert batch.has_action.sum() == ant_dataset.num_steps


def test_exploring_expert_episodes_replay_exactly_too(exploring_dataset):
    assert 0 < exploring_dataset.success.mean() < 1  # some episodes run out of time
    assert_replays_in_single_envs(exploring_dataset)


def test_every_episode_of_the_exact_expert_succeeds(dataset):
    assert dataset.success.all()


def test_each_env_keeps_its_first_episodes_in_equal_shares(dataset):
    assert dataset.num_episodes == 60
    np.testing.assert_array_equal(np.bincount(dataset.env), [8, 8, 8, 8, 7, 7, 7, 7])
    assert (np.diff(dataset.env) >= 0).all()


def test_an_episode_has_one_more_observation_than_actions(dataset):
    final = dataset.offsets[1:] - 1
    np.testing.assert_array_equal(np.flatnonzero(dataset.actions == IGNORE), final)
    for episode, length in zip(dataset, dataset.lengths):
        assert episode.obs.shape == (length + 1, SIZE * SIZE * FEATURES)
        assert episode.actions.shape == (length,)
        assert episode.subgoal.shape == episode.subgoal_index.shape == (length + 1,)
        assert ((episode.actions >= 0) & (episode.actions < 4)).all()
    assert dataset.num_steps == dataset.lengths.sum() == dataset.num_tokens - dataset.num_episodes


def test_the_agent_moves_one_cell_by_its_action_or_stays_blocked(dataset):
    moves = Geometry(SIZE).moves
    for episode in dataset:
        cells = episode.obs.reshape(-1, SIZE * SIZE, FEATURES)
        np.testing.assert_array_equal(cells[1:, :, :-1], cells[:-1, :, :-1])  # walls, colours fixed
        agent = cells[:, :, -1].argmax(axis=1)
        assert (cells[:, :, -1].sum(axis=1) == 1).all()
        walls = set(np.flatnonzero(cells[0, :, :4].any(axis=1)).tolist())
        for t, action in enumerate(episode.actions.tolist()):
            target = moves[agent[t], action]
            expected = agent[t] if target in walls else target
            assert agent[t + 1] == expected


def test_heldout_split_uses_other_env_seeds(dataset):
    heldout = EpisodeDataset(
        collect_episodes("HierGrid-v0", 16, num_envs=8, expert_eps=0.0, entropy=(0, 1))
    )
    assert not set(heldout.seeds.tolist()) & set(dataset.seeds.tolist())


def test_a_saved_split_loads_back_identical(dataset, tmp_path):
    arrays = collect_episodes("HierGrid-v0", 10, num_envs=4, expert_eps=0.0, entropy=(1, 0))
    save_split(tmp_path / "train.npz", arrays)
    loaded = EpisodeDataset.load(tmp_path / "train.npz")
    for a, b in zip(EpisodeDataset(arrays), loaded):
        np.testing.assert_array_equal(a.obs, b.obs)
        np.testing.assert_array_equal(a.actions, b.actions)
    assert not list(tmp_path.glob("*.tmp*"))


# --- packing ---------------------------------------------------------------------------


def test_an_epoch_of_batches_covers_every_token_exactly_once(dataset):
    tokens = np.concatenate([b.tokens[b.tokens != IGNORE] for b in dataset.batches(128, 3, seed=0)])
    np.testing.assert_array_equal(np.sort(tokens), np.arange(dataset.num_tokens))


def test_batches_hold_whole_episodes_with_their_next_observations(dataset):
    for batch in dataset.batches(128, 4, seed=1):
        for row in range(len(batch.tokens)):
            valid = batch.episode[row] != IGNORE
            for index in np.unique(batch.episode[row, valid]):
                where = np.flatnonzero(batch.episode[row] == index)
                episode = dataset.episode(index)
                np.testing.assert_array_equal(where, where[0] + np.arange(len(where)))  # contiguous
                np.testing.assert_array_equal(
                    batch.position[row, where], np.arange(len(episode.obs))
                )
                np.testing.assert_array_equal(batch.obs[row, where], episode.obs)
                np.testing.assert_array_equal(batch.actions[row, where[:-1]], episode.actions)
                assert batch.actions[row, where[-1]] == IGNORE
                np.testing.assert_array_equal(batch.subgoal[row, where], episode.subgoal)
            assert not batch.obs[row, ~valid].any() and (batch.actions[row, ~valid] == IGNORE).all()


def test_epochs_are_reproducible_shuffles_and_resume_skips_batches(dataset):
    def tokens(**kwargs):
        return [b.tokens for b in dataset.batches(128, 2, seed=0, **kwargs)]

    first = tokens(epoch=0)
    assert all(np.array_equal(a, b) for a, b in zip(first, tokens(epoch=0)))
    assert not np.array_equal(first[0], tokens(epoch=1)[0])
    resumed = tokens(epoch=0, start=3)
    assert len(resumed) == len(first) - 3
    assert all(np.array_equal(a, b) for a, b in zip(first[3:], resumed))


@settings(max_examples=50, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 12), min_size=1, max_size=40),
    length=st.integers(12, 30),
    seed=st.integers(0, 2**16),
)
def test_packing_places_each_episode_whole_in_one_window(sizes, length, seed):
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    order = np.random.default_rng(seed).permutation(len(sizes))
    windows = pack_windows(offsets, order, length)
    assert windows.shape[1] == length
    placed = windows[windows != IGNORE]
    np.testing.assert_array_equal(np.sort(placed), np.arange(offsets[-1]))
    episode_of = np.repeat(np.arange(len(sizes)), sizes)
    for window in windows:
        used = window[window != IGNORE]
        assert (window[: len(used)] == used).all(), "padding only at the end of a window"
        for episode in np.unique(episode_of[used]):
            np.testing.assert_array_equal(
                used[episode_of[used] == episode], np.arange(offsets[episode], offsets[episode + 1])
            )
    assert (
        len(windows) <= 2 * offsets[-1] / length + 1
    )  # next fit fills over half of each window pair


def test_a_window_shorter_than_an_episode_is_refused(dataset):
    with pytest.raises(ValueError, match=r"base.window >= \d+"):
        next(dataset.batches(10, 2, seed=0))


def test_prefetched_items_arrive_in_order_and_errors_are_raised():
    assert list(prefetched(iter(range(50)), depth=3)) == list(range(50))

    def failing():
        yield 1
        raise ValueError("broken batch")

    items = prefetched(failing())
    assert next(items) == 1
    with pytest.raises(ValueError, match="broken batch"):
        next(items)


def test_closing_prefetched_items_stops_the_producer():
    produced = []

    def endless():
        while True:
            produced.append(len(produced))
            yield produced[-1]

    items = prefetched(endless(), depth=2)
    assert [next(items) for _ in range(3)] == [0, 1, 2]
    items.close()
    count = len(produced)
    assert count <= 3 + 2 + 1  # what was taken, the buffer, one in hand
    time.sleep(0.3)
    assert len(produced) == count


def test_endless_batches_run_on_through_epochs_and_resume_from_a_saved_position(dataset):
    def tokens(batches, count):
        return [(position, batch.tokens) for (position, batch), _ in zip(batches, range(count))]

    per_epoch = len(list(dataset.batches(128, 2, seed=0)))
    run = tokens(dataset.endless_batches(128, 2, seed=0), 2 * per_epoch + 3)
    epoch_one = [b.tokens for b in dataset.batches(128, 2, seed=0, epoch=1)]
    assert all(np.array_equal(a, b) for (_, a), b in zip(run[per_epoch:], epoch_one))
    assert run[per_epoch - 1][0] == DataPosition(0, per_epoch)
    assert run[per_epoch][0] == DataPosition(1, 1)
    saved = run[per_epoch + 2][0]
    resumed = tokens(dataset.endless_batches(128, 2, seed=0, position=saved), 10)
    for (position, a), (expected, b) in zip(resumed, run[per_epoch + 3 :]):
        assert position == expected and np.array_equal(a, b)
