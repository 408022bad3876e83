"""BO-MRL's rollout collector: envs stepped in lockstep by a diagonal-Gaussian policy, and returns-to-go.

:func:`roll_out` is the one collection loop of every BO-MRL learner. Each step it normalises the
observations, runs the policy once for all envs (whatever the caller's forward does: one parameter
set, or a ``vmap`` over per-task sets), samples the Gaussian actions and steps all envs; it records
``(env, step)`` arrays and a mask of the steps where each env's episode was still running. The envs are
whatever the caller's ``step`` steps: a list of single envs whose episodes end when they say so
(:class:`EnvList`), or a vector env whose episodes all run for a fixed number of steps.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from metarl_agents.bomrl.mdp import reward_to_go  # noqa: F401  (public here before)


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


@dataclass
class Trajectories:
    """What :func:`roll_out` recorded for ``N`` envs over ``T`` steps (the first ``R`` of them in full)."""

    raw_obs: np.ndarray  # (N, R, obs_dim): the observations as the envs gave them
    obs: np.ndarray  # (N, R, obs_dim): the policy's input (normalised)
    actions: np.ndarray  # (N, R, act_dim): the sampled actions (before any clipping to the action space)
    rewards: np.ndarray  # (N, T), float64; 0 after an episode ended
    running: np.ndarray  # (N, T): whether each env's episode was still running at each step
    obs_moments: tuple[np.ndarray, np.ndarray, int]  # mean, variance and count of every running step's observation


#: ``actions -> (observations, rewards, which episodes have ended)``; ``None`` for the last: none ends.
Step = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray | None]]


def roll_out(step: Step, action_space: gym.spaces.Box, obs: np.ndarray, normalize: Callable[[np.ndarray], np.ndarray],
             forward: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]], steps: int | None = None,
             record: int | None = None, deterministic: bool = False, generator: torch.Generator | None = None,
             clip_actions: bool = True) -> Trajectories:
    """Run the Gaussian policy ``forward`` (normalised observations -> mean, log-std) on the envs that
    ``step`` steps, from their first observations ``obs``, for ``steps`` steps or (``None``) until every
    episode has ended.

    Only the first ``record`` steps' observations and actions are kept (all when ``None``); rewards
    are kept for every step. Actions are the mean plus ``exp(log_std)`` times standard normal noise
    drawn in float32 from ``generator`` (torch's global one when ``None``), or the mean if
    ``deterministic``; ``clip_actions`` clips what the envs receive to ``action_space``.
    """
    n = len(obs)
    raw, inputs, actions, rewards, running = [], [], [], [], []
    alive = np.ones(n, dtype=bool)
    obs_sum, obs_sq, count = np.zeros(obs.shape[-1]), np.zeros(obs.shape[-1]), 0
    low, high = action_space.low, action_space.high
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
        obs, reward, ended = step(np.clip(action, low, high) if clip_actions else action)
        rewards.append(np.array(reward, dtype=np.float64))  # a copy: vector envs may reuse their buffers
        if ended is None and steps is None:
            raise ValueError("roll_out needs a number of steps when the step function's episodes never end")
        alive = alive if ended is None else ~ended
        t += 1
    mean_obs = obs_sum / count
    moments = (mean_obs, np.maximum(obs_sq / count - np.square(mean_obs), 0.0), count)
    return Trajectories(np.stack(raw, 1), np.stack(inputs, 1), np.stack(actions, 1), np.stack(rewards, 1),
                        np.stack(running, 1), moments)
