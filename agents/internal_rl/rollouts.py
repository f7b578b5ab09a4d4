"""Batched episodes of the base model in the real env, optionally steered at its controlled layer.

``rollout`` steps one episode per env of a ``gym.make_vec`` batch, running the base model
incrementally for all envs at once; ``controller_for(step, info)`` returns the hook that
edits the residual stream at that step (or None). :class:`SwitchGatedAgent` is the
internal-RL hook: the metacontroller's switch decides when its policy picks a new code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from agents.internal_rl.base_model import (
    BaseModel,
    Controller,
    draw_categorical,
    draw_gaussian,
)
from agents.internal_rl.codebook import CodeBook
from agents.internal_rl.data import batch_config, make_batch, trailing_axes
from agents.internal_rl.metacontroller import SWITCH_THRESHOLD, MetaController
from agents.internal_rl.observations import Featurizer

ControllerFor = Callable[[int, dict], Controller | None]


@dataclass
class Trajectories:
    """``N`` episodes of up to ``T`` steps; tensors are zero after an episode's end."""

    features: torch.Tensor  # (N, T, F) model inputs
    actions: torch.Tensor  # (N, T) int64, or (N, T, A) float (before clipping to the space)
    alive: torch.Tensor  # (N, T) bool: the step belongs to the episode
    subgoal: np.ndarray  # (N, T) the env's subgoal at each step (for plots)
    visited: np.ndarray  # (N, T) the colour entered by the step's action, -1 if none
    success: torch.Tensor  # (N,) float: the episode's return (1 on success)
    progress: np.ndarray  # (N,) colours of the task visited in order before the end
    timed_out: np.ndarray  # (N,) bool: the episode ended by running out of steps
    residuals: torch.Tensor | None = None  # (N, T, width) at the controlled layer, before the edit
    switches: torch.Tensor | None = None  # (N, T) bool: a new code was chosen
    latents: torch.Tensor | None = None  # (N, T, n_z) the code proposed at each step (or
    # (N, T) the controller chosen, for the code-book diagnostic)
    betas: torch.Tensor | None = None  # (N, T) the switch gate

    @property
    def num_episodes(self) -> int:
        return len(self.success)


class LatentPolicy(nn.Module):
    """``pi(z | e_1:t)``: a GRU over the residual stream and a Gaussian head.

    The mean head starts at zero and the scale at one: the initial policy is the
    metacontroller's prior ``N(0, I)``.
    """

    def __init__(self, width: int, latent_size: int, size: int) -> None:
        super().__init__()
        self.rnn = nn.GRU(width, size, batch_first=True)
        self.mean = nn.Linear(size, latent_size)
        nn.init.zeros_(self.mean.weight)
        nn.init.zeros_(self.mean.bias)
        self.log_std = nn.Parameter(torch.zeros(latent_size))

    def log_prob(self, residuals: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        """``(N, T)`` log-density of ``latents (N, T, n_z)`` given ``residuals (N, T, width)``."""
        hidden, _ = self.rnn(residuals)
        mean = self.mean(hidden)
        return torch.distributions.Normal(mean, self.log_std.exp()).log_prob(latents).sum(-1)


class ChoicePolicy(nn.Module):
    """``pi(k | e_1:t)`` over ``num`` abstract actions: a GRU over the residual stream and a
    categorical head, uniform at the start (zero head). With ``reads_choice`` the GRU also
    reads, at each step, the one-hot of the action in force before it (action 0 at the start).
    With ``keep_bias`` a learnt bonus, starting at that value, is added to the logit of the
    action in force (from the second step): the policy starts out keeping its choice where
    the switch fires again, and must learn where to change it."""

    def __init__(
        self,
        width: int,
        num: int,
        size: int,
        reads_choice: bool = False,
        keep_bias: float | None = None,
    ) -> None:
        super().__init__()
        self.reads_choice = reads_choice
        self.rnn = nn.GRU(width + num * reads_choice, size, batch_first=True)
        self.head = nn.Linear(size, num)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self.keep_bias = None if keep_bias is None else nn.Parameter(torch.tensor(float(keep_bias)))

    def one_hot(self, in_force: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return nn.functional.one_hot(in_force, self.head.out_features).to(dtype)

    def inputs(self, residuals: torch.Tensor, in_force: torch.Tensor) -> torch.Tensor:
        """The GRU's input for ``residuals (..., width)`` and the actions ``in_force (...)``."""
        if not self.reads_choice:
            return residuals
        return torch.cat([residuals, self.one_hot(in_force, residuals.dtype)], -1)

    def logits(
        self, hidden: torch.Tensor, in_force: torch.Tensor, first: torch.Tensor
    ) -> torch.Tensor:
        """The head's logits for GRU outputs ``hidden (..., size)``, the actions ``in_force
        (...)`` and ``first (...)``, true at an episode's first step (nothing in force)."""
        logits = self.head(hidden)
        if self.keep_bias is None:
            return logits
        kept = self.one_hot(in_force, logits.dtype) * ~first[..., None]
        return logits + self.keep_bias * kept

    def log_prob(self, residuals: torch.Tensor, choices: torch.Tensor) -> torch.Tensor:
        """``(N, T)`` log-probabilities of ``choices (N, T)`` (the action in force after each
        step) given ``residuals (N, T, width)``."""
        in_force = nn.functional.pad(choices[:, :-1], (1, 0))
        first = torch.zeros_like(choices, dtype=torch.bool)
        first[:, 0] = True
        hidden = self.rnn(self.inputs(residuals, in_force))[0]
        logits = self.logits(hidden, in_force, first)
        return logits.log_softmax(-1).gather(-1, choices[..., None])[..., 0]


class GatedAgent:
    """What the internal-RL hooks share, for one batch of envs: the metacontroller's switch
    over the residual stream, and the record of each step.

    At each step, with ``e_t`` the residual stream at the controlled layer: the switch
    ``beta_t = f(e_t, h_t-1, z_t-1)`` fires when ``>= SWITCH_THRESHOLD`` (always at the
    first step, or at every step for a forced-switch metacontroller); there the subclass's
    policy makes a new choice (sampled, or its most likely one when ``greedy``), elsewhere
    the choice in force is kept.
    """

    def __init__(
        self,
        meta: MetaController,
        policy: LatentPolicy | ChoicePolicy,
        num_envs: int,
        generator: torch.Generator,
        device: torch.device,
        greedy: bool = False,
    ) -> None:
        self.meta, self.policy, self.generator, self.greedy = meta, policy, generator, greedy
        self.policy_state = torch.zeros(1, num_envs, policy.rnn.hidden_size, device=device)
        self.history = torch.zeros(1, num_envs, meta.history_size, device=device)
        self.residuals: list[torch.Tensor] = []
        self.switches: list[torch.Tensor] = []
        self.latents: list[torch.Tensor] = []  # each step's choice, as the subclass says
        self.betas: list[torch.Tensor] = []

    def switch(
        self, residual: torch.Tensor, in_force: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """``(e, switch, first)`` at this step for the stream ``residual (N, width)`` and the
        code ``in_force (N, n_z)``: the normalised stream, where the switch fires, and
        whether this is the episode's first step; advances the gate's history and records
        the stream and the gate."""
        e = self.meta.normalise(residual)
        first = not self.residuals
        previous = e if first else self.residuals[-1]
        context = self.meta.gate_context(e, previous, self.history[0])
        beta = self.meta.gate(context, in_force, first=first)
        _, self.history = self.meta.history(e[:, None], self.history)
        self.residuals.append(e)
        self.betas.append(beta)
        switch = beta >= SWITCH_THRESHOLD
        self.switches.append(switch)
        return e, switch, first

    def record(self, trajectories: Trajectories) -> Trajectories:
        """``trajectories`` with this agent's residuals, switches, choices and gates."""
        steps = trajectories.alive.shape[1]
        trajectories.residuals = torch.stack(self.residuals[:steps], dim=1)
        trajectories.switches = torch.stack(self.switches[:steps], dim=1) & trajectories.alive
        trajectories.latents = torch.stack(self.latents[:steps], dim=1)
        trajectories.betas = torch.stack(self.betas[:steps], dim=1)
        return trajectories


class SwitchGatedAgent(GatedAgent):
    """The controller hook of internal RL (``rl.policy=latent``, the paper's).

    Where the switch fires the policy samples a new code ``z`` (or, ``greedy``, takes its
    mean); the decoder's edit ``U(z_t) e_t`` is returned. It records the code proposed at
    every step (the policy's log-density is taken at the switches).
    """

    policy: LatentPolicy

    def __init__(
        self,
        meta: MetaController,
        policy: LatentPolicy,
        num_envs: int,
        generator: torch.Generator,
        device: torch.device,
        greedy: bool = False,
    ) -> None:
        super().__init__(meta, policy, num_envs, generator, device, greedy)
        self.z = torch.zeros(num_envs, meta.latent_size, device=device)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        residual = x[:, 0]
        e, switch, _ = self.switch(residual, self.z)
        hidden, self.policy_state = self.policy.rnn(e[:, None], self.policy_state)
        mean, std = self.policy.mean(hidden[:, 0]), self.policy.log_std.exp()
        proposal = draw_gaussian(mean, std, self.generator, self.greedy)
        self.z = torch.where(switch[:, None], proposal, self.z)
        self.latents.append(proposal)
        return self.meta.decoder(self.z, residual)[:, None]


class CodeBookAgent(GatedAgent):
    """The controller hook of internal RL over a code book (``rl.policy=codebook``).

    Where the switch fires the policy chooses one of the code book's abstract actions
    (sampled, or its most likely one when ``greedy``); the switch reads the chosen
    cluster's centroid as the code in force, and the code book's decoder makes the edit.
    It records the action in force after every step.
    """

    policy: ChoicePolicy

    def __init__(
        self,
        meta: MetaController,
        codebook: CodeBook,
        policy: ChoicePolicy,
        num_envs: int,
        generator: torch.Generator,
        device: torch.device,
        greedy: bool = False,
    ) -> None:
        super().__init__(meta, policy, num_envs, generator, device, greedy)
        self.codebook = codebook
        self.edits = codebook.matrices()  # the code book is frozen during rollouts
        self.choice = torch.zeros(num_envs, dtype=torch.long, device=device)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        residual = x[:, 0]
        e, switch, first = self.switch(residual, self.codebook.centroids[self.choice])
        self.choice = torch.where(switch, self.propose(e, first), self.choice)
        self.latents.append(self.choice)
        return self.codebook.edit(self.choice, self.edits)(residual)[:, None]

    def propose(self, e: torch.Tensor, first: bool) -> torch.Tensor:
        """The abstract action ``(N,)`` to take where the switch fires, sampled from the
        policy or its most likely (``greedy``); the policy's state advances at every step;
        ``first``: the episode's first step."""
        inputs = self.policy.inputs(e, self.choice)[:, None]
        hidden, self.policy_state = self.policy.rnn(inputs, self.policy_state)
        first_step = torch.full_like(self.choice, first, dtype=torch.bool)
        logits = self.policy.logits(hidden[:, 0], self.choice, first_step)
        return draw_categorical(logits, self.generator, self.greedy)


def env_actions(actions: np.ndarray, continuous: bool) -> np.ndarray:
    """What the env is sent for the model's actions: discrete ones as they are; torques
    (sampled from an unbounded Gaussian) clipped to the action space, as float32."""
    return np.clip(actions, -1.0, 1.0).astype(np.float32) if continuous else actions


@torch.no_grad()
def rollout(
    model: BaseModel,
    featurizer: Featurizer,
    env_id: str,
    episodes: int,
    seed: int,
    device: torch.device,
    controller_for: ControllerFor | None = None,
    greedy: bool = False,
    task: str | tuple[int, ...] = "post",
    **env_kwargs: Any,
) -> Trajectories:
    """The first episode of each of ``episodes`` envs reset with ``seed``, actions sampled
    from the (steered) base model, or its most likely action when ``greedy``; continuous
    actions are clipped to the action space when they reach the env. ``env_kwargs`` go to
    the env (``end_on_wrong_colour=False``: free play)."""
    envs = make_batch(env_id, episodes, task=task, **env_kwargs)
    obs, info = envs.reset(seed=seed)
    state = featurizer.start(obs)
    generator = torch.Generator(device=device).manual_seed(seed)
    cache = model.new_cache()
    running = np.ones(episodes, dtype=bool)
    success = np.zeros(episodes, dtype=np.float32)
    progress = np.zeros(episodes, dtype=np.int64)
    timed_out = np.zeros(episodes, dtype=bool)
    features, actions, alive, subgoals, visited = [], [], [], [], []
    for step in range(batch_config(envs).max_steps):
        x = torch.as_tensor(featurizer.features(state, obs), device=device)
        hook = None if controller_for is None else controller_for(step, info)
        params = model.step(x, step, cache, controller=hook).action
        action = model.sample_action(params, generator, greedy)
        features.append(x)
        actions.append(action)
        alive.append(torch.as_tensor(running.copy(), device=device))
        subgoals.append(np.asarray(info["subgoal"]))
        obs, reward, terminated, truncated, info = envs.step(
            env_actions(action.cpu().numpy(), featurizer.continuous)
        )
        visited.append(np.where(running, info["visited"], -1))
        success += running * (reward > 0)
        progress = np.where(running, info["progress"], progress)
        timed_out |= running & truncated & ~terminated
        running &= ~(terminated | truncated)
        if not running.any():
            break
    envs.close()
    mask = torch.stack(alive, dim=1)
    actions = torch.stack(actions, dim=1)
    return Trajectories(
        features=torch.stack(features, dim=1) * mask[..., None],
        actions=actions * trailing_axes(mask, actions.ndim),
        alive=mask,
        subgoal=np.stack(subgoals, axis=1),
        visited=np.stack(visited, axis=1),
        success=torch.as_tensor(success, device=device),
        progress=progress,
        timed_out=timed_out,
    )


def agent_rollout(
    model: BaseModel,
    featurizer: Featurizer,
    meta: MetaController,
    policy: LatentPolicy | ChoicePolicy,
    env_id: str,
    episodes: int,
    seed: int,
    device: torch.device,
    codebook: CodeBook | None = None,
    greedy: bool = False,
) -> Trajectories:
    """Episodes of the internal-RL agent, with its residuals, switches and codes recorded;
    with a ``codebook``, ``policy`` chooses among its abstract actions. ``greedy``: the
    policy takes its most likely code or action (the base model still samples its own)."""
    generator = torch.Generator(device=device).manual_seed(seed + 1)
    if codebook is None:
        agent = SwitchGatedAgent(meta, policy, episodes, generator, device, greedy)
    else:
        agent = CodeBookAgent(meta, codebook, policy, episodes, generator, device, greedy)
    trajectories = rollout(
        model, featurizer, env_id, episodes, seed, device, lambda step, info: agent
    )
    return agent.record(trajectories)
