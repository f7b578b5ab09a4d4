"""The ant's navigation features: the expert's own command, from the observation alone,
and the speed along each colour's path, which names the colour the expert seeks."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

import hier_envs  # noqa: F401
from agents.internal_rl.ant_features import AntNavigation
from agents.internal_rl.data import EpisodeDataset, collect_episodes
from agents.internal_rl.observations import make_featurizer
from hier_envs.ant.expert import AntExpert
from hier_envs.ant.walker import rotate_into_body


def test_the_command_towards_the_subgoal_is_the_experts():
    env = gym.make("HierAnt-v0", task="pretrain").unwrapped
    navigation, expert = AntNavigation(env), AntExpert(env)
    steps = 0
    for seed in range(3):
        obs, info = env.reset(seed=seed)
        fields = navigation.fields(obs[None])
        assert sorted(fields[0].argmin(axis=1)) == sorted(env.layout.colours)
        for _ in range(150):
            features = navigation.features(obs[None], fields)[0].reshape(4, 5)
            direction = np.array([*expert.direction(), 0.0])
            body = rotate_into_body(env.data.qpos[None, 3:7], direction[None])[0, :2]
            np.testing.assert_allclose(
                features[info["subgoal"], :2], body / np.linalg.norm(body), atol=1e-5
            )
            cell = env.cell_of(env.data.qpos[:2])
            np.testing.assert_array_equal(features[:, 3], [cell == c for c in env.layout.colours])
            obs, _, terminated, truncated, info = env.step(expert.act())
            steps += 1
            if terminated or truncated:
                break
    assert steps > 200


def test_the_fastest_approached_colour_over_a_subgoal_is_the_subgoal():
    env = gym.make("HierAnt-v0", task="pretrain").unwrapped
    navigation, expert = AntNavigation(env), AntExpert(env)
    hits = segments = 0
    for seed in range(10):
        obs, info = env.reset(seed=seed)
        fields = navigation.fields(obs[None])
        speeds, subgoals, done = [], [], False
        while not done:
            speeds.append(navigation.features(obs[None], fields)[0].reshape(4, 5)[:, 4])
            subgoals.append(info["subgoal"])
            obs, _, terminated, truncated, info = env.step(expert.act())
            done = terminated or truncated
        subgoals = np.array(subgoals)
        starts = np.flatnonzero(np.diff(subgoals, prepend=-1))
        for start, end in zip(starts, [*starts[1:], len(subgoals)]):
            hits += np.mean(speeds[start:end], axis=0).argmax() == subgoals[start]
            segments += 1
    assert segments >= 25
    assert hits >= 0.75 * segments  # chance: about 0.25


def test_training_batches_and_rollout_steps_see_the_same_features():
    featurizer = make_featurizer("HierAnt-v0")
    dataset = EpisodeDataset(
        collect_episodes("HierAnt-v0", 3, num_envs=3, expert_eps=0.0, entropy=(5, 0))
    )
    batch = next(dataset.batches(512, 3, seed=0))
    features, _ = featurizer.batch(batch)
    assert features.shape[-1] == featurizer.num_features == 41 + 20
    for row in range(len(batch.episode)):
        for episode in np.unique(batch.episode[row][batch.episode[row] >= 0]):
            tokens = np.flatnonzero(batch.episode[row] == episode)
            obs = batch.obs[row, tokens]
            stepped = featurizer.features(featurizer.start(obs[:1]), obs)
            np.testing.assert_allclose(features[row, tokens], stepped, atol=1e-6)
