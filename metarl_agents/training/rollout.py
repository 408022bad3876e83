"""One rollout chunk kept as whole env sequences, and the reward scaling MetaPPO uses.

sb3-contrib's recurrent buffer cuts the chunk into sequences at minibatch edges; MetaPPO instead
backpropagates through each env's whole ``n_steps`` sequence, so everything is stored time-major
as ``[T, N]`` arrays plus the memory state ``[N, state_size]`` of every env at the chunk's start.
"""

from __future__ import annotations

import numpy as np
import torch as th
from stable_baselines3.common.running_mean_std import RunningMeanStd


def trial_segments(episode_starts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut ``[T, B]`` sequences at trial starts into segments laid side by side, padded at the end.

    The memory is zeroed at a trial start, so no gradient crosses it: running the segments as a
    batch of ``S`` shorter sequences gives exactly the values and gradients of the ``B`` long ones,
    with far fewer sequential GRU steps. Returns ``time_index [L, S]``, ``env_index [S]`` (into
    ``B``) and ``valid [L, S]``; entry ``(l, s)`` is step ``time_index[l, s]`` of env
    ``env_index[s]`` where ``valid``, and padding (to be masked out) elsewhere.
    """
    n_steps = episode_starts.shape[0]
    cuts = episode_starts.astype(bool)
    cuts[0] = True  # every env's sequence begins a segment
    env_index, begin = np.nonzero(cuts.T)  # ordered by env, then time
    same_env_next = np.append(env_index[1:] == env_index[:-1], False)
    end = np.where(same_env_next, np.append(begin[1:], n_steps), n_steps)
    steps = np.arange((end - begin).max())[:, None]
    valid = steps < (end - begin)[None]
    time_index = np.minimum(begin[None] + steps, n_steps - 1)
    return time_index, env_index, valid


class ReturnNormalizer:
    """Scale rewards by the running std of the discounted return; no mean subtraction, then clip.

    The discounted return ``R_t = gamma R_{t-1} + r_t`` is tracked per env and restarts after a
    trial ends; the std comes from all returns seen so far (as SB3's ``VecNormalize`` and the
    reference PPO do). Dividing without centring keeps the sign of rewards intact.

    ``reset_all_on_done=True`` is the SplAgger reference's variant: an env's return is zeroed on the
    step its trial ends *before* the statistics see it, and every env's return is zeroed whenever any
    trial ends (its vector env reset all accumulators on any reset). With trials that all end together
    (the T-mazes, Planning, Cheetah) only the first part differs; on MC-LS both do.
    """

    def __init__(self, n_envs: int, gamma: float, clip: float = 10.0, epsilon: float = 1e-8,
                 reset_all_on_done: bool = False) -> None:
        self.gamma, self.clip, self.epsilon = gamma, clip, epsilon
        self.reset_all_on_done = bool(reset_all_on_done)
        self.return_rms = RunningMeanStd(shape=())
        self.returns = np.zeros(n_envs)

    def set_num_envs(self, n_envs: int) -> None:
        """Keep the statistics, restart the per-env returns (after the model gets a new env)."""
        if len(self.returns) != n_envs:
            self.returns = np.zeros(n_envs)

    def __call__(self, rewards: np.ndarray, dones: np.ndarray) -> np.ndarray:
        """Scaled rewards for a ``[T, N]`` chunk; ``dones[t]`` marks trials that ended at step ``t``."""
        out = np.empty(rewards.shape, dtype=np.float32)
        for t in range(len(rewards)):
            self.returns = self.returns * self.gamma + rewards[t]
            if self.reset_all_on_done:
                self.returns[dones[t]] = 0.0
            self.return_rms.update(self.returns)
            out[t] = np.clip(rewards[t] / np.sqrt(self.return_rms.var + self.epsilon), -self.clip, self.clip)
            if self.reset_all_on_done and dones[t].any():
                self.returns[:] = 0.0
            else:
                self.returns[dones[t]] = 0.0
        return out


class SequenceRolloutBuffer:
    """A chunk of ``n_steps`` steps of ``n_envs`` envs as time-major arrays.

    ``episode_starts[t]`` is 1 where a trial starts at step ``t`` (the memory is reset before that
    step); ``bootstrap[t]`` holds ``gamma * V(terminal observation)`` where a trial was cut by a
    time limit at step ``t``. ``initial_states`` are the memory states the chunk started from.
    ``ended[t]`` holds, where a trial starts at ``t > 0`` under the paper protocol, the previous trial's
    final transition (its terminal observation), which the memory encodes there instead of the prior.
    """

    def __init__(self, n_steps: int, n_envs: int, obs_shape: tuple[int, ...], action_shape: tuple[int, ...],
                 action_dtype: np.dtype) -> None:
        self.n_steps, self.n_envs = n_steps, n_envs
        shape = (n_steps, n_envs)
        self.observations = np.zeros((*shape, *obs_shape), dtype=np.float32)
        self.ended = np.zeros((*shape, *obs_shape), dtype=np.float32)
        self.actions = np.zeros((*shape, *action_shape), dtype=action_dtype)
        self.rewards = np.zeros(shape, dtype=np.float32)
        self.bootstrap = np.zeros(shape, dtype=np.float32)
        self.episode_starts = np.zeros(shape, dtype=np.float32)
        self.values = np.zeros(shape, dtype=np.float32)
        self.log_probs = np.zeros(shape, dtype=np.float32)
        self.advantages = np.zeros(shape, dtype=np.float32)
        self.returns = np.zeros(shape, dtype=np.float32)
        self.truncated = np.zeros(shape, dtype=bool)
        self.initial_states: th.Tensor | None = None
        self.pos = 0

    def reset(self, initial_states: th.Tensor) -> None:
        self.initial_states = initial_states
        self.bootstrap[:] = 0.0
        self.truncated[:] = False
        self.pos = 0

    def add(self, obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray, episode_starts: np.ndarray,
            values: np.ndarray, log_probs: np.ndarray) -> None:
        t = self.pos
        self.observations[t] = obs
        self.actions[t] = actions
        self.rewards[t] = rewards
        self.episode_starts[t] = episode_starts
        self.values[t] = values
        self.log_probs[t] = log_probs
        self.pos += 1

    def compute_returns_and_advantage(self, rewards: np.ndarray, last_values: np.ndarray, last_dones: np.ndarray,
                                      gamma: float, gae_lambda: float, zero_truncated: bool = False) -> None:
        """GAE(lambda) with ``rewards`` (already scaled, bootstrap included); cut only at trial ends.

        ``zero_truncated``: the advantage of a step where a time limit cut the trial is zero (its return
        is its value) and nothing flows from it to earlier steps, as the SplAgger reference computed it.
        """
        last_gae = np.zeros(self.n_envs, dtype=np.float32)
        next_values = last_values
        next_non_terminal = 1.0 - last_dones.astype(np.float32)
        for t in reversed(range(self.n_steps)):
            delta = rewards[t] + gamma * next_values * next_non_terminal - self.values[t]
            last_gae = delta + gamma * gae_lambda * next_non_terminal * last_gae
            if zero_truncated:
                last_gae = np.where(self.truncated[t], np.float32(0.0), last_gae)
            self.advantages[t] = last_gae
            next_values = self.values[t]
            next_non_terminal = 1.0 - self.episode_starts[t]
        self.returns[:] = self.advantages + self.values

    def trial_ends(self, last_dones: np.ndarray) -> np.ndarray:
        """``dones[t]``: a trial ended at step ``t`` (the next step starts one)."""
        return np.concatenate([self.episode_starts[1:], last_dones[None].astype(np.float32)]).astype(bool)
