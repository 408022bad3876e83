"""BO-MRL's rollout collector: envs stepped in lockstep by a diagonal-Gaussian policy, and returns-to-go.

:func:`roll_out` is the one collection loop of every BO-MRL learner. Each step it normalises the
observations, runs the policy once for all envs (whatever the caller's forward does: one parameter
set, or a ``vmap`` over per-task sets), samples the Gaussian actions and steps all envs; it records
``(env, step)`` arrays and a mask of the steps where each env's episode was still running. The envs are
either a list of single envs whose episodes end when they say so (:class:`EnvList`) or a vector env
whose episodes all run for a fixed number of steps (:class:`FixedLengthVectorEnv`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import gymnasium as gym
import numpy as np
import torch


def reward_to_go(rewards: np.ndarray, gamma: float) -> np.ndarray:
    """``sum_{k >= t} gamma^(k-t) r_k`` along the last (time) axis; steps after an episode's end must hold 0."""
    to_go = np.zeros_like(rewards)
    acc = np.zeros(rewards.shape[:-1])
    for t in reversed(range(rewards.shape[-1])):
        acc = rewards[..., t] + gamma * acc
        to_go[..., t] = acc
    return to_go


class LockstepEnvs(Protocol):
    """``N`` envs stepped together: :func:`roll_out`'s view of them."""

    action_space: gym.spaces.Box

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Step every running env; returns the observations, rewards (0 for envs whose episode had
        ended) and which episodes have ended."""


class EnvList:
    """Single gym envs in lockstep, each reset with its own seed; an env whose episode ended keeps its
    last observation and gets reward 0 until every episode has ended."""

    def __init__(self, envs: Sequence[gym.Env]) -> None:
        self.envs = list(envs)
        self.action_space = self.envs[0].action_space
        self.ended = np.zeros(len(self.envs), dtype=bool)
        self.obs: np.ndarray | None = None

    def reset(self, seeds: Sequence[int], options: dict[str, Any] | None = None) -> np.ndarray:
        self.obs = np.stack([env.reset(seed=seed, options=options)[0] for env, seed in zip(self.envs, seeds, strict=True)])
        self.ended[:] = False
        return self.obs

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        obs, rewards = self.obs.copy(), np.zeros(len(self.envs))
        for i in np.flatnonzero(~self.ended):
            obs[i], rewards[i], terminated, truncated, _ = self.envs[i].step(actions[i])
            self.ended[i] = terminated or truncated
        self.obs = obs
        return obs, rewards, self.ended.copy()


class FixedLengthVectorEnv:
    """A gymnasium vector env whose episodes the caller runs for a fixed number of steps (the env's
    own end-of-episode flags are ignored); ``observe`` picks the part of an observation the policy sees."""

    def __init__(self, env: gym.vector.VectorEnv, observe: Callable[[np.ndarray], np.ndarray] = lambda obs: obs) -> None:
        self.env, self.observe = env, observe
        self.action_space = env.single_action_space
        self.never_ended = np.zeros(env.num_envs, dtype=bool)

    def reset(self, seed: int, options: dict[str, Any] | None = None) -> np.ndarray:
        return self.observe(self.env.reset(seed=seed, options=options)[0])

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        obs, rewards, _, _, _ = self.env.step(actions)
        return self.observe(obs), rewards, self.never_ended


@dataclass
class Trajectories:
    """What :func:`roll_out` recorded for ``N`` envs over ``T`` steps (the first ``R`` of them in full)."""

    raw_obs: np.ndarray  # (N, R, obs_dim): the observations as the envs gave them
    obs: np.ndarray  # (N, R, obs_dim): the policy's input (normalised)
    actions: np.ndarray  # (N, R, act_dim): the sampled actions (before any clipping to the action space)
    rewards: np.ndarray  # (N, T), float64; 0 after an episode ended
    running: np.ndarray  # (N, T): whether each env's episode was still running at each step
    obs_moments: tuple[np.ndarray, np.ndarray, int]  # mean, variance and count of every running step's observation


def roll_out(envs: LockstepEnvs, obs: np.ndarray, normalize: Callable[[np.ndarray], np.ndarray],
             forward: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]], steps: int | None = None,
             record: int | None = None, deterministic: bool = False, generator: torch.Generator | None = None,
             clip_actions: bool = True) -> Trajectories:
    """Run the Gaussian policy ``forward`` (normalised observations -> mean, log-std) on ``envs`` from
    their first observations ``obs``, for ``steps`` steps or (``None``) until every episode has ended.

    Only the first ``record`` steps' observations and actions are kept (all when ``None``); rewards
    are kept for every step. Actions are the mean plus ``exp(log_std)`` times standard normal noise
    drawn in float32 from ``generator`` (torch's global one when ``None``), or the mean if
    ``deterministic``; ``clip_actions`` clips what the envs receive to their action space.
    """
    n = len(obs)
    raw, inputs, actions, rewards, running = [], [], [], [], []
    alive = np.ones(n, dtype=bool)
    obs_sum, obs_sq, count = np.zeros(obs.shape[-1]), np.zeros(obs.shape[-1]), 0
    low, high = envs.action_space.low, envs.action_space.high
    t = 0
    while (steps is None or t < steps) and alive.any():
        as_float = (obs if alive.all() else obs[alive]).astype(np.float64)
        obs_sum += as_float.sum(0)
        obs_sq += np.square(as_float).sum(0)
        count += len(as_float)
        normalized = normalize(obs)
        with torch.no_grad():
            mean, log_std = forward(torch.from_numpy(normalized))
            if not deterministic:
                noise = torch.randn(mean.shape, generator=generator, dtype=torch.float32).to(mean.dtype)
                mean = mean + log_std.exp() * noise
        action = mean.numpy().reshape(n, -1)
        if record is None or t < record:
            raw.append(np.array(obs))
            inputs.append(normalized)
            actions.append(action)
        running.append(alive)
        obs, reward, ended = envs.step(np.clip(action, low, high) if clip_actions else action)
        rewards.append(np.array(reward, dtype=np.float64))  # a copy: vector envs may reuse their buffers
        alive = ~ended
        t += 1
    mean_obs = obs_sum / count
    moments = (mean_obs, np.maximum(obs_sq / count - np.square(mean_obs), 0.0), count)
    return Trajectories(np.stack(raw, 1), np.stack(inputs, 1), np.stack(actions, 1), np.stack(rewards, 1),
                        np.stack(running, 1), moments)
