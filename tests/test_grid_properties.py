"""Invariants of HierGrid-v0 over random seeds and random action sequences (hypothesis).

Actions are drawn as 0..3 or ``None`` (the expert's move), so runs also reach the later
colours of a task and its completion, not only early failures.
"""

from __future__ import annotations

from conftest import agent_cells
from hypothesis import given, settings
from hypothesis import strategies as st

from hier_envs.grid import HierGridEnv
from hier_envs.grid.expert import GridExpert

CONFIGS = [
    {"task": "post"},
    {"task": "pretrain"},
    {"task": (2, 2, 5), "max_steps": 15},
    {"task": (0, 1, 0), "size": 4, "num_colors": 2, "num_walls": 3, "max_steps": 12},
]

seeds = st.integers(0, 2**63 - 1)
# Mostly expert moves: episodes get far enough to succeed or time out.
action_lists = st.lists(st.sampled_from([None] * 12 + [0, 1, 2, 3]), min_size=60, max_size=300)
configs = st.sampled_from(CONFIGS)


@settings(max_examples=50, deadline=None)
@given(config=configs, seed=seeds, actions=action_lists)
def test_invariants_hold_along_random_play(config, seed, actions):
    env = HierGridEnv(**config)
    expert = GridExpert(env, seed=0)
    size, max_steps = env.config.size, env.config.max_steps
    obs, info = env.reset(seed=seed)
    progress, steps = 0, 0
    for action in actions:
        walls = set(env.layout.walls)
        before = env.agent_cell
        obs, reward, terminated, truncated, info = env.step(
            expert.act() if action is None else action
        )
        steps += 1
        task = env.layout.task

        assert obs in env.observation_space
        (cell,) = agent_cells(obs, env)
        assert divmod(int(cell), size) == tuple(int(x) for x in info["agent_pos"])
        assert int(cell) not in walls
        entered = env.layout.colours.index(cell) if cell in env.layout.colours else -1
        assert info["visited"] == (entered if cell != before else -1)

        assert progress <= info["progress"] <= len(task)
        assert info["progress"] - progress in (0, 1)
        progress = info["progress"]
        assert info["success"] == (progress == len(task))

        assert reward in (0.0, 1.0)
        assert (reward == 1.0) == (terminated and info["success"])
        assert info["success"] <= terminated
        assert not (terminated and truncated)
        assert steps == env.steps <= max_steps
        assert truncated == (not terminated and steps == max_steps)

        if terminated or truncated:
            obs, info = env.reset()
            progress, steps = 0, 0
            assert info["progress"] == 0 and not info["success"]
            (cell,) = agent_cells(obs, env)
            assert int(cell) == env.layout.agent


@settings(max_examples=50, deadline=None)
@given(config=configs, seed=seeds)
def test_reset_places_every_object_on_its_own_cell(config, seed):
    env = HierGridEnv(**config)
    obs, info = env.reset(seed=seed)
    cfg = env.config
    grid = obs.reshape(cfg.size**2, cfg.num_features)
    assert grid.sum(axis=1).max() == 1  # one object per cell at most
    assert grid.sum(axis=0).tolist() == [1] * cfg.num_features  # every object once
    assert info["progress"] == 0 and not info["success"]
    assert info["task"] in cfg.tasks
