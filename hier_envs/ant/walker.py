"""The ant expert's low level: walk in a commanded direction (numpy, no torch).

Walker features live in the torso's frame, so a walker is blind to its heading. The
ant is 4-fold symmetric: turning the body frame by 90 degrees relabels leg i+1 as leg
i (two ankle angles change sign). Every command is therefore turned into the sector
[-45, 45] degrees, the state with it, and the policy's torques turned back: the policy
only ever learns to walk roughly forward, and each sample serves all four sectors.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Joint vector order: hip_1, ankle_1, ..., hip_4, ankle_4 (qpos[7:15]).
_NEXT_LEG = np.array([2, 3, 4, 5, 6, 7, 0, 1])  # one quarter turn: new leg i = old leg i + 1
_ANKLE_SIGN = np.array([1.0, -1.0, 1.0, 1.0, 1.0, -1.0, 1.0, 1.0])
ACTUATOR_JOINTS = np.array([6, 7, 0, 1, 2, 3, 4, 5])  # joint of each actuator (Gymnasium's order)
NUM_FEATURES = 28  # height, gravity, linear and angular velocity, 8 angles, 8 velocities, command
_XY_PAIRS = ((1, 2), (4, 5), (7, 8), (26, 27))


def _quarter_turn_matrices() -> np.ndarray:
    """``(4, 8, 8)``: joint vectors seen after k quarter turns of the body frame."""
    one = np.zeros((8, 8))
    one[np.arange(8), _NEXT_LEG] = _ANKLE_SIGN
    return np.stack([np.linalg.matrix_power(one, k) for k in range(4)])


_JOINT_TURNS = _quarter_turn_matrices()


def rotate_into_body(quat: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """World-frame ``vectors (N, 3)`` in the frames of torsos with quaternions ``(N, 4)``."""
    w, xyz = quat[:, :1], -quat[:, 1:]  # the conjugate rotates world -> body
    t = 2.0 * np.cross(xyz, vectors)
    return vectors + w * t + np.cross(xyz, t)


def walker_features(qpos: np.ndarray, qvel: np.ndarray, command: np.ndarray) -> np.ndarray:
    """``(N, 28)`` features of ants ``qpos (N, 15)``, ``qvel (N, 14)`` told to walk along
    the world-frame unit vectors ``command (N, 2)``."""
    quat = qpos[:, 3:7]
    n = len(qpos)
    gravity = rotate_into_body(quat, np.broadcast_to([0.0, 0.0, -1.0], (n, 3)))
    velocity = rotate_into_body(quat, qvel[:, :3])
    heading = rotate_into_body(quat, np.concatenate([command, np.zeros((n, 1))], axis=1))
    direction = heading[:, :2] / np.linalg.norm(heading[:, :2], axis=1, keepdims=True).clip(1e-8)
    return np.concatenate(
        [qpos[:, 2:3], gravity, velocity, qvel[:, 3:6], qpos[:, 7:], qvel[:, 6:], direction], axis=1
    )


def canonicalise(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Turn each row's frame by quarter turns until its command lies within +-45 degrees.

    Returns the turned features and ``k``, the quarter turns (0..3) applied to each row.
    """
    angle = np.arctan2(features[:, 27], features[:, 26])
    k = np.round(angle / (np.pi / 2)).astype(int) % 4
    out = features.copy()
    cos, sin = np.cos(k * np.pi / 2)[:, None], np.sin(k * np.pi / 2)[:, None]
    for x, y in _XY_PAIRS:  # coordinates in a frame turned by k quarter turns
        out[:, x], out[:, y] = (
            cos[:, 0] * features[:, x] + sin[:, 0] * features[:, y],
            -sin[:, 0] * features[:, x] + cos[:, 0] * features[:, y],
        )
    turns = _JOINT_TURNS[k]
    out[:, 10:18] = np.einsum("nij,nj->ni", turns, features[:, 10:18])
    out[:, 18:26] = np.einsum("nij,nj->ni", turns, features[:, 18:26])
    return out, k


def torques_to_ctrl(canonical_torques: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Turn canonical joint torques ``(N, 8)`` back by ``k`` and order them as actuators."""
    joint_torques = np.einsum("nji,nj->ni", _JOINT_TURNS[k], canonical_torques)
    return joint_torques[:, ACTUATOR_JOINTS]


@dataclass(frozen=True)
class WalkerPolicy:
    """A tanh MLP on normalised canonical features: the deterministic (mean) walker."""

    obs_mean: np.ndarray
    obs_std: np.ndarray
    weights: tuple[np.ndarray, ...]
    biases: tuple[np.ndarray, ...]
    log_std: np.ndarray

    @classmethod
    def load(cls, path: str | Path) -> WalkerPolicy:
        try:
            with np.load(path) as f:
                layers = int(f["num_layers"])
                return cls(
                    f["obs_mean"],
                    f["obs_std"],
                    tuple(f[f"w{i}"] for i in range(layers)),
                    tuple(f[f"b{i}"] for i in range(layers)),
                    f["log_std"],
                )
        except (OSError, KeyError, ValueError) as error:
            raise ValueError(
                f"Cannot load walker weights from {path}: {error}. Reinstall hier-envs, or "
                "retrain them with `python -m agents.ant_expert`."
            ) from error

    def act(self, features: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """Actuator controls ``(N, 8)`` in [-1, 1]: the mean, or a sample when ``rng`` is given."""
        canonical, k = canonicalise(features)
        h = np.clip((canonical - self.obs_mean) / self.obs_std, -10.0, 10.0)
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = h @ w + b
            if i < len(self.weights) - 1:
                h = np.tanh(h)
        if rng is not None:
            h = h + np.exp(self.log_std) * rng.standard_normal(h.shape)
        return np.clip(torques_to_ctrl(h, k), -1.0, 1.0)
