"""HierGrid-v0 as a Gymnasium env: observation, API checks, seeding, registration, pickling,
rendering and solvable layouts."""

from __future__ import annotations

import copy
import pickle
import subprocess
import sys
import warnings

import gymnasium as gym
import numpy as np
import pytest
from conftest import oracle_optimal_actions, oracle_path_length
from gymnasium.utils.env_checker import check_env

from hier_envs.grid import HierGridEnv
from hier_envs.tasks import GRID_POST_TRAINING, GRID_PRETRAINING


def _random_policy(seed):
    rng = np.random.default_rng(seed)
    return lambda obs, info: int(rng.integers(4))


def _assert_obs_matches_state(obs, env, info):
    config, layout = env.unwrapped.config, env.unwrapped.layout
    grid = obs.reshape(config.size**2, config.num_features)
    w, o = config.num_walls, config.num_colors
    expected = np.zeros_like(grid)
    for wall_id, cell in enumerate(layout.walls):
        expected[cell, wall_id] = 1
    for colour, cell in enumerate(layout.colours):
        expected[cell, w + colour] = 1
    row, col = info["agent_pos"]
    expected[row * config.size + col, w + o] = 1
    np.testing.assert_array_equal(grid, expected)


@pytest.mark.parametrize("seed", range(5))
def test_observation_is_a_cell_major_one_hot_of_walls_colours_and_agent(seed):
    env = gym.make("HierGrid-v0")
    obs, info = env.reset(seed=seed)
    policy = _random_policy(seed)
    for _ in range(20):
        assert obs.shape == (637,) and obs.dtype == np.uint8
        assert obs in env.observation_space
        grid = obs.reshape(49, 13)
        assert grid[:, :4].sum(axis=0).tolist() == [1, 1, 1, 1]  # one cell per wall id
        assert grid[:, 4:12].sum(axis=0).tolist() == [1] * 8  # one cell per colour
        assert grid[:, 12].sum() == 1  # one agent
        assert grid[:, :12].sum(axis=1).max() == 1  # no two objects share a cell
        _assert_obs_matches_state(obs, env, info)
        obs, _, terminated, truncated, info = env.step(policy(obs, info))
        if terminated or truncated:
            obs, info = env.reset()


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"task": "pretrain"},
        {"task": (3, 1, 3)},
        {"size": 5, "num_colors": 3, "num_walls": 0, "task": [2, 0]},
    ],
    ids=["default", "pretrain", "custom-task", "custom-config"],
)
def test_check_env_passes_without_warnings(kwargs, monkeypatch):
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")  # check_env also opens the human mode
    env = gym.make("HierGrid-v0", **kwargs)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped)
    assert [str(w.message) for w in caught] == []
    env.close()


def _episode(env, seed, actions):
    """Observations, rewards and infos of an episode played with a fixed action list."""
    obs, info = env.reset(seed=seed)
    record = [(obs, 0.0, info)]
    for action in actions:
        obs, reward, terminated, truncated, info = env.step(action)
        record.append((obs, reward, info))
        if terminated or truncated:
            break
    return record


def _assert_same(record_a, record_b):
    assert len(record_a) == len(record_b)
    for (obs_a, reward_a, info_a), (obs_b, reward_b, info_b) in zip(record_a, record_b):
        np.testing.assert_array_equal(obs_a, obs_b)
        assert reward_a == reward_b
        assert info_a.keys() == info_b.keys()
        for key in info_a:
            np.testing.assert_array_equal(info_a[key], info_b[key])


@pytest.mark.parametrize("task", ["post", "pretrain"])
def test_same_seed_gives_the_same_episode(task):
    actions = np.random.default_rng(1).integers(4, size=100).tolist()
    for seed in (0, 7, 2**40):
        _assert_same(
            _episode(HierGridEnv(task=task), seed, actions),
            _episode(HierGridEnv(task=task), seed, actions),
        )


def test_different_seeds_give_different_layouts():
    starts = {HierGridEnv(task="pretrain").reset(seed=seed)[0].tobytes() for seed in range(20)}
    assert len(starts) == 20


def test_reset_without_seed_continues_the_seeded_stream():
    env = HierGridEnv(task="pretrain")
    first = [env.reset(seed=5)[0]] + [env.reset()[0] for _ in range(3)]
    assert len({obs.tobytes() for obs in first}) == 4  # each episode is new
    fresh = HierGridEnv(task="pretrain")
    again = [fresh.reset(seed=5)[0]] + [fresh.reset()[0] for _ in range(3)]
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(env.reset(seed=5)[0], first[0])  # a seed restarts it


def test_unseeded_envs_draw_different_streams():
    starts = {HierGridEnv(task="pretrain").reset()[0].tobytes() for _ in range(5)}
    assert len(starts) > 1


def test_make_with_module_prefix_imports_the_package_on_demand():
    code = (
        "import sys, gymnasium as gym\n"
        "assert 'hier_envs' not in sys.modules\n"
        "env = gym.make('hier_envs:HierGrid-v0')\n"
        "obs, info = env.reset(seed=0)\n"
        "env.step(0)\n"
        "print(env.spec.id, obs.shape)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["HierGrid-v0", "(637,)"]


def test_registration_names_both_entry_points():
    spec = gym.spec("HierGrid-v0")
    assert spec.entry_point == "hier_envs.grid.env:HierGridEnv"
    assert spec.vector_entry_point == "hier_envs.grid.vector:HierGridVectorEnv"
    env = gym.make("HierGrid-v0", task="pretrain")
    assert env.spec.id == "HierGrid-v0"
    assert isinstance(env.unwrapped, HierGridEnv)
    assert env.spec.kwargs == {"task": "pretrain"}


@pytest.mark.parametrize("clone", ["pickle", "deepcopy"])
def test_a_cloned_env_continues_exactly_like_the_original(clone):
    env = gym.make("HierGrid-v0")
    env.reset(seed=3)
    env.step(0)
    twin = pickle.loads(pickle.dumps(env)) if clone == "pickle" else copy.deepcopy(env)
    actions = np.random.default_rng(0).integers(4, size=300).tolist()
    for action in actions:
        a, b = env.step(action), twin.step(action)
        np.testing.assert_array_equal(a[0], b[0])
        assert a[1:4] == b[1:4]
        assert a[4]["progress"] == b[4]["progress"]
        if a[2] or a[3]:
            np.testing.assert_array_equal(env.reset()[0], twin.reset()[0])


def test_rgb_array_render_is_an_image_that_shows_the_agent_move():
    env = gym.make("HierGrid-v0", render_mode="rgb_array")
    env.reset(seed=0)
    frame = env.render()
    assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3
    assert frame.shape[0] > 0 and frame.shape[1] > 0
    np.testing.assert_array_equal(env.render(), frame)  # same state, same picture
    base = env.unwrapped
    moving = oracle_optimal_actions(base.layout, 7, base.agent_cell, base.progress)
    env.step(min(moving))
    moved = env.render()
    assert moved.shape == frame.shape
    assert not np.array_equal(moved, frame)


def test_render_before_reset_raises():
    env = HierGridEnv(render_mode="rgb_array")
    with pytest.raises(RuntimeError, match="reset"):
        env.render()


def test_human_render_mode_runs_headless(monkeypatch):
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    env = gym.make("HierGrid-v0", render_mode="human")
    env.reset(seed=0)
    for action in (0, 1, 2):
        _, _, terminated, truncated, _ = env.step(action)
        assert env.render() is None
        if terminated or truncated:
            env.reset()
    env.close()
    env.close()  # closing twice is harmless


@pytest.mark.parametrize("task", ["post", "pretrain"])
def test_every_layout_is_solvable_within_max_steps(task):
    env = HierGridEnv(task=task)
    lengths = []
    for seed in range(150):
        env.reset(seed=seed)
        layout = env.layout
        cells = [*layout.walls, *layout.colours, layout.agent]
        assert len(set(cells)) == 13 and all(0 <= c < 49 for c in cells)
        assert layout.task in (GRID_PRETRAINING if task == "pretrain" else (GRID_POST_TRAINING,))
        lengths.append(oracle_path_length(layout, 7))
    assert max(lengths) <= 100
    assert len(set(lengths)) > 5  # layouts vary


def test_pretrain_draws_every_pretraining_task():
    env = HierGridEnv(task="pretrain")
    env.reset(seed=0)
    seen = {env.layout.task}
    for _ in range(300):
        env.reset()
        seen.add(env.layout.task)
    assert seen == set(GRID_PRETRAINING)


@pytest.mark.parametrize(
    ("size", "task_length"), [(2, 1), (3, 2), (5, 7), (7, 12), (8, 25), (8, 60)]
)
def test_rgb_frames_of_any_config_suit_video_encoders(size, task_length):
    # Videos are encoded in 16x16 macro blocks: frames must need no resizing.
    env = HierGridEnv(
        task=[i % 2 for i in range(task_length)],
        size=size,
        num_colors=2,
        num_walls=1,
        max_steps=20 * task_length,
        render_mode="rgb_array",
    )
    env.reset(seed=0)
    frame = env.render()
    assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3
    assert frame.shape[0] % 16 == 0 and frame.shape[1] % 16 == 0
    assert frame.shape[0] > frame.shape[1]  # the board, and the task strip below it


def test_render_without_a_render_mode_warns_and_returns_none():
    env = HierGridEnv()
    env.reset(seed=0)
    with pytest.warns(UserWarning, match="render_mode"):
        assert env.render() is None
