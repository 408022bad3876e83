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

:func:`transition_layout` gives the slices of the four parts, from the spaces alone. The wrapped
observation space is a :class:`TransitionBox`, a ``Box`` that carries this layout, which is how the
memory policies know (rather than guess) that they are given transitions.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv, VectorWrapper
from gymnasium.vector.utils import batch_space

from metarl_envs.state import StateOwner

__all__ = [
    "PARTS",
    "TransitionBox",
    "TransitionObservation",
    "TransitionObservationVector",
    "transition_layout",
    "transition_layout_from_space",
    "transition_space",
]

PARTS = ("s_prev", "a_prev", "r_prev", "s")


def _part_dim(space: spaces.Space, what: str) -> int:
    if isinstance(space, spaces.Discrete):
        return int(space.n)
    if isinstance(space, spaces.Box):
        return int(np.prod(space.shape, dtype=np.int64))
    raise ValueError(f"TransitionObservation supports Discrete or Box {what} spaces, got {space!r}")


def _layout(obs_dim: int, act_dim: int) -> dict[str, Any]:
    sizes = (obs_dim, act_dim, 1, obs_dim)
    ends = np.cumsum(sizes)
    slices = {name: slice(int(end - size), int(end)) for name, size, end in zip(PARTS, sizes, ends, strict=True)}
    return {"obs_dim": obs_dim, "act_dim": act_dim, "dim": int(ends[-1]), "slices": slices}


def transition_layout(observation_space: spaces.Space, action_space: spaces.Space) -> dict[str, Any]:
    """Where each part sits in the transition observation of an env with these (unwrapped) spaces.

    Returns ``dict(obs_dim, act_dim, dim, slices)`` with ``slices`` mapping ``"s_prev"``,
    ``"a_prev"``, ``"r_prev"`` and ``"s"`` to slices of the flat vector of length ``dim``.
    """
    return _layout(_part_dim(observation_space, "observation"), _part_dim(action_space, "action"))


class TransitionBox(spaces.Box):
    """The flat float32 Box that :class:`TransitionObservation` produces, marked with its layout.

    It carries the sizes of its parts (``obs_dim`` for ``s_prev`` and ``s``, ``act_dim`` for
    ``a_prev``, one reward), so that a memory policy reads the layout from the space instead of
    guessing it from a length, and refuses every other space. The sizes are plain attributes: they
    survive pickling and SB3's ``save``/``load``. It equals only a ``TransitionBox`` with the same
    bounds and layout (a plain ``Box`` of the same size is a different space).
    """

    def __init__(self, low: np.ndarray, high: np.ndarray, obs_dim: int, act_dim: int, seed: Any = None) -> None:
        super().__init__(low, high, dtype=np.float32, seed=seed)
        self.obs_dim, self.act_dim = int(obs_dim), int(act_dim)
        if self.shape != (2 * self.obs_dim + self.act_dim + 1,):
            raise ValueError(
                f"TransitionBox of shape {self.shape} cannot hold obs_dim={obs_dim}, act_dim={act_dim} "
                f"(needs ({2 * self.obs_dim + self.act_dim + 1},))"
            )

    @property
    def layout(self) -> dict[str, Any]:
        """``dict(obs_dim, act_dim, dim, slices)`` as :func:`transition_layout` gives it."""
        return _layout(self.obs_dim, self.act_dim)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, TransitionBox)
            and (self.obs_dim, self.act_dim) == (other.obs_dim, other.act_dim)
            and super().__eq__(other)
        )

    def __repr__(self) -> str:
        return f"TransitionBox(state={self.obs_dim}, action={self.act_dim}, reward=1, shape={self.shape})"


def transition_layout_from_space(transition_space: spaces.Space, action_space: spaces.Space) -> dict[str, Any]:
    """The layout of a transition observation space (what a policy is given); anything else is refused."""
    if not isinstance(transition_space, TransitionBox):
        raise ValueError(
            f"memory policies read transition observations, got observation space {transition_space!r}: "
            f"wrap the env with metarl_envs.wrappers.TransitionObservation (with SB3: "
            f"make_vec_env(env_id, wrapper_class=TransitionObservation)) or use metarl_agents.make_vec_env"
        )
    act_dim = _part_dim(action_space, "action")
    if act_dim != transition_space.act_dim:
        raise ValueError(
            f"{transition_space!r} holds {transition_space.act_dim}-dimensional actions, but the action space "
            f"{action_space!r} has {act_dim}"
        )
    return transition_space.layout


def _bounds(space: spaces.Space, include_zero: bool) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(space, spaces.Discrete):
        return np.zeros(space.n, np.float32), np.ones(space.n, np.float32)
    low, high = space.low.reshape(-1).astype(np.float32), space.high.reshape(-1).astype(np.float32)
    if include_zero:  # the zeros of "no previous transition" must lie inside the space
        low, high = np.minimum(low, 0), np.maximum(high, 0)
    return low, high


_F32_MAX = float(np.finfo(np.float32).max)


def transition_space(observation_space: spaces.Space, action_space: spaces.Space,
                     reward_range: tuple[float, float] | None = None) -> TransitionBox:
    """The flat float32 :class:`TransitionBox` of the transition observation.

    ``reward_range`` (one step's reward bounds, e.g. a family's ``reward_range``) bounds the
    ``r_prev`` slot; without it, or where a bound is infinite, the slot spans the finite float32
    range (so checkers do not flag infinite bounds).
    """
    s_low, s_high = _bounds(observation_space, include_zero=False)
    p_low, p_high = _bounds(observation_space, include_zero=True)
    a_low, a_high = _bounds(action_space, include_zero=True)
    r_low, r_high = (-np.inf, np.inf) if reward_range is None else (float(reward_range[0]), float(reward_range[1]))
    if not r_low <= r_high:
        raise ValueError(f"reward_range must be (low, high) with low <= high, got {reward_range!r}")
    r = np.clip([min(r_low, 0.0), max(r_high, 0.0)], -_F32_MAX, _F32_MAX).astype(np.float32)
    low = np.concatenate([p_low, a_low, r[:1], s_low])
    high = np.concatenate([p_high, a_high, r[1:], s_high])
    return TransitionBox(low, high, len(s_low), len(a_low))


def _reward_range(env: gym.Env | VectorEnv) -> tuple[float, float] | None:
    """The env's per-step reward bounds where it declares them (``reward_range``), else None."""
    try:
        if isinstance(env, gym.Env):
            return tuple(env.get_wrapper_attr("reward_range"))
        return tuple(env.unwrapped.reward_range)
    except AttributeError:
        return None


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


class TransitionObservation(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Observation = ``concat(s_prev, a_prev, r_prev, s)`` (see the module docstring).

    The observation space is a :class:`TransitionBox`; its ``r_prev`` bounds are the env's
    ``reward_range`` where it has one (every family of this package does).
    """

    def __init__(self, env: gym.Env) -> None:
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.Wrapper.__init__(self, env)
        self._enc = _Encoder(env.observation_space, env.action_space)
        self.layout = self._enc.layout
        self.observation_space = transition_space(env.observation_space, env.action_space, _reward_range(env))
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


class TransitionObservationVector(StateOwner, VectorWrapper):
    """:class:`TransitionObservation` for a Gymnasium vector env, all copies in one array operation.

    Supports SAME_STEP autoreset (the native meta-RL vector envs: a copy whose trial ended returns
    the next trial's first observation, so its transition restarts from zeros, and
    ``info["final_obs"]`` is rewritten into the ending transition) and NEXT_STEP autoreset (the
    step after a trial end is the reset step, whose transition is zeros plus the first state).
    """

    state_attributes = ("_s", "_restarting", "_last", "_started")
    state_parts = ("env",)

    def __init__(self, env: VectorEnv) -> None:
        super().__init__(env)
        mode = env.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
        if mode not in (AutoresetMode.SAME_STEP, AutoresetMode.NEXT_STEP):
            raise ValueError(f"TransitionObservationVector supports SAME_STEP or NEXT_STEP autoreset, got {mode!r}")
        self.autoreset_mode = mode
        self._enc = _Encoder(env.single_observation_space, env.single_action_space)
        self.layout = self._enc.layout
        self.single_observation_space = transition_space(
            env.single_observation_space, env.single_action_space, _reward_range(env)
        )
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self._s = np.zeros((self.num_envs, self._enc.obs_dim), np.float32)
        self._restarting = np.zeros(self.num_envs, dtype=bool)
        self._last = np.zeros((self.num_envs, self.layout["dim"]), np.float32)  # the last observation returned
        self._started = False  # the first reset starts every copy, whatever its reset_mask

    def reset(self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None):
        """Reset; with Gymnasium's ``options["reset_mask"]`` only the masked copies restart from zeros
        (after the first reset, which starts every copy)."""
        mask = options.get("reset_mask") if isinstance(options, dict) and self._started else None
        obs, info = self.env.reset(seed=seed, options=options)
        self._started = True
        s = self._enc.state(obs, self.num_envs)
        if mask is None:
            self._s, self._restarting[:] = s, False
            self._last = self._enc.first(s)
        else:
            mask = np.asarray(mask, dtype=bool)
            self._s[mask], self._restarting[mask] = s[mask], False
            self._last[mask] = self._enc.first(s[mask])
        return self._last.copy(), info

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
        self._s, self._last = s, out  # read (never written) by a masked reset
        return out, reward, terminated, truncated, info
