"""The rules of gridworld-pinpad, each checked on a layout drawn by hand."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import DOWN, LEFT, RIGHT, UP, env_from_picture, install_layout

from hier_envs.grid import HierGridEnv
from hier_envs.tasks import GRID_POST_TRAINING


def test_install_layout_rebuilds_the_state_reset_builds():
    env = HierGridEnv(task="pretrain")
    obs, info = env.reset(seed=11)
    state = (env.layout, list(env._colour_at), env._wall_board, env.agent_cell, env._obs.copy())
    layout = env.layout
    obs_again, info_again = install_layout(
        env, layout.task, layout.walls, layout.colours, layout.agent
    )
    assert (env.layout, env._colour_at, env._wall_board, env.agent_cell) == state[:4]
    np.testing.assert_array_equal(env._obs, state[4])
    np.testing.assert_array_equal(obs_again, obs)
    assert info_again.keys() == info.keys()
    assert (env.progress, env.steps, env._over) == (0, 0, False)


def test_completing_the_task_gives_reward_one_and_terminates():
    env, _, _ = env_from_picture(
        """
        @01
        ...
        ...
        """,
        task=(0, 1),
    )
    _, reward, terminated, truncated, info = env.step(RIGHT)
    assert (reward, terminated, truncated, info["progress"], info["success"]) == (
        0.0,
        False,
        False,
        1,
        False,
    )
    _, reward, terminated, truncated, info = env.step(RIGHT)
    assert (reward, terminated, truncated, info["progress"], info["success"]) == (
        1.0,
        True,
        False,
        2,
        True,
    )
    assert isinstance(reward, float)


@pytest.mark.parametrize(
    "picture",
    ["@1.\n.0.\n2..", "@2.\n.0.\n1.."],
    ids=["later-colour-of-the-task", "colour-not-in-the-task"],
)
def test_stepping_onto_a_wrong_colour_terminates_without_reward(picture):
    env, _, _ = env_from_picture(picture, task=(0, 1))
    _, reward, terminated, truncated, info = env.step(RIGHT)
    assert (reward, terminated, truncated, info["progress"], info["success"]) == (
        0.0,
        True,
        False,
        0,
        False,
    )


PICTURE_WALL = """
    #@.
    .0.
    ...
    """


def test_moving_into_a_wall_leaves_the_agent_in_place():
    env, obs, info = env_from_picture(PICTURE_WALL, task=(0,))
    next_obs, reward, terminated, truncated, next_info = env.step(LEFT)
    np.testing.assert_array_equal(next_obs, obs)
    np.testing.assert_array_equal(next_info["agent_pos"], info["agent_pos"])
    assert (reward, terminated, truncated, env.steps) == (0.0, False, False, 1)


@pytest.mark.parametrize(
    ("picture", "actions"),
    [
        ("@..\n.0.\n...", (UP, LEFT)),
        ("..@\n.0.\n...", (UP, RIGHT)),
        ("...\n.0.\n@..", (DOWN, LEFT)),
        ("...\n.0.\n..@", (DOWN, RIGHT)),
    ],
    ids=["top-left", "top-right", "bottom-left", "bottom-right"],
)
def test_moving_off_the_grid_leaves_the_agent_in_place(picture, actions):
    env, obs, info = env_from_picture(picture, task=(0,))
    for action in actions:
        next_obs, reward, terminated, truncated, next_info = env.step(action)
        np.testing.assert_array_equal(next_obs, obs)
        np.testing.assert_array_equal(next_info["agent_pos"], info["agent_pos"])
        assert (reward, terminated, truncated) == (0.0, False, False)


@pytest.mark.parametrize("bump", [UP, LEFT], ids=["into-a-wall", "off-the-grid"])
@pytest.mark.parametrize("task", [(0, 0), (0, 1)], ids=["repeated-colour", "next-colour-elsewhere"])
def test_bumping_while_on_a_colour_is_not_a_new_visit(bump, task):
    # The agent steps onto colour 0 at the left edge, below a wall, then bumps.
    env, _, _ = env_from_picture(
        """
        #..
        0@.
        ..1
        """,
        task=task,
    )
    _, _, terminated, _, info = env.step(LEFT)
    assert (terminated, info["progress"]) == (False, 1)
    for _ in range(3):
        _, reward, terminated, truncated, info = env.step(bump)
        assert (reward, terminated, truncated) == (0.0, False, False)
        assert info["progress"] == 1 and not info["success"]
        np.testing.assert_array_equal(info["agent_pos"], (1, 0))


def test_reentering_a_visited_colour_out_of_order_fails():
    env, _, _ = env_from_picture(
        """
        @0.
        ...
        ..1
        """,
        task=(0, 1),
    )
    env.step(RIGHT)  # visits 0
    _, _, terminated, _, info = env.step(DOWN)  # leaves it
    assert (terminated, info["progress"]) == (False, 1)
    _, reward, terminated, truncated, info = env.step(UP)  # 0 again, 1 is next
    assert (reward, terminated, truncated, info["progress"], info["success"]) == (
        0.0,
        True,
        False,
        1,
        False,
    )


def test_a_repeated_colour_must_be_left_and_entered_again():
    env, _, _ = env_from_picture(
        """
        @0.
        ...
        ...
        """,
        task=(0, 0),
    )
    _, reward, terminated, _, info = env.step(RIGHT)
    assert (reward, terminated, info["progress"]) == (0.0, False, 1)
    _, reward, terminated, _, info = env.step(RIGHT)  # off the colour
    assert (reward, terminated, info["progress"]) == (0.0, False, 1)
    _, reward, terminated, truncated, info = env.step(LEFT)  # back onto it
    assert (reward, terminated, truncated, info["progress"], info["success"]) == (
        1.0,
        True,
        False,
        2,
        True,
    )


def test_time_limit_truncates_exactly_at_max_steps():
    env, _, _ = env_from_picture(PICTURE_WALL, task=(0,), max_steps=5)
    for step in range(1, 6):
        _, reward, terminated, truncated, _ = env.step(LEFT)  # into the wall
        assert (reward, terminated) == (0.0, False)
        assert truncated == (step == 5)
        assert env.steps == step
    with pytest.raises(RuntimeError, match="reset"):
        env.step(LEFT)


def test_success_on_the_last_allowed_step_terminates_rather_than_truncates():
    env, _, _ = env_from_picture("@01\n...\n...", task=(0, 1), max_steps=2)
    env.step(RIGHT)
    _, reward, terminated, truncated, info = env.step(RIGHT)
    assert (reward, terminated, truncated, info["success"]) == (1.0, True, False, True)


def test_failure_on_the_last_allowed_step_terminates_rather_than_truncates():
    env, _, _ = env_from_picture("@1.\n...\n.0.", task=(0,), max_steps=1)
    _, reward, terminated, truncated, info = env.step(RIGHT)
    assert (reward, terminated, truncated, info["success"]) == (0.0, True, False, False)


def test_reward_is_zero_on_every_step_but_the_successful_last(env):
    rng = np.random.default_rng(0)
    ends = set()
    for seed in range(40):
        env.reset(seed=seed)
        while True:
            _, reward, terminated, truncated, info = env.step(int(rng.integers(4)))
            assert type(reward) is float
            assert reward == (1.0 if info["success"] else 0.0)
            if terminated or truncated:
                ends.add("success" if info["success"] else "failure")
                break
    assert "failure" in ends


def _finished(how: str) -> HierGridEnv:
    if how == "never-reset":
        return HierGridEnv()
    if how == "success":
        env, _, _ = env_from_picture("@0.\n...\n...", task=(0,))
        env.step(RIGHT)
    elif how == "failure":
        env, _, _ = env_from_picture("@1.\n...\n.0.", task=(0,))
        env.step(RIGHT)
    else:
        env, _, _ = env_from_picture("@..\n...\n.0.", task=(0,), max_steps=1)
        env.step(UP)
    return env


@pytest.mark.parametrize("how", ["success", "failure", "truncation", "never-reset"])
def test_stepping_a_finished_episode_raises(how):
    env = _finished(how)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(DOWN)


def test_reset_after_a_finished_episode_allows_stepping_again():
    env = _finished("success")
    env.reset()
    env.step(DOWN)


# The post task on a snake of colours: every move visits the next colour, except one bump.
POST_PICTURE = """
    @0123..
    .7654..
    .......
    .......
    .......
    .......
    #.#.#.#
    """
POST_ACTIONS = [RIGHT, RIGHT, UP, RIGHT, RIGHT, DOWN, LEFT, LEFT, LEFT, UP, RIGHT, RIGHT, RIGHT]
# After each step (and, first, after reset):
POST_PROGRESS = [0, 1, 2, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
POST_SUBGOAL = [0, 0, 1, 1, 1, 2, 2, 3, 3, 0, 0, 1, 1, 1]
POST_SUBGOAL_INDEX = [0, 0, 1, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 5]
POST_AGENT_POS = [
    (0, 0),
    (0, 1),
    (0, 2),
    (0, 2),
    (0, 3),
    (0, 4),
    (1, 4),
    (1, 3),
    (1, 2),
    (1, 1),
    (0, 1),
    (0, 2),
    (0, 3),
    (0, 4),
]


def test_info_along_an_episode_of_the_post_task():
    env, _, info = env_from_picture(POST_PICTURE, task=GRID_POST_TRAINING)
    infos, rewards, ends = [info], [], []
    for action in POST_ACTIONS:
        _, reward, terminated, truncated, info = env.step(action)
        infos.append(info)
        rewards.append(reward)
        ends.append((terminated, truncated))
    assert set(infos[0]) == {
        "task",
        "progress",
        "subgoal",
        "subgoal_index",
        "agent_pos",
        "success",
        "visited",
    }
    assert all(i["task"] == GRID_POST_TRAINING and isinstance(i["task"], tuple) for i in infos)
    assert [i["progress"] for i in infos] == POST_PROGRESS
    assert [i["subgoal"] for i in infos] == POST_SUBGOAL
    assert [i["subgoal_index"] for i in infos] == POST_SUBGOAL_INDEX
    assert [tuple(int(x) for x in i["agent_pos"]) for i in infos] == POST_AGENT_POS
    assert [i["success"] for i in infos] == [False] * 13 + [True]
    assert rewards == [0.0] * 12 + [1.0]
    assert ends == [(False, False)] * 12 + [(True, False)]
