"""Other libraries on the envs: Stable-Baselines3 (env checker, a short PPO run) and
Gymnasium's RecordVideo."""

from __future__ import annotations

import warnings

import gymnasium as gym
import imageio_ffmpeg
import numpy as np
import pytest
import torch
from gymnasium.wrappers import RecordVideo
from stable_baselines3 import PPO
from stable_baselines3.common.env_checker import check_env

import hier_envs  # noqa: F401

ENVS = [
    ("HierGrid-v0", {}),
    ("HierGrid-v0", {"task": "pretrain"}),
    ("HierAnt-v0", {"task": "pretrain"}),
]


@pytest.fixture
def one_torch_thread():
    """PPO's tiny networks gain nothing from threads on a shared 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize(("env_id", "kwargs"), ENVS)
def test_stable_baselines3_env_checker_passes_without_warnings(env_id, kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(gym.make(env_id, **kwargs))
    assert [str(w.message) for w in caught] == []


@pytest.mark.parametrize("env_id", ["HierGrid-v0", "HierAnt-v0"])
def test_stable_baselines3_ppo_collects_and_trains(env_id, one_torch_thread, tmp_path, monkeypatch):
    monkeypatch.setenv("SB3_LOGDIR", str(tmp_path))  # its logger's folder, else a new one in /tmp
    env = gym.make(env_id, task="pretrain", max_steps=50)
    model = PPO("MlpPolicy", env, n_steps=128, batch_size=64, n_epochs=2, seed=0, device="cpu")
    before = [p.detach().clone() for p in model.policy.parameters()]
    model.learn(total_timesteps=256)
    assert model.num_timesteps == 256
    assert any(not torch.equal(a, b) for a, b in zip(before, model.policy.parameters()))
    assert model.ep_info_buffer, "PPO saw finished episodes"
    assert all(info["l"] <= 50 for info in model.ep_info_buffer)
    obs, _ = env.reset(seed=0)
    action, _ = model.predict(obs, deterministic=True)
    assert env.action_space.contains(np.asarray(action, dtype=env.action_space.dtype))


@pytest.mark.parametrize(
    ("env_id", "kwargs"),
    [("HierGrid-v0", {}), ("HierAnt-v0", {"max_steps": 12, "width": 128, "height": 128})],
)
def test_record_video_writes_one_frame_per_step_plus_the_reset(env_id, kwargs, tmp_path):
    folder = tmp_path / "videos"
    env = RecordVideo(
        gym.make(env_id, render_mode="rgb_array", **kwargs), str(folder), name_prefix="clip"
    )
    env.reset(seed=0)
    env.action_space.seed(0)
    steps, done = 0, False
    while not done:
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        steps, done = steps + 1, terminated or truncated
    env.close()
    videos = sorted(folder.glob("*.mp4"))
    assert [v.name for v in videos] == ["clip-episode-0.mp4"]
    frames, _ = imageio_ffmpeg.count_frames_and_secs(str(videos[0]))
    assert frames == steps + 1
