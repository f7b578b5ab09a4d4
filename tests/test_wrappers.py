"""Observation wrappers: the grid as an image, the ant's vector as named parts, and
Gymnasium's own wrappers (FlattenObservation, AddRenderObservation) on both envs."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.wrappers import AddRenderObservation, FlattenObservation

import hier_envs  # noqa: F401
from hier_envs.wrappers import AntDictObservation, GridImageObservation


def _random_steps(env, steps, seed=0):
    """Yield ``(obs, info)`` of the reset and of ``steps`` random steps, as they happen
    (resetting at episode ends)."""
    obs, info = env.reset(seed=seed)
    env.action_space.seed(seed)
    yield obs, info
    for _ in range(steps):
        obs, _, terminated, truncated, info = env.step(env.action_space.sample())
        yield obs, info
        if terminated or truncated:
            yield env.reset()


@pytest.mark.parametrize("channels_first", [False, True])
def test_grid_image_is_the_one_hot_laid_out_on_the_board(channels_first):
    env = GridImageObservation(gym.make("HierGrid-v0", task="pretrain"), channels_first)
    assert env.observation_space.shape == ((13, 7, 7) if channels_first else (7, 7, 13))
    for image, info in _random_steps(env, 50):
        assert image in env.observation_space
        board = image.transpose(1, 2, 0) if channels_first else image
        layout = env.unwrapped.layout
        assert [tuple(np.argwhere(board[..., w])[0]) for w in range(4)] == [
            divmod(cell, 7) for cell in layout.walls
        ]
        assert [tuple(np.argwhere(board[..., 4 + c])[0]) for c in range(8)] == [
            divmod(cell, 7) for cell in layout.colours
        ]
        assert np.argwhere(board[..., 12]).tolist() == [list(info["agent_pos"])]


def test_grid_image_refuses_other_envs():
    with pytest.raises(ValueError, match="wraps HierGrid-v0 envs, got CartPoleEnv"):
        GridImageObservation(gym.make("CartPole-v1"))


def test_grid_pixels_through_add_render_observation():
    env = AddRenderObservation(gym.make("HierGrid-v0", render_mode="rgb_array"))
    obs, _ = env.reset(seed=0)
    assert obs.shape == env.observation_space.shape == env.render().shape
    assert np.array_equal(obs, env.render())


def test_ant_observation_is_already_flat_so_flatten_observation_is_the_identity():
    plain, flat = gym.make("HierAnt-v0"), FlattenObservation(gym.make("HierAnt-v0"))
    assert plain.observation_space == flat.observation_space
    assert isinstance(plain.observation_space, gym.spaces.Box)
    assert plain.observation_space.shape == (41,)
    for (a, _), (b, _) in zip(_random_steps(plain, 20), _random_steps(flat, 20), strict=True):
        assert np.array_equal(a, b)


def test_ant_dict_parts_say_what_they_hold_and_flatten_back_to_the_vector():
    plain = gym.make("HierAnt-v0")
    parts = AntDictObservation(gym.make("HierAnt-v0"))
    flat = FlattenObservation(AntDictObservation(gym.make("HierAnt-v0")))
    assert list(parts.observation_space) == ["proprio", "xy", "colours", "walls", "in_cell"]
    assert flat.observation_space == plain.observation_space
    runs = zip(_random_steps(plain, 20), _random_steps(parts, 20), _random_steps(flat, 20))
    for (vector, _), (named, info), (flattened, _) in runs:
        assert named in parts.observation_space
        assert np.array_equal(flattened, vector)
        base = parts.unwrapped
        reach = base.arena.reach
        assert np.allclose(named["xy"], info["xy"] / reach, atol=1e-6)
        expected = (base.arena.centres[list(base.layout.colours)] - info["xy"]) / reach
        assert np.allclose(named["colours"], expected, atol=1e-6)
        assert named["walls"].shape == (1, 2)


def test_ant_dict_has_no_walls_part_without_walls():
    env = AntDictObservation(gym.make("HierAnt-v0", num_walls=0))
    assert "walls" not in env.observation_space
    obs, _ = env.reset(seed=0)
    assert obs in env.observation_space


def test_ant_dict_refuses_other_envs():
    with pytest.raises(ValueError, match="wraps HierAnt-v0 envs, got HierGridEnv"):
        AntDictObservation(gym.make("HierGrid-v0"))
