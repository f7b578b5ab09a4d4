"""A batch of ants on an open floor, each told to walk along its own command.

The training ground of the ant expert's walker: commands are world-frame directions
drawn uniformly and redrawn at random moments, so that the walker learns to turn.
Reward per step: velocity along the command + a healthy bonus - a control cost.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import mujoco
import numpy as np

from hier_envs.ant.arena import open_floor_model
from hier_envs.ant.env import HEALTHY_Z, RESET_NOISE
from hier_envs.ant.walker import walker_features


@dataclass(frozen=True)
class WalkerRewards:
    """Reward weights and episode rules of walker training.

    ``min_height``: training episodes end when the torso drops below it. The env's own
    limit is 0.2 m, but an ant lying on its back rests at about 0.27 m and cannot get up:
    ending those episodes at 0.3 m teaches the walker not to flip.
    """

    healthy: float = 1.0
    min_height: float = HEALTHY_Z[0]
    control_cost: float = 0.25
    episode_steps: int = 500
    command_switch_prob: float = 0.01


class WalkerEnvs:
    """``num_envs`` ants stepped in two threads (MuJoCo releases the GIL)."""

    frame_skip = 5

    def __init__(self, num_envs: int, seed: int, rewards: WalkerRewards = WalkerRewards()) -> None:
        self.model = open_floor_model()
        self.datas = [mujoco.MjData(self.model) for _ in range(num_envs)]
        self.num_envs = num_envs
        self.rewards = rewards
        self.rng = np.random.default_rng(seed)
        self.dt = self.model.opt.timestep * self.frame_skip
        self.angle = np.zeros(num_envs)
        self.steps = np.zeros(num_envs, dtype=int)
        self._pool = ThreadPoolExecutor(2)
        self._halves = [self.datas[: num_envs // 2], self.datas[num_envs // 2 :]]
        for i in range(num_envs):
            self._reset(i)

    def _reset(self, i: int) -> None:
        model, data, rng = self.model, self.datas[i], self.rng
        mujoco.mj_resetData(model, data)
        yaw = rng.uniform(-np.pi, np.pi)
        data.qpos[3:7] = (np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2))
        data.qpos[7:] += rng.uniform(-RESET_NOISE, RESET_NOISE, model.nq - 7)
        data.qvel[:] = rng.uniform(-RESET_NOISE, RESET_NOISE, model.nv)
        mujoco.mj_forward(model, data)
        self.angle[i] = rng.uniform(-np.pi, np.pi)
        self.steps[i] = 0

    @property
    def commands(self) -> np.ndarray:
        return np.stack([np.cos(self.angle), np.sin(self.angle)], axis=1)

    def observe(self) -> np.ndarray:
        qpos = np.stack([d.qpos for d in self.datas])
        qvel = np.stack([d.qvel for d in self.datas])
        return walker_features(qpos, qvel, self.commands)

    def step(
        self, ctrl: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Returns features, reward, terminated, truncated and each env's last features
        before an automatic reset (equal to ``features`` where no reset happened)."""
        before = np.stack([d.qpos[:2].copy() for d in self.datas])
        for data, action in zip(self.datas, ctrl):
            data.ctrl[:] = action
        list(self._pool.map(self._advance, self._halves))
        after = np.stack([d.qpos[:3].copy() for d in self.datas])
        velocity = (after[:, :2] - before) / self.dt
        r = self.rewards
        reward = (velocity * self.commands).sum(1) + r.healthy - r.control_cost * (ctrl**2).sum(1)
        terminated = (after[:, 2] < r.min_height) | (after[:, 2] > HEALTHY_Z[1])
        self.steps += 1
        truncated = ~terminated & (self.steps >= r.episode_steps)
        switch = self.rng.random(self.num_envs) < r.command_switch_prob
        self.angle[switch] = self.rng.uniform(-np.pi, np.pi, switch.sum())
        final = self.observe()
        for i in np.flatnonzero(terminated | truncated):
            self._reset(i)
        features = self.observe() if (terminated | truncated).any() else final
        return features, reward, terminated, truncated, final

    def _advance(self, datas: list[mujoco.MjData]) -> None:
        for data in datas:
            mujoco.mj_step(self.model, data, nstep=self.frame_skip)
