"""The shortest-path expert: it solves every task optimally, is uniform over optimal moves
(or, with ``ties="ordered"``, takes the first of them), and its exploration never fails
the task; the same for the batched expert."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from conftest import (
    DOWN,
    LEFT,
    RIGHT,
    env_from_picture,
    oracle_optimal_actions,
    oracle_path_length,
    rollout,
)

from hier_envs.experts import make_expert
from hier_envs.grid import HierGridEnv
from hier_envs.grid.expert import BatchedGridExpert, GridExpert
from hier_envs.tasks import GRID_POST_TRAINING, GRID_PRETRAINING

ALL_TASKS = [*GRID_PRETRAINING, GRID_POST_TRAINING]
TASK_IDS = ["-".join(map(str, task)) for task in ALL_TASKS]


@pytest.mark.parametrize("task", ALL_TASKS, ids=TASK_IDS)
def test_expert_solves_the_task_in_the_fewest_steps(task):
    env = gym.make("HierGrid-v0", task=task)
    expert = make_expert(env, seed=0)
    assert isinstance(expert, GridExpert)
    for seed in range(30):
        env.reset(seed=seed)
        shortest = oracle_path_length(env.unwrapped.layout, 7)
        _, transitions = rollout(env, expert.act, seed=seed)
        *_, reward, terminated, truncated, info = transitions[-1]
        assert (reward, terminated, truncated, info["success"]) == (1.0, True, False, True)
        # Success in exactly the shortest length means every action was optimal.
        assert len(transitions) == shortest


def _states(env, seeds, walk):
    """Env states reached by short random walks that avoid wrong colours."""
    rng = np.random.default_rng(0)
    walker = GridExpert(env, eps=1.0, seed=1)
    for seed in seeds:
        env.reset(seed=seed)
        for _ in range(int(rng.integers(walk))):
            _, _, terminated, truncated, _ = env.step(walker.act())
            if terminated or truncated:
                break
        else:
            yield


def test_expert_optimal_actions_are_exactly_the_shortest_path_moves():
    env = HierGridEnv(task="pretrain")
    expert = GridExpert(env)
    tied = 0
    for _ in _states(env, range(300), walk=30):
        expected = oracle_optimal_actions(env.layout, 7, env.agent_cell, env.progress)
        assert set(expert.optimal_actions()) == expected
        if expected:  # (a random walk can strand the agent: see the tests below)
            assert expert.act() in expected
        tied += len(expected) > 1
    assert tied >= 30  # ties were exercised


def _open_board():
    """A 5x5 board with the agent in a corner: DOWN and RIGHT both start a shortest path."""
    return env_from_picture(
        """
        @....
        .....
        ..0..
        .....
        ....1
        """,
        task=(0, 1),
    )


def test_expert_picks_uniformly_among_tied_optimal_moves():
    env, obs, info = _open_board()
    expert = make_expert(env, seed=0)
    choices = [expert.act(obs, info) for _ in range(400)]
    assert set(choices) == {DOWN, RIGHT}
    assert 150 <= choices.count(DOWN) <= 250


def test_ordered_expert_takes_the_first_optimal_move_whatever_its_seed():
    env = HierGridEnv(task="pretrain")
    for seed in (0, 1):
        expert = make_expert(env, seed=seed, ties="ordered")
        for _ in _states(env, range(100), walk=30):
            optimal = expert.optimal_actions()
            if optimal:
                assert expert.act() == min(optimal)


def test_ordered_expert_still_explores_at_random():
    env, obs, info = _open_board()
    assert {make_expert(env, seed=0, ties="ordered").act(obs, info) for _ in range(50)} == {DOWN}
    explorer = make_expert(env, eps=1.0, seed=0, ties="ordered")
    assert len({explorer.act(obs, info) for _ in range(50)}) > 1


def test_ties_must_be_known():
    with pytest.raises(ValueError, match="ties must be one of"):
        make_expert(HierGridEnv(), ties="random")


def test_expert_with_the_same_seed_makes_the_same_choices():
    def actions(seed):
        env = HierGridEnv()
        expert = make_expert(env, eps=0.3, seed=seed)
        return [t[0] for t in rollout(env, expert.act, seed=0)[1]]

    assert actions(4) == actions(4)
    assert actions(4) != actions(5)


def _explore_episodes(eps, seeds):
    """Play ``seeds`` with the exploring expert; returns (ends, number of suboptimal actions)."""
    env = HierGridEnv(task="pretrain")
    expert = make_expert(env, eps=eps, seed=0)
    ends, suboptimal = [], 0
    for seed in seeds:
        obs, info = env.reset(seed=seed)
        while True:
            best = oracle_optimal_actions(env.layout, 7, env.agent_cell, env.progress)
            action = expert.act(obs, info)
            suboptimal += action not in best
            obs, _, terminated, truncated, info = env.step(action)
            if terminated or truncated:
                ends.append(
                    "success" if info["success"] else "failure" if terminated else "time-out"
                )
                break
    return ends, suboptimal


def test_fully_exploring_expert_never_steps_onto_a_wrong_colour():
    ends, suboptimal = _explore_episodes(1.0, range(40))
    assert "failure" not in ends
    assert suboptimal > 0


def test_exploring_expert_never_steps_onto_a_wrong_colour():
    ends, suboptimal = _explore_episodes(0.3, range(40))
    assert ends.count("success") >= 20 and suboptimal > 0
    assert "failure" not in ends, f"seed {ends.index('failure')} ended in failure"


def test_expert_stranded_by_exploration_takes_only_safe_actions():
    # After visiting 0, a step right (a safe exploration move) enters a pocket: its
    # exits are 0 (now a wrong colour), a wall and the edges. Only LEFT fails.
    env, _, _ = env_from_picture(
        """
        @0.
        .2#
        ..1
        """,
        task=(0, 1),
    )
    env.step(RIGHT)
    env.step(RIGHT)
    expert = make_expert(env, eps=0.3, seed=0)
    assert expert.optimal_actions() == []
    assert LEFT not in {expert.act() for _ in range(100)}


# --- the batched expert -------------------------------------------------------------------


def _vector(num_envs, **kwargs):
    return gym.make_vec(
        "HierGrid-v0", num_envs=num_envs, vectorization_mode="vector_entry_point", **kwargs
    )


def test_batched_expert_solves_pretraining_tasks_in_the_fewest_steps():
    envs = _vector(256, task="pretrain")
    base = envs.unwrapped
    expert = make_expert(envs, seed=0)
    assert isinstance(expert, BatchedGridExpert)
    envs.reset(seed=0)
    shortest = [oracle_path_length(base.layout(i), 7) for i in range(256)]
    done = np.zeros(256, dtype=bool)
    lengths, successes = [], []
    for _ in range(300):
        actions = expert.act()
        assert actions.shape == (256,)
        _, reward, terminated, truncated, info = envs.step(actions)
        for i in np.flatnonzero(done):  # autoreset: a new episode started
            shortest[i] = oracle_path_length(base.layout(i), 7)
        for i in np.flatnonzero(terminated | truncated):
            successes.append(bool(info["success"][i] and reward[i] == 1.0 and terminated[i]))
            lengths.append((int(base.steps[i]), shortest[i]))
        done = terminated | truncated
    assert len(successes) >= 1000
    assert all(successes)
    assert all(steps == best for steps, best in lengths)


def test_batched_expert_picks_among_tied_optimal_moves():
    envs = _vector(64, task="pretrain")
    base = envs.unwrapped
    envs.reset(seed=1)
    expert = make_expert(envs, seed=0)
    choices = np.stack([expert.act() for _ in range(100)])  # (100, 64)
    tied = 0
    for i in range(64):
        expected = oracle_optimal_actions(base.layout(i), 7, int(base.agent_cell[i]), 0)
        assert set(choices[:, i].tolist()) == expected
        tied += len(expected) > 1
    assert tied >= 10


def test_batched_exploring_expert_never_steps_onto_a_wrong_colour():
    envs = _vector(256, task="post")
    expert = make_expert(envs, eps=0.3, seed=0)
    envs.reset(seed=0)
    successes = 0
    for _ in range(200):
        _, _, terminated, _, info = envs.step(expert.act())
        assert not (terminated & ~info["success"]).any()
        successes += int(terminated.sum())
    assert successes > 0


def test_batched_ordered_expert_takes_the_first_optimal_move_and_still_succeeds():
    envs = _vector(64, task="pretrain")
    base = envs.unwrapped
    envs.reset(seed=1)
    expert = make_expert(envs, seed=0, ties="ordered")
    ends, done = [], np.zeros(64, dtype=bool)
    for _ in range(100):
        actions = expert.act()
        for i in np.flatnonzero(~done):  # (a finished episode's action only resets its env)
            progress = int(base.progress[i])
            expected = oracle_optimal_actions(base.layout(i), 7, int(base.agent_cell[i]), progress)
            assert actions[i] == min(expected)
        _, _, terminated, truncated, info = envs.step(actions)
        done = terminated | truncated
        ends.extend(info["success"][done].tolist())
    assert len(ends) >= 64 and all(ends)
