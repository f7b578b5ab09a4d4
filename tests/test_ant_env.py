"""HierAnt-v0: rules (torso placed by hand), observation, determinism, errors, rendering."""

from __future__ import annotations

import warnings

import gymnasium as gym
import mujoco
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import hier_envs  # noqa: F401
from hier_envs.ant.env import HierAntEnv

ZERO = np.zeros(8, dtype=np.float32)


def place_torso(env: HierAntEnv, cell: int, height: float | None = None) -> None:
    """Teleport the torso to the centre of ``cell`` (and optionally to ``height``)."""
    data = env.data
    data.qpos[:2] = env.arena.centres[cell]
    if height is not None:
        data.qpos[2] = height
    data.qvel[:] = 0.0
    mujoco.mj_forward(env.model, data)


@pytest.fixture
def env() -> HierAntEnv:
    env = HierAntEnv(task=(0, 1, 2))
    env.reset(seed=0)
    return env


def test_registered_and_made_by_id():
    env = gym.make("HierAnt-v0")
    assert isinstance(env.unwrapped, HierAntEnv)
    obs, info = env.reset(seed=0)
    assert info["task"] == (0, 1, 2, 3)
    assert env.observation_space.contains(obs)


def test_check_env_passes_without_warnings():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(gym.make("HierAnt-v0", task="pretrain").unwrapped, skip_render_check=True)
    assert [str(w.message) for w in caught] == []


def test_visiting_the_task_in_order_succeeds(env):
    for i, colour in enumerate((0, 1, 2)):
        place_torso(env, env.layout.colours[colour])
        obs, reward, terminated, truncated, info = env.step(ZERO)
        assert info["progress"] == i + 1
        assert reward == (1.0 if i == 2 else 0.0)
        assert terminated == (i == 2) and not truncated
    assert info["success"]


def test_a_wrong_colour_ends_the_episode_without_reward(env):
    place_torso(env, env.layout.colours[2])
    _, reward, terminated, _, info = env.step(ZERO)
    assert terminated and reward == 0.0 and not info["success"]
    assert info["visited"] == 2


def test_free_play_keeps_going_after_a_wrong_colour():
    env = HierAntEnv(task=(0, 1, 2), end_on_wrong_colour=False)
    _, info = env.reset(seed=0)
    assert info["visited"] == -1
    for colour, progress in ((2, 0), (0, 1), (0, 1), (1, 2)):
        place_torso(env, env.layout.colours[colour])
        _, reward, terminated, _, info = env.step(ZERO)
        assert not terminated and reward == 0.0 and info["progress"] == progress
    assert info["visited"] == 1
    _, _, _, _, info = env.step(ZERO)  # still on colour 1: no new visit
    assert info["visited"] == -1


def test_entering_a_wall_cell_ends_the_episode(env):
    place_torso(env, env.layout.walls[0])
    _, reward, terminated, _, _ = env.step(ZERO)
    assert terminated and reward == 0.0


def test_staying_on_a_colour_is_one_visit(env):
    place_torso(env, env.layout.colours[0])
    env.step(ZERO)
    _, _, terminated, _, info = env.step(ZERO)
    assert info["progress"] == 1 and not terminated


def test_torso_above_the_healthy_range_ends_the_episode(env):
    env.data.qpos[2] = 1.5
    mujoco.mj_forward(env.model, env.data)
    _, reward, terminated, _, _ = env.step(ZERO)
    assert terminated and reward == 0.0


def test_time_limit_truncates():
    env = HierAntEnv(task=(0, 1), max_steps=3)
    env.reset(seed=1)
    ends = [env.step(ZERO)[2:4] for _ in range(3)]
    assert ends == [(False, False), (False, False), (False, True)]
    with pytest.raises(RuntimeError, match="reset"):
        env.step(ZERO)


def test_observation_layout(env):
    obs, *_ = env.step(ZERO)
    xy, half = env.data.qpos[:2], env.arena.reach
    np.testing.assert_allclose(obs[27:29], xy / half, atol=1e-6)
    centres = env.arena.centres
    objects = centres[list(env.layout.colours + env.layout.walls)]
    np.testing.assert_allclose(obs[29:39].reshape(5, 2), (objects - xy) / half, atol=1e-6)
    local = (xy - centres[env.cell]) / (env.arena.cell_size / 2)
    np.testing.assert_allclose(obs[39:41], local, atol=1e-6)
    assert np.all(np.abs(obs[39:41]) <= 1.0) and np.all(np.abs(obs[27:29]) <= 1.0)


def test_observations_stay_finite_under_random_torques():
    env = HierAntEnv(task="pretrain")
    env.reset(seed=2)
    env.action_space.seed(2)
    for _ in range(300):
        obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
        assert np.all(np.isfinite(obs)) and env.observation_space.contains(obs)
        if terminated or truncated:
            env.reset()


def test_same_seed_same_episode():
    def episode(seed):
        env = HierAntEnv(task="pretrain")
        obs, info = env.reset(seed=seed)
        rng = np.random.default_rng(0)
        trace = [obs]
        for _ in range(30):
            obs, _, terminated, truncated, _ = env.step(rng.uniform(-1, 1, 8).astype(np.float32))
            trace.append(obs)
            if terminated or truncated:
                break
        return info["task"], np.array(trace)

    task_a, trace_a = episode(5)
    task_b, trace_b = episode(5)
    assert task_a == task_b
    np.testing.assert_array_equal(trace_a, trace_b)
    assert not np.array_equal(trace_a, episode(6)[1])


def test_reset_starts_inside_a_free_cell_with_random_yaw():
    env = HierAntEnv()
    yaws = []
    for seed in range(10):
        env.reset(seed=seed)
        assert env.cell == env.layout.agent
        assert env.cell not in env.layout.colours + env.layout.walls
        w, z = env.data.qpos[3], env.data.qpos[6]
        yaws.append(2 * np.arctan2(z, w))
    assert np.ptp(yaws) > 1.0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"cell_size": 0.0}, "cell_size"),
        ({"task": (0, 4)}, "colour 4"),
        ({"task": "nope"}, "Unknown task"),
        ({"num_walls": 20}, "do not fit"),
        ({"render_mode": "ascii"}, "render_mode"),
    ],
)
def test_bad_settings_raise_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        HierAntEnv(**kwargs)


@pytest.mark.parametrize("action", [np.zeros(7), np.full(8, 1.5), np.full(8, np.nan)])
def test_bad_actions_raise_clear_errors(env, action):
    with pytest.raises(ValueError, match="torques in \\[-1, 1\\]"):
        env.step(action)


def test_rgb_array_shows_the_arena():
    env = HierAntEnv(render_mode="rgb_array", width=160, height=120)
    env.reset(seed=0)
    frame = env.render()
    assert frame.shape == (120, 160, 3) and frame.dtype == np.uint8
    assert frame.std() > 20  # tiles, walls and the ant, not a blank image
    env.close()


def test_async_vector_env_steps_ants_in_processes():
    envs = gym.make_vec("HierAnt-v0", num_envs=2, vectorization_mode="async", task="pretrain")
    obs, info = envs.reset(seed=0)
    assert obs.shape == (2, 41)
    obs, reward, terminated, truncated, info = envs.step(np.zeros((2, 8), dtype=np.float32))
    assert obs.shape == (2, 41) and np.all(np.isfinite(obs))
    envs.close()


def test_human_mode_opens_a_pygame_window(monkeypatch):
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    env = gym.make("HierAnt-v0", render_mode="human", width=64, height=64)
    env.reset(seed=0)
    env.step(ZERO)
    env.close()


@pytest.mark.parametrize(
    "environ, platform, egl, expected",
    [
        ({}, "linux", "libEGL.so.1", "egl"),
        ({}, "linux", None, "disable"),  # importing MuJoCo would fail on an EGL backend
        ({"DISPLAY": ":0"}, "linux", None, None),
        ({"MUJOCO_GL": "osmesa"}, "linux", "libEGL.so.1", None),  # the user's choice stands
        ({}, "darwin", None, None),
    ],
)
def test_headless_machines_get_a_gl_backend_that_imports(environ, platform, egl, expected):
    from hier_envs import headless_gl_backend

    assert headless_gl_backend(environ, platform, lambda name: egl) == expected


def test_rendering_with_gl_disabled_says_how_to_enable_it(monkeypatch):
    monkeypatch.setenv("MUJOCO_GL", "disable")
    env = gym.make("HierAnt-v0", render_mode="rgb_array")
    env.reset(seed=0)
    with pytest.raises(RuntimeError, match="MUJOCO_GL=egl or osmesa"):
        env.render()
