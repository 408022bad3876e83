"""Observations that carry the whole last transition, for memory agents that read them.

SB3 policies see only the observation, but a meta-RL memory has to see transitions
``(s_{t-1}, a_{t-1}, r_{t-1}, s_t)``: the task posterior is a function of the set of transitions.
:class:`TransitionObservation` (one env) and :class:`TransitionObservationVector` (a Gymnasium
vector env, vectorised) replace the observation by the flat float32 vector::

    concat(s_prev, a_prev, r_prev, s)

* Discrete observations are one-hot encoded (both ``s_prev`` and ``s``); Box observations are
  flattened.
* Discrete actions are one-hot encoded. The SplAgger reference fed the raw action index as one
  float, which imposes an order (and distances) on unordered actions; one-hot does not, and costs
  only ``n - 1`` extra inputs. Box actions are flattened as they are.
* At a trial's first step (after every ``reset``) the previous parts are zeros, so "no transition
  yet" looks the same everywhere and memories that reset to zeros see a clean start.

:func:`transition_layout` gives the slices of the four parts, from the spaces alone.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv, VectorWrapper
from gymnasium.vector.utils import batch_space

PARTS = ("s_prev", "a_prev", "r_prev", "s")


def _part_dim(space: spaces.Space, what: str) -> int:
    if isinstance(space, spaces.Discrete):
        return int(space.n)
    if isinstance(space, spaces.Box):
        return int(np.prod(space.shape, dtype=np.int64))
    raise ValueError(f"TransitionObservation supports Discrete or Box {what} spaces, got {space!r}")


def transition_layout(observation_space: spaces.Space, action_space: spaces.Space) -> dict[str, Any]:
    """Where each part sits in the transition observation of an env with these (unwrapped) spaces.

    Returns ``dict(obs_dim, act_dim, dim, slices)`` with ``slices`` mapping ``"s_prev"``,
    ``"a_prev"``, ``"r_prev"`` and ``"s"`` to slices of the flat vector of length ``dim``.
    """
    obs_dim, act_dim = _part_dim(observation_space, "observation"), _part_dim(action_space, "action")
    sizes = (obs_dim, act_dim, 1, obs_dim)
    ends = np.cumsum(sizes)
    slices = {name: slice(int(end - size), int(end)) for name, size, end in zip(PARTS, sizes, ends, strict=True)}
    return {"obs_dim": obs_dim, "act_dim": act_dim, "dim": int(ends[-1]), "slices": slices}


def transition_layout_from_space(transition_space: spaces.Space, action_space: spaces.Space) -> dict[str, Any]:
    """The layout of an already wrapped observation space (what a policy is given)."""
    act_dim = _part_dim(action_space, "action")
    if not (isinstance(transition_space, spaces.Box) and len(transition_space.shape) == 1):
        raise ValueError(f"expected the flat Box of TransitionObservation, got {transition_space!r}")
    obs_dim, odd = divmod(transition_space.shape[0] - act_dim - 1, 2)
    if odd or obs_dim < 1:
        raise ValueError(
            f"observation space {transition_space!r} is not a TransitionObservation layout for action space "
            f"{action_space!r}: wrap the env with metarl_envs.wrappers.TransitionObservation"
        )
    return transition_layout(spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32), action_space)


def _bounds(space: spaces.Space, include_zero: bool) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(space, spaces.Discrete):
        return np.zeros(space.n, np.float32), np.ones(space.n, np.float32)
    low, high = space.low.reshape(-1).astype(np.float32), space.high.reshape(-1).astype(np.float32)
    if include_zero:  # the zeros of "no previous transition" must lie inside the space
        low, high = np.minimum(low, 0), np.maximum(high, 0)
    return low, high


def transition_space(observation_space: spaces.Space, action_space: spaces.Space) -> spaces.Box:
    """The flat float32 Box of the transition observation."""
    s_low, s_high = _bounds(observation_space, include_zero=False)
    p_low, p_high = _bounds(observation_space, include_zero=True)
    a_low, a_high = _bounds(action_space, include_zero=True)
    inf = np.array([np.inf], np.float32)
    low = np.concatenate([p_low, a_low, -inf, s_low])
    high = np.concatenate([p_high, a_high, inf, s_high])
    return spaces.Box(low, high, dtype=np.float32)


class _Encoder:
    """Batched encoding of observations and actions into their flat float32 parts."""

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Space) -> None:
        self.layout = transition_layout(observation_space, action_space)
        self.obs_discrete = isinstance(observation_space, spaces.Discrete)
        self.act_discrete = isinstance(action_space, spaces.Discrete)
        self.obs_dim, self.act_dim = self.layout["obs_dim"], self.layout["act_dim"]

    @staticmethod
    def _flat(x: Any, n: int, dim: int, discrete: bool) -> np.ndarray:
        if discrete:
            out = np.zeros((n, dim), np.float32)
            out[np.arange(n), np.asarray(x, dtype=np.int64).reshape(n)] = 1.0
            return out
        return np.asarray(x, dtype=np.float32).reshape(n, dim)

    def state(self, obs: Any, n: int) -> np.ndarray:
        return self._flat(obs, n, self.obs_dim, self.obs_discrete)

    def action(self, act: Any, n: int) -> np.ndarray:
        return self._flat(act, n, self.act_dim, self.act_discrete)

    def transition(self, s_prev: np.ndarray, a_prev: np.ndarray, r_prev: np.ndarray, s: np.ndarray) -> np.ndarray:
        return np.concatenate([s_prev, a_prev, np.asarray(r_prev, np.float32).reshape(-1, 1), s], axis=1)

    def first(self, s: np.ndarray) -> np.ndarray:
        """The transition observation of a trial's first step: zeros, then the state."""
        out = np.zeros((len(s), self.layout["dim"]), np.float32)
        out[:, self.layout["slices"]["s"]] = s
        return out


class TransitionObservation(gym.Wrapper):
    """Observation = ``concat(s_prev, a_prev, r_prev, s)`` (see the module docstring)."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self._enc = _Encoder(env.observation_space, env.action_space)
        self.layout = self._enc.layout
        self.observation_space = transition_space(env.observation_space, env.action_space)
        self._s = np.zeros((1, self._enc.obs_dim), np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        self._s = self._enc.state(obs, 1)
        return self._enc.first(self._s)[0], info

    def step(self, action: Any):
        obs, reward, terminated, truncated, info = self.env.step(action)
        s = self._enc.state(obs, 1)
        out = self._enc.transition(self._s, self._enc.action(action, 1), np.float32(reward), s)[0]
        self._s = s
        return out, reward, terminated, truncated, info


class TransitionObservationVector(VectorWrapper):
    """:class:`TransitionObservation` for a Gymnasium vector env, all copies in one array operation.

    Supports SAME_STEP autoreset (the native meta-RL vector envs: a copy whose trial ended returns
    the next trial's first observation, so its transition restarts from zeros, and
    ``info["final_obs"]`` is rewritten into the ending transition) and NEXT_STEP autoreset (the
    step after a trial end is the reset step, whose transition is zeros plus the first state).
    """

    def __init__(self, env: VectorEnv) -> None:
        super().__init__(env)
        mode = env.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
        if mode not in (AutoresetMode.SAME_STEP, AutoresetMode.NEXT_STEP):
            raise ValueError(f"TransitionObservationVector supports SAME_STEP or NEXT_STEP autoreset, got {mode!r}")
        self.autoreset_mode = mode
        self._enc = _Encoder(env.single_observation_space, env.single_action_space)
        self.layout = self._enc.layout
        self.single_observation_space = transition_space(env.single_observation_space, env.single_action_space)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self._s = np.zeros((self.num_envs, self._enc.obs_dim), np.float32)
        self._restarting = np.zeros(self.num_envs, dtype=bool)

    def reset(self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        self._s = self._enc.state(obs, self.num_envs)
        self._restarting[:] = False
        return self._enc.first(self._s), info

    def step(self, actions: Any):
        obs, reward, terminated, truncated, info = self.env.step(actions)
        n, enc = self.num_envs, self._enc
        s = enc.state(obs, n)
        a = enc.action(actions, n)
        out = enc.transition(self._s, a, reward, s)
        done = np.asarray(terminated) | np.asarray(truncated)
        if self.autoreset_mode == AutoresetMode.NEXT_STEP:
            restart = self._restarting
            self._restarting = done
        else:
            restart = done
            if done.any() and "final_obs" in info:
                info = dict(info)
                final = np.full(n, None, dtype=object)
                idx = np.flatnonzero(info["_final_obs"])
                if len(idx):
                    last = enc.state(np.stack(info["final_obs"][idx]), len(idx))
                    rows = enc.transition(self._s[idx], a[idx], np.asarray(reward)[idx], last)
                    final[idx] = list(rows)
                info["final_obs"] = final
        if restart.any():
            out[restart] = enc.first(s[restart])
        self._s = s
        return out, reward, terminated, truncated, info
