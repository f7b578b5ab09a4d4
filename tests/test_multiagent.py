"""Multi-agent pinpad (PettingZoo): API tests, shared rules, step order, seeding, rendering
and the team expert."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from conftest import oracle_path_length
from pettingzoo.test import api_test, parallel_api_test, parallel_seed_test, render_test, seed_test

from hier_envs.experts import make_expert
from hier_envs.grid import HierGridEnv, Layout
from hier_envs.grid.render import TEAM_STYLES, TILE
from hier_envs.multiagent import pinpad_v0
from hier_envs.multiagent.env import STAY, PinpadParallelEnv
from hier_envs.multiagent.expert import TeamExpert

UP, DOWN, LEFT, RIGHT = 0, 1, 2, 3


def _no_warnings(check, *args, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check(*args, **kwargs)
    assert [str(w.message) for w in caught] == []


def team_from_picture(
    picture: str, task: tuple[int, ...], max_steps: int = 100
) -> tuple[PinpadParallelEnv, dict, dict]:
    """A team env on a drawn board: ``.`` floor, ``#`` wall, digit colour, ``a``/``b``/``c``
    agents 0/1/2 (agents sharing a cell are not drawable: move them there)."""
    rows = [row.strip() for row in picture.strip().splitlines()]
    size = len(rows)
    walls, colours, agents = [], {}, {}
    for r, row in enumerate(rows):
        for c, char in enumerate(row):
            cell = r * size + c
            if char == "#":
                walls.append(cell)
            elif char.isdigit():
                colours[int(char)] = cell
            elif char in "abc":
                agents["abc".index(char)] = cell
    env = PinpadParallelEnv(
        num_agents=len(agents),
        task=task,
        size=size,
        num_colors=len(colours),
        num_walls=len(walls),
        max_steps=max_steps,
    )
    env.reset(seed=0)
    colour_cells = tuple(colours[i] for i in range(len(colours)))
    layout = Layout(tuple(task), tuple(walls), colour_cells, agents[0])
    obs, infos = env._begin(layout, [agents[i] for i in range(len(agents))])
    return env, obs, infos


BOARD = """
a.0.
#...
1.b.
..2.
"""


# --- PettingZoo's own checks -------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"num_agents": 3, "task": "pretrain"}, {"num_agents": 1, "task": [0, 1]}],
    ids=["default", "three-pretrain", "one-agent"],
)
def test_pettingzoo_parallel_and_aec_api_tests_pass_without_warnings(kwargs):
    _no_warnings(parallel_api_test, pinpad_v0.parallel_env(**kwargs), num_cycles=200)
    _no_warnings(api_test, pinpad_v0.env(**kwargs), num_cycles=200)


def test_pettingzoo_seed_tests_pass():
    _no_warnings(parallel_seed_test, lambda: pinpad_v0.parallel_env(task="pretrain"))
    _no_warnings(seed_test, lambda: pinpad_v0.env(task="pretrain"))


def test_pettingzoo_render_test_passes_for_both_modes(monkeypatch):
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    render_test(pinpad_v0.env)


# --- spaces, seeding, observations ---------------------------------------------------


def test_spaces_are_shared_moves_plus_stay_and_a_one_hot_per_agent():
    env = pinpad_v0.parallel_env(num_agents=3)
    assert env.possible_agents == ["agent_0", "agent_1", "agent_2"]
    for agent in env.possible_agents:
        assert env.action_space(agent).n == 5
        assert env.observation_space(agent).shape == (49 * (4 + 8 + 3),)
        assert env.observation_space(agent).dtype == np.uint8


def test_same_seed_same_episodes_and_board_is_hiergrids():
    first, second = pinpad_v0.parallel_env(task="pretrain"), pinpad_v0.parallel_env(task="pretrain")
    grid = HierGridEnv(task="pretrain")
    for episode in range(4):
        seed = 7 if episode == 0 else None
        obs_a, infos_a = first.reset(seed=seed)
        obs_b, infos_b = second.reset(seed=seed)
        grid.reset(seed=seed)
        assert first.layout == second.layout == grid.layout  # same sampler, same stream
        assert first.cells == second.cells and first.cells[0] == grid.layout.agent
        assert all(np.array_equal(obs_a[a], obs_b[a]) for a in first.agents)
        assert infos_a == infos_b
    first.reset(seed=8)
    assert first.layout != second.layout


@pytest.mark.parametrize("seed", range(10))
def test_agents_start_on_distinct_free_cells(seed):
    env = pinpad_v0.parallel_env(num_agents=4)
    env.reset(seed=seed)
    assert len(set(env.cells)) == 4
    assert not set(env.cells) & set(env.layout.walls + env.layout.colours)


def test_one_agent_plays_exactly_hiergrid():
    team = pinpad_v0.parallel_env(num_agents=1, task="pretrain")
    grid = HierGridEnv(task="pretrain")
    rng = np.random.default_rng(0)
    obs, infos = team.reset(seed=3)
    grid_obs, grid_info = grid.reset(seed=3)
    for _ in range(300):
        assert np.array_equal(obs["agent_0"], grid_obs)
        assert infos["agent_0"]["progress"] == grid_info["progress"]
        assert infos["agent_0"]["agent_pos"] == tuple(grid_info["agent_pos"])
        action = int(rng.integers(4))
        obs, rewards, terms, truncs, infos = team.step({"agent_0": action})
        grid_obs, reward, term, trunc, grid_info = grid.step(action)
        assert (rewards["agent_0"], terms["agent_0"], truncs["agent_0"]) == (reward, term, trunc)
        if term or trunc:
            obs, infos = team.reset()
            grid_obs, grid_info = grid.reset()


def test_observation_puts_self_first_then_the_others_in_agent_order():
    env = pinpad_v0.parallel_env(num_agents=3)
    obs, _ = env.reset(seed=1)
    channels = 4 + 8
    for index, agent in enumerate(env.possible_agents):
        grid = obs[agent].reshape(49, channels + 3)
        for offset in range(3):
            assert np.flatnonzero(grid[:, channels + offset]).tolist() == [
                env.cells[(index + offset) % 3]
            ]
        assert np.array_equal(grid[:, :channels], obs["agent_0"].reshape(49, -1)[:, :channels])


# --- rules ---------------------------------------------------------------------------------


def test_any_agent_advances_the_shared_task_and_all_share_the_reward():
    env, _, _ = team_from_picture(BOARD, task=(0, 1))
    _, rewards, terms, _, infos = env.step({"agent_0": RIGHT, "agent_1": STAY})  # a: floor
    _, rewards, terms, _, infos = env.step({"agent_0": RIGHT, "agent_1": STAY})  # a onto 0
    assert infos["agent_1"]["progress"] == 1 and not any(terms.values())
    env.step({"agent_0": STAY, "agent_1": LEFT})
    _, rewards, terms, truncs, infos = env.step({"agent_0": STAY, "agent_1": LEFT})  # b onto 1
    assert rewards == {"agent_0": 1.0, "agent_1": 1.0}
    assert terms == {"agent_0": True, "agent_1": True} and not any(truncs.values())
    assert all(info["success"] for info in infos.values())
    assert env.agents == []


def test_a_wrong_colour_by_any_agent_ends_the_episode_for_all():
    env, _, _ = team_from_picture(BOARD, task=(0, 1))
    env.step({"agent_0": STAY, "agent_1": LEFT})
    _, rewards, terms, _, infos = env.step({"agent_0": STAY, "agent_1": LEFT})  # b onto 1
    assert rewards == {"agent_0": 0.0, "agent_1": 0.0}
    assert all(terms.values()) and not infos["agent_0"]["success"]
    with pytest.raises(RuntimeError, match="call reset"):
        env.step({"agent_0": STAY, "agent_1": STAY})


def test_moves_of_one_step_apply_in_agent_order():
    # agent 0 onto colour 1 and agent 1 onto colour 0 in the same step: agent 0 goes first
    # and fails the task, so agent 1 does not move.
    picture = """
    .a1.
    ....
    .b..
    .0..
    """
    env, _, _ = team_from_picture(picture, task=(0, 1))
    _, rewards, terms, _, infos = env.step({"agent_0": RIGHT, "agent_1": DOWN})
    assert all(terms.values()) and rewards["agent_0"] == 0.0
    assert infos["agent_0"]["progress"] == 0 and infos["agent_1"]["agent_pos"] == (2, 1)

    # the other way round, the first move makes the second one right: two colours in one step.
    env, _, _ = team_from_picture(picture, task=(1, 0))
    _, rewards, terms, _, infos = env.step({"agent_0": RIGHT, "agent_1": DOWN})
    assert rewards["agent_0"] == 1.0 and all(terms.values())
    assert infos["agent_1"]["progress"] == 2 and infos["agent_1"]["agent_pos"] == (3, 1)


def test_agents_share_cells_stay_put_and_are_blocked_by_walls():
    env, _, _ = team_from_picture(BOARD, task=(0, 1, 2))
    env.step({"agent_0": DOWN, "agent_1": STAY})  # a into the wall below: stays
    assert env.cells == [0, 10]
    env.step({"agent_0": STAY, "agent_1": LEFT})
    env.step({"agent_0": STAY, "agent_1": UP})
    env.step({"agent_0": RIGHT, "agent_1": UP})
    assert env.cells == [1, 1]  # both on one cell
    obs, *_ = env.step({"agent_0": STAY, "agent_1": STAY})
    grid = obs["agent_0"].reshape(16, -1)
    assert grid[1, -2:].tolist() == [1, 1]


def test_standing_on_a_colour_is_not_a_new_visit():
    env, _, _ = team_from_picture(BOARD, task=(0, 0))
    env.step({"agent_0": RIGHT, "agent_1": STAY})
    env.step({"agent_0": RIGHT, "agent_1": STAY})
    for _ in range(3):
        _, _, terms, _, infos = env.step({"agent_0": STAY, "agent_1": STAY})
        assert infos["agent_0"]["progress"] == 1 and not any(terms.values())
    env.step({"agent_0": RIGHT, "agent_1": STAY})
    _, rewards, *_ = env.step({"agent_0": LEFT, "agent_1": STAY})  # leave and come back
    assert rewards["agent_0"] == 1.0


def test_time_limit_truncates_every_agent():
    env, _, _ = team_from_picture(BOARD, task=(0, 1), max_steps=3)
    for step in range(3):
        _, _, terms, truncs, _ = env.step({"agent_0": STAY, "agent_1": STAY})
        assert not any(terms.values()) and all(truncs.values()) == (step == 2)
    assert env.agents == []


def test_free_play_ignores_wrong_colours():
    env = PinpadParallelEnv(
        task=(0, 1), size=4, num_colors=2, num_walls=0, end_on_wrong_colour=False
    )
    env.reset(seed=0)
    env._begin(Layout((0, 1), (), (2, 8), 0), [0, 9])
    _, _, terms, _, _ = env.step({"agent_0": STAY, "agent_1": LEFT})  # b onto 1: wrong
    assert not any(terms.values()) and env.agents and env.progress == 0


# --- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_agents": 0}, "num_agents must be >= 1"),
        ({"num_agents": 1.5}, "num_agents must be an integer"),
        ({"num_agents": True}, "num_agents must be an integer"),
        ({"num_agents": 38}, "do not fit"),
        ({"task": "finetune"}, "Unknown task"),
        ({"task": [0, 8]}, "allows only colour ids 0..7"),
        ({"size": 9}, "size must be <= 8"),
        ({"render_mode": "ansi"}, "render_mode must be None"),
    ],
)
def test_bad_settings_raise_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        pinpad_v0.parallel_env(**kwargs)


@pytest.mark.parametrize(
    ("actions", "message"),
    [
        ({"agent_0": 5, "agent_1": 0}, "Invalid action 5"),
        ({"agent_0": 1.0, "agent_1": 0}, "Invalid action 1.0"),
        ({"agent_0": -1, "agent_1": 0}, "Invalid action -1"),
        ({"agent_0": 0}, "one action for each agent"),
        ({"agent_0": 0, "agent_1": 0, "agent_2": 0}, "one action for each agent"),
    ],
)
def test_bad_actions_raise_clear_errors(actions, message):
    env = pinpad_v0.parallel_env()
    env.reset(seed=0)
    with pytest.raises(ValueError, match=message):
        env.step(actions)


def test_unknown_agent_names_raise_clear_errors():
    with pytest.raises(ValueError, match="Unknown agent 'player_0'"):
        pinpad_v0.parallel_env().action_space("player_0")


# --- rendering -----------------------------------------------------------------------------


def test_rgb_array_draws_each_agent_in_its_own_style():
    env = pinpad_v0.parallel_env(num_agents=3, render_mode="rgb_array")
    env.reset(seed=0)
    frame = env.render()
    grid = HierGridEnv(render_mode="rgb_array")
    grid.reset(seed=0)
    assert frame.shape == grid.render().shape and frame.dtype == np.uint8
    for agent, cell in enumerate(env.cells):
        row, col = divmod(cell, 7)
        fill = frame[row * TILE + TILE // 2, col * TILE + TILE // 2 - 8]  # beside the number
        assert fill.tolist() == list(TEAM_STYLES[agent][0])


def test_agents_sharing_a_cell_are_all_drawn():
    env, _, _ = team_from_picture(BOARD, task=(0, 1))
    env.render_mode = "rgb_array"
    env.cells = [5, 5]
    frame = env.render()
    tile = frame[TILE : 2 * TILE, TILE : 2 * TILE].reshape(-1, 3)
    for fill, *_ in TEAM_STYLES[:2]:
        assert (tile == fill).all(axis=1).sum() > 50


# --- the expert ------------------------------------------------------------------------------


@pytest.mark.parametrize("num_agents", [2, 3])
@pytest.mark.parametrize("task", ["pretrain", "post"])
def test_expert_always_succeeds_and_is_never_slower_than_agent_0_alone(num_agents, task):
    env = pinpad_v0.parallel_env(num_agents=num_agents, task=task)
    expert = make_expert(env, seed=0)
    assert isinstance(expert, TeamExpert)
    lengths, solo = [], []
    for episode in range(60):
        obs, infos = env.reset(seed=100 if episode == 0 else None)
        solo.append(oracle_path_length(env.layout, env.config.size))
        while env.agents:
            obs, rewards, _, _, infos = env.step(expert.act(obs, infos))
        assert infos["agent_0"]["success"] and rewards["agent_1"] == 1.0
        lengths.append(env.steps)
    assert all(team <= alone for team, alone in zip(lengths, solo))
    assert np.mean(lengths) < 0.8 * np.mean(solo)  # the team splits the work


def test_expert_plays_the_aec_form():
    env = pinpad_v0.env(task="pretrain")
    env.reset(seed=5)
    expert = make_expert(env, seed=0)
    for agent in env.agent_iter():
        _, _, terminated, truncated, info = env.last()
        env.step(None if terminated or truncated else expert.act()[agent])
    assert info["success"]


def test_expert_takes_no_exploration_settings():
    with pytest.raises(ValueError, match="only a seed"):
        make_expert(pinpad_v0.parallel_env(), eps=0.1)
