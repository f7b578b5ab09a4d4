"""Bad settings and bad actions raise errors that say what is wrong and what is allowed."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from hier_envs.experts import make_expert
from hier_envs.grid import HierGridEnv, HierGridVectorEnv

BAD_SETTINGS = [
    ({"task": "postt"}, r"Unknown task 'postt': use 'post', 'pretrain' or a sequence"),
    ({"task": ""}, r"Unknown task ''"),
    ({"task": ()}, r"task is empty"),
    ({"task": []}, r"task is empty"),
    ({"task": 3}, r"task must be 'post', 'pretrain' or a sequence of colour ids, got 3"),
    ({"task": (0, 8)}, r"uses colour 8, but num_colors=8 allows only colour ids 0\.\.7"),
    ({"task": (0, -1)}, r"Colour ids must be in \[0, 8\), got -1"),
    ({"task": (0, 1.5)}, r"Colour ids must be integers in \[0, 8\), got 1\.5"),
    ({"task": (0, 1.0)}, r"Colour ids must be integers in \[0, 8\), got 1\.0"),
    ({"task": ["a"]}, r"Colour ids must be integers in \[0, 8\), got 'a'"),
    ({"task": (0, None)}, r"Colour ids must be integers"),
    ({"task": (True, 1)}, r"Colour ids must be integers, got the boolean True"),
    ({"task": (0, np.bool_(False))}, r"Colour ids must be integers, got the boolean"),
    (
        {"task": (0, 5), "num_colors": 5},
        r"uses colour 5, but num_colors=5 allows only colour ids 0\.\.4",
    ),
    ({"task": "post", "num_colors": 7}, r"uses colour 7, but num_colors=7"),
    ({"task": "pretrain", "num_colors": 7}, r"uses colour 7, but num_colors=7"),
    ({"task": "pretrain", "num_colors": 4}, r"uses colour 7, but num_colors=4"),
    ({"size": 3}, r"4 walls \+ 8 colours \+ the agent = 13 objects do not fit in 3x3 = 9 cells"),
    ({"size": 3, "num_walls": 1, "num_colors": 8, "task": (0,)}, r"= 10 objects do not fit in 3x3"),
    ({"size": 1}, r"size must be >= 2, got 1"),
    ({"size": 0}, r"size must be >= 2, got 0"),
    ({"size": 9}, r"size must be <= 8 \(boards are 64-bit\), got 9"),
    ({"size": 7.0}, r"size must be an integer, got 7\.0"),
    ({"size": True}, r"size must be an integer, got True"),
    ({"num_colors": 0, "task": (0,)}, r"num_colors must be >= 1, got 0"),
    ({"num_walls": -1}, r"num_walls must be >= 0, got -1"),
    ({"num_walls": "4"}, r"num_walls must be an integer, got '4'"),
    ({"max_steps": 11}, r"max_steps=11 is shorter than the task \(12 colours"),
    ({"max_steps": 5, "task": "pretrain"}, r"max_steps=5 is shorter than the task \(6 colours"),
    ({"max_steps": 0}, r"max_steps must be >= 1, got 0"),
    ({"max_steps": 100.5}, r"max_steps must be an integer"),
]


@pytest.mark.parametrize(("kwargs", "message"), BAD_SETTINGS, ids=[str(k) for k, _ in BAD_SETTINGS])
def test_bad_settings_raise_value_error_for_the_single_env(kwargs, message):
    with pytest.raises(ValueError, match=message):
        HierGridEnv(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"), BAD_SETTINGS[::3], ids=[str(k) for k, _ in BAD_SETTINGS[::3]]
)
def test_bad_settings_raise_value_error_for_the_vector_env(kwargs, message):
    with pytest.raises(ValueError, match=message):
        HierGridVectorEnv(num_envs=2, **kwargs)


def test_bad_settings_raise_value_error_through_make():
    with pytest.raises(ValueError, match="Unknown task 'nope'"):
        gym.make("HierGrid-v0", task="nope")
    with pytest.raises(ValueError, match="do not fit"):
        gym.make_vec("HierGrid-v0", num_envs=2, vectorization_mode="vector_entry_point", size=3)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"task": (0, 0, 0)},
        {"task": (np.int64(7), 0)},
        {"task": np.array([3, 2])},
        {"size": np.int64(6)},
        {"size": 8, "num_colors": 10, "task": (9, 8)},
        {"size": 2, "num_walls": 0, "num_colors": 3, "task": (2,)},
        {"size": 3, "num_walls": 0, "num_colors": 8, "task": (0,)},  # every cell taken
        {"task": (0, 1), "size": 2, "num_walls": 0, "num_colors": 2, "max_steps": 2},
    ],
)
def test_good_edge_settings_are_accepted(kwargs):
    env = HierGridEnv(**kwargs)
    assert env.config.tasks[0] == tuple(int(c) for c in env.config.tasks[0])
    env.reset(seed=0)
    env.step(0)


@pytest.mark.parametrize("render_mode", ["rgb", "HUMAN", "ansi", ""])
def test_unknown_render_mode_raises(render_mode):
    with pytest.raises(
        ValueError, match=r"render_mode must be None or one of \['human', 'rgb_array'\]"
    ):
        HierGridEnv(render_mode=render_mode)


def test_vector_env_rejects_the_human_render_mode():
    with pytest.raises(ValueError, match=r"render_mode must be None or one of \['rgb_array'\]"):
        HierGridVectorEnv(num_envs=2, render_mode="human")


@pytest.mark.parametrize("num_envs", [0, -1, 1.5, True, "4", None])
def test_vector_env_rejects_a_bad_num_envs(num_envs):
    with pytest.raises(ValueError, match=r"num_envs must be a positive integer, got"):
        HierGridVectorEnv(num_envs=num_envs)


def test_vector_env_rejects_a_seed_list_of_the_wrong_length():
    envs = HierGridVectorEnv(num_envs=3)
    with pytest.raises(ValueError, match=r"seed must be an int or 3 ints"):
        envs.reset(seed=[1, 2])


@pytest.mark.parametrize("action", [4, -1, 1.5, "up", None, np.int64(4), 10**20])
def test_single_env_rejects_an_invalid_action(action):
    env = HierGridEnv()
    env.reset(seed=0)
    with pytest.raises(
        ValueError,
        match=r"Invalid action .*expected an integer in \[0, 4\) \(0=up, 1=down, 2=left, 3=right\)",
    ):
        env.step(action)
    env.step(0)  # the episode goes on after a rejected action


@pytest.mark.parametrize(
    "action", [1.0, np.float64(2.0), np.array([1])], ids=["1.0", "float64-2.0", "array-[1]"]
)
def test_single_env_rejects_a_non_integer_action_equal_to_a_valid_one(action):
    env = HierGridEnv()
    env.reset(seed=0)
    with pytest.raises(ValueError, match="Invalid action"):
        env.step(action)


@pytest.mark.parametrize(
    ("actions", "message"),
    [
        (
            np.zeros(4, dtype=np.int64),
            r"actions must be an integer array of shape \(3,\), got int64 \(4,\)",
        ),
        (np.zeros((3, 1), dtype=np.int64), r"of shape \(3,\), got int64 \(3, 1\)"),
        (0, r"of shape \(3,\), got int64 \(\)"),
        ([0, 1], r"of shape \(3,\)"),
        (np.zeros(3), r"actions must be an integer array of shape \(3,\), got float64"),
        (np.zeros(3, dtype=bool), r"integer array .* got bool"),
        (np.array([0, 4, 1]), r"Invalid actions \[4\]: use 0\.\.3"),
        (np.array([-1, 0, 9]), r"Invalid actions \[-1  9\]: use 0\.\.3"),
    ],
    ids=["too-long", "2d", "scalar", "short-list", "float", "bool", "four", "negative"],
)
def test_vector_env_rejects_bad_actions(actions, message):
    envs = HierGridVectorEnv(num_envs=3)
    envs.reset(seed=0)
    with pytest.raises(ValueError, match=message):
        envs.step(actions)
    envs.step(np.zeros(3, dtype=np.int64))  # the envs go on after rejected actions


def test_vector_env_step_before_reset_raises():
    with pytest.raises(RuntimeError, match="reset"):
        HierGridVectorEnv(num_envs=2).step(np.zeros(2, dtype=np.int64))


def test_make_expert_rejects_an_env_it_does_not_know():
    env = gym.make("CartPole-v1")
    with pytest.raises(
        TypeError, match=r"No expert for CartPoleEnv: make_expert takes a hier-envs env"
    ):
        make_expert(env)


@pytest.mark.parametrize("eps", [-0.1, 1.5, float("nan")])
@pytest.mark.parametrize("batched", [False, True], ids=["single", "vector"])
def test_make_expert_rejects_eps_outside_zero_one(eps, batched):
    env = HierGridVectorEnv(num_envs=2) if batched else HierGridEnv()
    with pytest.raises(ValueError, match=r"eps must be a probability in \[0, 1\], got"):
        make_expert(env, eps=eps)


def test_expert_before_reset_raises():
    expert = make_expert(HierGridEnv())
    with pytest.raises(RuntimeError, match="Reset the env"):
        expert.act()
