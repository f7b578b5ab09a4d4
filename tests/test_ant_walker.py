"""The ant expert: the walker's symmetry trick is exact, weights load, the expert walks, and
the batched expert acts as one expert per ant."""

from __future__ import annotations

import gymnasium as gym
import mujoco
import numpy as np
import pytest

from hier_envs.ant.arena import open_floor_model
from hier_envs.ant.env import HierAntEnv
from hier_envs.ant.walker import (
    _JOINT_TURNS,
    ACTUATOR_JOINTS,
    WalkerPolicy,
    canonicalise,
    torques_to_ctrl,
    walker_features,
)
from hier_envs.experts import make_expert


def _quat_mul(a, b):
    w1, x1, y1, z1 = a
    w2, x2, y2, z2 = b
    return np.array(
        [
            w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
            w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
            w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
            w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
        ]
    )


def test_a_quarter_turn_of_the_body_frame_relabels_the_legs_exactly():
    """The same ant described with its frame turned 90 degrees and legs relabelled moves
    exactly as the original under the relabelled torques."""
    model = open_floor_model()
    original, relabelled = mujoco.MjData(model), mujoco.MjData(model)
    rng = np.random.default_rng(0)
    qpos = model.qpos0.copy()
    qpos[3:7] = (np.cos(0.15), 0.0, 0.0, np.sin(0.15))
    qpos[7:] += rng.uniform(-0.3, 0.3, 8)
    qvel = rng.uniform(-0.5, 0.5, 14)
    turn = _JOINT_TURNS[1]
    original.qpos[:], original.qvel[:] = qpos, qvel
    relabelled.qpos[:] = np.concatenate(
        [
            qpos[:3],
            _quat_mul(qpos[3:7], [np.cos(np.pi / 4), 0, 0, np.sin(np.pi / 4)]),
            turn @ qpos[7:],
        ]
    )
    wx, wy, wz = qvel[3:6]
    relabelled.qvel[:] = np.concatenate([qvel[:3], [wy, -wx, wz], turn @ qvel[6:]])
    for _ in range(40):
        torques = rng.uniform(-1, 1, 8)
        original.ctrl[:] = torques[ACTUATOR_JOINTS]
        relabelled.ctrl[:] = (turn @ torques)[ACTUATOR_JOINTS]
        mujoco.mj_step(model, original, nstep=5)
        mujoco.mj_step(model, relabelled, nstep=5)
    np.testing.assert_allclose(original.qpos[:3], relabelled.qpos[:3], atol=1e-5)
    np.testing.assert_allclose(turn @ original.qpos[7:], relabelled.qpos[7:], atol=1e-5)


def test_canonical_commands_lie_within_45_degrees_and_torques_turn_back():
    rng = np.random.default_rng(1)
    n = 200
    qpos = np.tile(open_floor_model().qpos0, (n, 1))
    yaw = rng.uniform(-np.pi, np.pi, n)
    qpos[:, 3], qpos[:, 6] = np.cos(yaw / 2), np.sin(yaw / 2)
    qpos[:, 7:] += rng.uniform(-0.3, 0.3, (n, 8))
    angle = rng.uniform(-np.pi, np.pi, n)
    features = walker_features(
        qpos, rng.normal(size=(n, 14)), np.stack([np.cos(angle), np.sin(angle)], 1)
    )
    canonical, k = canonicalise(features)
    assert np.all(np.abs(np.arctan2(canonical[:, 27], canonical[:, 26])) <= np.pi / 4 + 1e-9)
    np.testing.assert_allclose(np.linalg.norm(canonical[:, 26:28], axis=1), 1.0)
    # The canonical joint angles turned back give the actuators' own joint angles.
    ctrl = torques_to_ctrl(canonical[:, 10:18], k)
    np.testing.assert_allclose(ctrl, features[:, 10:18][:, ACTUATOR_JOINTS], atol=1e-12)


@pytest.mark.parametrize("content", [None, b"not an npz file"])
def test_missing_or_corrupt_walker_weights_say_how_to_fix(tmp_path, content):
    path = tmp_path / "walker.npz"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ValueError, match="agents.ant_expert"):
        WalkerPolicy.load(path)


def test_shipped_expert_loads_and_outwalks_a_random_policy():
    """On short episodes the expert reaches colours; random torques reach almost none."""

    def colours_reached(policy_for, seeds):
        reached = 0
        for seed in seeds:
            env = HierAntEnv(task="pretrain", max_steps=150)
            obs, info = env.reset(seed=seed)
            act = policy_for(env)
            terminated = truncated = False
            while not (terminated or truncated):
                obs, _, terminated, truncated, info = env.step(act(obs, info))
            reached += info["progress"]
        return reached

    seeds = range(100, 106)
    expert = colours_reached(lambda env: make_expert(env).act, seeds)
    rng = np.random.default_rng(0)
    random = colours_reached(
        lambda env: lambda o, i: rng.uniform(-1, 1, 8).astype(np.float32), seeds
    )
    assert expert >= 4 and expert >= random + 3


def test_the_batched_expert_acts_as_one_expert_per_ant():
    envs = gym.make_vec("HierAnt-v0", num_envs=3, vectorization_mode="sync", task="pretrain")
    obs, info = envs.reset(seed=5)
    batched = make_expert(envs)
    singles = [make_expert(env) for env in envs.envs]
    for _ in range(20):
        actions = batched.act(obs, info)
        assert actions.shape == (3, 8) and actions.dtype == np.float32
        expected = np.stack([expert.act() for expert in singles])
        np.testing.assert_allclose(actions, expected, rtol=1e-5, atol=1e-6)
        obs, _, _, _, info = envs.step(actions)
    envs.close()
