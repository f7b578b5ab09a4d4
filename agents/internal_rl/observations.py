"""Observations -> base-model inputs and next-observation targets, one featurizer per env.

``make_featurizer(env_id)`` gives the one of a registered env. Grid: navigation
features computed from the observation (``features.py``), the agent's cell as the
next-observation target, four discrete actions. Ant: the observation (already
symlog-scaled by the env) and its navigation features (``ant_features.py``) as input,
the observation as the next-observation target, eight torques.
"""

from __future__ import annotations

from typing import Any, Protocol

import gymnasium as gym
import numpy as np

import hier_envs  # noqa: F401  (registers the env IDs)
from agents.internal_rl.ant_features import AntNavigation
from agents.internal_rl.data import IGNORE, Batch
from agents.internal_rl.features import decode_layouts, distance_fields, step_features
from hier_envs.ant.env import HierAntEnv
from hier_envs.grid.env import HierGridEnv
from hier_envs.grid.layout import GridConfig


class Featurizer(Protocol):
    num_features: int  # model inputs per token
    num_actions: int  # discrete actions, or dimensions of a continuous action
    num_next: int  # classes (grid cells) or dimensions of the next-observation target
    continuous: bool  # Gaussian actions and a regressed next observation

    def batch(self, batch: Batch) -> tuple[np.ndarray, np.ndarray]:
        """Features ``(B, L, F)`` and next-observation targets (meaningful where
        ``batch.has_action``)."""
        ...

    def start(self, obs: np.ndarray) -> Any:
        """What :meth:`features` needs from a batch of episodes' first observations."""
        ...

    def features(self, state: Any, obs: np.ndarray) -> np.ndarray:
        """``(N, F)`` float32 features of one step of a batch of envs."""
        ...


def episode_features(featurizer: Featurizer, batch: Batch, obs: np.ndarray) -> np.ndarray:
    """``(B, L, F)`` features of a batch's observations ``obs (B, L, D)``: each episode's
    :meth:`~Featurizer.start` from its first observation, as in a rollout; zero on padding."""
    valid = batch.episode != IGNORE
    _, first, inverse = np.unique(batch.episode[valid], return_index=True, return_inverse=True)
    state = featurizer.start(obs[valid][first])
    per_token = (
        tuple(part[inverse] for part in state) if isinstance(state, tuple) else state[inverse]
    )
    features = np.zeros((*batch.episode.shape, featurizer.num_features), dtype=np.float32)
    features[valid] = featurizer.features(per_token, obs[valid])
    return features


def make_featurizer(env_id: str) -> Featurizer:
    env = gym.make(env_id)
    base = env.unwrapped
    env.close()
    if isinstance(base, HierGridEnv):
        return GridFeaturizer(base.config)
    return AntFeaturizer(base)


class GridFeaturizer:
    """Observations -> model features, and the agent's cell (the next-observation target)."""

    continuous = False
    num_actions = 4

    def __init__(self, grid: GridConfig) -> None:
        self.grid = grid
        self.geometry = grid.geometry
        self.num_features = 6 * grid.num_colors + self.geometry.num_cells
        self.num_next = self.geometry.num_cells

    def agent_cells(self, obs: np.ndarray) -> np.ndarray:
        """``(...)`` cell of the agent in observations ``(..., D)``."""
        per_cell = obs.reshape(*obs.shape[:-1], self.geometry.num_cells, self.grid.num_features)
        return per_cell[..., -1].argmax(axis=-1)

    def layouts(self, first_obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Colour cells ``(E, O)`` and distance fields ``(E, O, cells)`` of episodes' first observations."""
        g = self.grid
        walls, colours = decode_layouts(first_obs, g.size, g.num_walls, g.num_colors)
        return colours, distance_fields(walls, colours, self.geometry)

    def batch(self, batch: Batch) -> tuple[np.ndarray, np.ndarray]:
        """Features ``(B, L, F)`` and next cells ``(B, L)`` (IGNORE where there is no next step)."""
        cells = self.agent_cells(batch.obs)
        features = episode_features(self, batch, batch.obs)
        next_cell = np.full(batch.episode.shape, IGNORE, dtype=np.int64)
        has_next = batch.has_action
        next_cell[:, :-1][has_next[:, :-1]] = cells[:, 1:][has_next[:, :-1]]
        return features, next_cell

    def start(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.layouts(obs)

    def features(self, state: tuple[np.ndarray, np.ndarray], obs: np.ndarray) -> np.ndarray:
        colours, fields = state
        return step_features(fields, self.agent_cells(obs), colours, self.geometry)


class AntFeaturizer:
    """The ant's observation and its navigation features (``ant_features.py``) as model
    inputs; the observation is the next-observation target."""

    continuous = True

    def __init__(self, env: HierAntEnv) -> None:
        self.navigation = AntNavigation(env)
        self.num_next = env.observation_space.shape[0]
        self.num_features = self.num_next + self.navigation.num_features
        self.num_actions = env.action_space.shape[0]

    def batch(self, batch: Batch) -> tuple[np.ndarray, np.ndarray]:
        obs = batch.obs.astype(np.float32)
        features = episode_features(self, batch, obs)
        next_obs = np.zeros_like(obs)
        next_obs[:, :-1] = obs[:, 1:]
        return features, next_obs

    def start(self, obs: np.ndarray) -> np.ndarray:
        return self.navigation.fields(np.asarray(obs, dtype=np.float32))

    def features(self, fields: np.ndarray, obs: np.ndarray) -> np.ndarray:
        obs = np.asarray(obs, dtype=np.float32)
        return np.concatenate([obs, self.navigation.features(obs, fields)], axis=1)
