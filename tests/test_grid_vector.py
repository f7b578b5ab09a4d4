"""The numpy-batched HierGrid-v0 matches a SyncVectorEnv of single envs step for step, and
the batched layout sampler and shortest-path search match their scalar versions."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from conftest import distances_to_enter
from gymnasium.vector import AutoresetMode
from hypothesis import given, settings
from hypothesis import strategies as st

import hier_envs.grid.layout as layout_module
from hier_envs.experts import make_expert
from hier_envs.grid import GridConfig, HierGridEnv, HierGridVectorEnv
from hier_envs.grid.core import UNREACHABLE, Geometry, shortest_path, shortest_paths
from hier_envs.grid.layout import sample_layout, sample_layouts

INFO_KEYS = ("progress", "subgoal", "subgoal_index", "agent_pos", "success")


def test_make_vec_returns_the_batched_env_with_next_step_autoreset():
    envs = gym.make_vec(
        "HierGrid-v0", num_envs=3, vectorization_mode="vector_entry_point", task="pretrain"
    )
    assert isinstance(envs.unwrapped, HierGridVectorEnv)
    assert envs.num_envs == 3
    assert envs.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    assert envs.single_observation_space == HierGridEnv().observation_space
    assert envs.observation_space.shape == (3, 637) and envs.observation_space.dtype == np.uint8
    assert envs.action_space.shape == (3,)
    obs, info = envs.reset(seed=0)
    assert obs in envs.observation_space
    assert info["task"].shape == (3, 6)


def _assert_same_step(vector_out, sync_out, step):
    (v_obs, *v_rest, v_info), (s_obs, *s_rest, s_info) = vector_out, sync_out
    np.testing.assert_array_equal(v_obs, s_obs, err_msg=f"obs at step {step}")
    for v, s, name in zip(v_rest, s_rest, ("reward", "terminated", "truncated")):
        np.testing.assert_array_equal(v, s, err_msg=f"{name} at step {step}")
    for key in INFO_KEYS:
        np.testing.assert_array_equal(
            v_info[key], s_info[key], err_msg=f"info[{key!r}] at step {step}"
        )
        assert v_info[f"_{key}"].all()
    assert v_info["task"].dtype.kind == "i"
    np.testing.assert_array_equal(
        v_info["task"], np.array(list(s_info["task"])), err_msg=f"task at {step}"
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"task": "post"},
        {"task": "pretrain"},
        {"task": (0, 0, 3), "max_steps": 10},
        {"task": [1, 2, 1, 0], "size": 5, "num_colors": 3, "num_walls": 2, "max_steps": 25},
    ],
    ids=["post", "pretrain", "explicit-short-limit", "small-grid"],
)
def test_vector_env_matches_sync_vector_env_step_for_step(kwargs):
    num_envs, seed = 6, 123
    vector = gym.make_vec(
        "HierGrid-v0", num_envs=num_envs, vectorization_mode="vector_entry_point", **kwargs
    )
    sync = gym.vector.SyncVectorEnv(
        [lambda: gym.make("HierGrid-v0", **kwargs) for _ in range(num_envs)]
    )
    assert sync.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    _assert_same_step(vector.reset(seed=seed), sync.reset(seed=seed), "reset")
    # Even envs follow the expert (successes), odd ones act at random (failures, time-outs).
    expert, rng = make_expert(vector, eps=0.1, seed=0), np.random.default_rng(0)
    random_env = np.arange(num_envs) % 2 == 1
    ends = {"success": 0, "failure": 0, "truncation": 0}
    for step in range(400):
        if step == 200:  # a reset without seed continues every env's stream
            _assert_same_step(vector.reset(), sync.reset(), "reset without seed")
        if step == 300:  # a new seed starts new streams
            _assert_same_step(vector.reset(seed=7), sync.reset(seed=7), "reset with a new seed")
        actions = np.where(random_env, rng.integers(4, size=num_envs), expert.act())
        out = vector.step(actions)
        _assert_same_step(out, sync.step(actions), step)
        _, reward, terminated, truncated, info = out
        ends["success"] += int((terminated & info["success"]).sum())
        ends["failure"] += int((terminated & ~info["success"]).sum())
        ends["truncation"] += int(truncated.sum())
        assert not (reward.astype(bool) ^ (terminated & info["success"])).any()
    assert ends["success"] >= 5 and ends["failure"] >= 20
    if kwargs.get("max_steps", 100) <= 10:
        assert ends["truncation"] >= 5


def test_vector_env_seed_list_matches_single_envs():
    seeds = [5, 9, 2**33]
    envs = HierGridVectorEnv(num_envs=3, task="pretrain", render_mode="rgb_array")
    obs, info = envs.reset(seed=seeds)
    frames = envs.render()
    for i, seed in enumerate(seeds):
        single = HierGridEnv(task="pretrain", render_mode="rgb_array")
        single_obs, single_info = single.reset(seed=seed)
        np.testing.assert_array_equal(obs[i], single_obs)
        assert tuple(info["task"][i]) == single_info["task"]
        assert envs.layout(i) == single.layout
        np.testing.assert_array_equal(frames[i], single.render())


def test_vector_env_without_render_mode_renders_nothing():
    envs = HierGridVectorEnv(num_envs=2)
    envs.reset(seed=0)
    assert envs.render() is None


# --- layout sampling ------------------------------------------------------------------

SAMPLER_CONFIGS = {
    "post": GridConfig("post"),
    "pretrain": GridConfig("pretrain"),
    "many-walls": GridConfig("post", num_walls=10),
    "no-walls": GridConfig((3, 3, 1), num_walls=0, max_steps=20),
    "size-8": GridConfig((9, 0, 11, 9), size=8, num_colors=12, num_walls=6, max_steps=40),
    "size-3": GridConfig((1, 0), size=3, num_colors=2, num_walls=2, max_steps=6),
}


@pytest.mark.parametrize("name", SAMPLER_CONFIGS)
def test_batched_layout_sampler_matches_the_scalar_one(name):
    config = SAMPLER_CONFIGS[name]
    rng = np.random.default_rng(len(name))
    keys = rng.integers(2**63, size=60, dtype=np.uint64)
    for episodes in (np.zeros(60, dtype=np.uint64), rng.integers(2**40, size=60, dtype=np.uint64)):
        tasks, cells = sample_layouts(config, keys, episodes)
        assert tasks.shape == (60, config.task_length)
        assert cells.shape == (60, config.num_features)
        for key, episode, task, row in zip(keys, episodes, tasks, cells):
            layout = sample_layout(config, int(key), int(episode))
            assert tuple(task) == layout.task
            assert tuple(row) == (*layout.walls, *layout.colours, layout.agent)


def test_many_walls_config_rejects_most_first_draws(monkeypatch):
    # The sampler comparison above covers rejection only if it happens often there.
    monkeypatch.setattr(layout_module, "MAX_LAYOUT_ATTEMPTS", 1)
    rejected = 0
    for key in range(100):
        try:
            sample_layout(SAMPLER_CONFIGS["many-walls"], key, 0)
        except RuntimeError:
            rejected += 1
    assert rejected >= 30


def test_batched_sampler_gives_up_after_the_same_attempts_as_the_scalar_one(monkeypatch):
    monkeypatch.setattr(layout_module, "MAX_LAYOUT_ATTEMPTS", 3)
    config = SAMPLER_CONFIGS["many-walls"]

    def or_none(sample, *args):
        try:
            return sample(config, *args)
        except RuntimeError:
            return None

    for key in range(40):
        scalar = or_none(sample_layout, key, 0)
        batched = or_none(sample_layouts, np.array([key], np.uint64), np.zeros(1, np.uint64))
        scalar_cells = None if scalar is None else (*scalar.walls, *scalar.colours, scalar.agent)
        batched_cells = None if batched is None else tuple(int(c) for c in batched[1][0])
        assert batched_cells == scalar_cells, f"key {key}"


def test_unsolvable_settings_raise_runtime_error_at_reset():
    # (0, 0) takes at least 3 steps: onto 0, off it, onto it again.
    with pytest.raises(RuntimeError, match="No solvable layout found in 1000 attempts"):
        HierGridEnv(task=(0, 0), max_steps=2).reset(seed=0)
    with pytest.raises(RuntimeError, match="No solvable layout found in 1000 attempts"):
        HierGridVectorEnv(num_envs=2, task=(0, 0), max_steps=2).reset(seed=0)


# --- shortest paths ---------------------------------------------------------------------


@st.composite
def searches(draw):
    """A grid size and a batch of (start, target, empty) single-cell searches."""
    size = draw(st.integers(2, 8))
    n, full = size * size, (1 << size * size) - 1
    rows = []
    for _ in range(draw(st.integers(1, 16))):
        start, target = draw(st.integers(0, n - 1)), draw(st.integers(0, n - 1))
        obstacles = full
        for _ in range(draw(st.integers(1, 3))):  # obstacle density 1/2, 1/4 or 1/8
            obstacles &= draw(st.integers(0, full))
        rows.append((1 << start, 1 << target, full & ~obstacles & ~(1 << target)))
    return size, rows


@settings(max_examples=200, deadline=None)
@given(searches())
def test_batched_shortest_paths_match_the_scalar_search_and_a_plain_bfs(case):
    size, rows = case
    geometry = Geometry(size)
    start, target, empty = (np.array(column, dtype=np.uint64) for column in zip(*rows))
    distance, next_cells = shortest_paths(start, target, empty, geometry)
    for i, (s, t, e) in enumerate(rows):
        expected_distance, expected_next = shortest_path(s, t, e, geometry)
        assert (int(distance[i]), int(next_cells[i])) == (expected_distance, expected_next)
        blocked = {c for c in range(size * size) if not (e >> c) & 1}
        plain = distances_to_enter(size, blocked, t.bit_length() - 1)
        assert expected_distance == plain.get(s.bit_length() - 1, UNREACHABLE)


@settings(max_examples=50, deadline=None)
@given(searches(), st.integers(1, 5))
def test_batched_shortest_paths_broadcast_like_the_vector_env_uses_them(case, moves):
    size, rows = case
    geometry = Geometry(size)
    start, target, empty = (np.array(column, dtype=np.uint64) for column in zip(*rows))
    # (B, M) searches sharing one board per row, as layout sampling does.
    starts = np.stack([np.roll(start, k) for k in range(moves)], axis=1)
    targets = np.stack([np.roll(target, -k) for k in range(moves)], axis=1)
    distance, next_cells = shortest_paths(starts, targets, empty[:, None], geometry)
    assert distance.shape == next_cells.shape == starts.shape
    for b, m in np.ndindex(*starts.shape):
        expected = shortest_path(int(starts[b, m]), int(targets[b, m]), int(empty[b]), geometry)
        assert int(distance[b, m]) == expected[0]


def test_a_search_between_empty_boards_is_unreachable():
    geometry = Geometry(7)
    assert shortest_path(0, 0, geometry.full, geometry) == (UNREACHABLE, 0)
    distance, next_cells = shortest_paths(
        np.zeros(2, np.uint64),
        np.zeros(2, np.uint64),
        np.full(2, geometry.full, np.uint64),
        geometry,
    )
    assert distance.tolist() == [UNREACHABLE] * 2 and next_cells.tolist() == [0, 0]
