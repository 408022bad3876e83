"""Meta-RL envs as Stable-Baselines3 VecEnvs, with the transition observation applied.

SB3 takes its own ``VecEnv``, not a Gymnasium vector env. :func:`make_vec_env` returns

* a :class:`BatchedVecEnv` over the id's native batched vector env (``gymnasium.make_vec``, one
  vectorised ``step`` for all copies) wrapped with ``TransitionObservationVector``, or
* for ids without a ``vector_entry_point`` SB3's ``DummyVecEnv`` of single envs, each wrapped with
  ``TransitionObservation``.

Both give the same per-env ``infos`` as SB3's ``DummyVecEnv`` + ``Monitor`` would: on the step
that ends a trial ``terminal_observation``, ``TimeLimit.truncated`` and Monitor's
``episode = {"r", "l", "t"}`` (the trial's return and length); on every step the family's trial
keys (``task``, ``inner_episode``, ``episode_end``, ``episode_return``, ...), unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvStepReturn

import metarl_envs  # noqa: F401  (registers the ids)
from metarl_agents.value_check import check_count
from metarl_envs.state import StateOwner
from metarl_envs.wrappers import TransitionObservation, TransitionObservationVector

_VECTOR_ONLY_KEYS = ("final_obs", "final_info")
#: The single-env wrappers whose behaviour :class:`BatchedVecEnv` reproduces for every copy.
_EQUIVALENT_WRAPPERS: tuple[type[gym.Wrapper], ...] = (Monitor, TransitionObservation)


def _unbatch_info(info: dict[str, Any], n: int, time_limit: list[bool] | None = None) -> list[dict[str, Any]]:
    """Per-env dicts from a Gymnasium vector info (arrays over copies plus ``_key`` masks).

    Keys present for every copy become columns zipped into the dicts in one comprehension; 1-D
    arrays go through ``tolist()`` once, so the dicts hold plain Python scalars as a single env's
    info does. ``time_limit`` adds SB3's ``TimeLimit.truncated`` to every dict.
    """
    names, columns = (["TimeLimit.truncated"], [time_limit]) if time_limit is not None else ([], [])
    partial = []
    for key, values in info.items():
        if key.startswith("_") or key in _VECTOR_ONLY_KEYS:
            continue
        rows = values.tolist() if isinstance(values, np.ndarray) and values.ndim == 1 else values
        mask = info.get("_" + key)
        if mask is None or mask.all():
            names.append(key)
            columns.append(rows)
        elif mask.any():
            partial.append((key, rows, np.flatnonzero(mask)))
    infos = [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)] if columns else [{} for _ in range(n)]
    for name, rows, idx in partial:
        for i in idx:
            infos[i][name] = rows[i]
    return infos


class BatchedVecEnv(StateOwner, VecEnv):
    """An SB3 ``VecEnv`` over a Gymnasium vector env with SAME_STEP autoreset.

    ``step`` is one call into the vector env; only the per-env info dicts SB3's API demands are
    built in Python. Copies share one vector env object, so ``get_attr`` answers from it for every
    index and ``set_attr`` / ``env_method`` act on it once.
    """

    # Monitor's running statistics (``_t_start`` too: resumed trials report time since the run began).
    state_attributes = ("_returns", "_lengths", "_t_start", "_seeds", "_options", "reset_infos", "_reset_keys")
    state_parts = ("venv",)

    def __init__(self, venv: VectorEnv) -> None:
        if venv.metadata.get("autoreset_mode") != AutoresetMode.SAME_STEP:
            raise ValueError(
                f"BatchedVecEnv needs a vector env with SAME_STEP autoreset, got "
                f"autoreset_mode={venv.metadata.get('autoreset_mode')!r}"
            )
        self.venv = venv
        super().__init__(venv.num_envs, venv.single_observation_space, venv.single_action_space)
        self._returns = np.zeros(self.num_envs)
        self._lengths = np.zeros(self.num_envs, dtype=np.int64)
        self._t_start = time.time()
        self._actions: np.ndarray | None = None
        self._reset_keys: tuple[str, ...] = ()

    # --- VecEnv API ------------------------------------------------------------------------
    def reset(self) -> np.ndarray:
        seed = None if self._seeds[0] is None else list(self._seeds)
        options = None
        if any(self._options):
            if not all(set(o) == {"task"} for o in self._options):
                raise ValueError(
                    f"BatchedVecEnv reset options must give every copy a 'task' (and nothing else), got {self._options}"
                )
            options = {"tasks": [o["task"] for o in self._options]}
        obs, info = self.venv.reset(seed=seed, options=options)
        self._reset_seeds()
        self._reset_options()
        self.reset_infos = _unbatch_info(info, self.num_envs)
        self._reset_keys = tuple(self.reset_infos[0])
        self._returns[:] = 0.0
        self._lengths[:] = 0
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self) -> VecEnvStepReturn:
        obs, reward, terminated, truncated, info = self.venv.step(self._actions)
        dones = terminated | truncated
        self._returns += reward
        self._lengths += 1
        time_limit = (truncated & ~terminated).tolist()
        infos = _unbatch_info(info, self.num_envs, time_limit)
        if dones.any():
            # SB3 reports the ending trial's info on its last step (the next trial's first info
            # is a reset info), with the true last observation and Monitor's statistics.
            ended = np.flatnonzero(dones)
            final = _unbatch_info(info["final_info"], self.num_envs, time_limit)
            elapsed = round(time.time() - self._t_start, 6)
            for i in ended:
                final[i]["terminal_observation"] = info["final_obs"][i]
                final[i]["episode"] = {"r": round(float(self._returns[i]), 6), "l": int(self._lengths[i]), "t": elapsed}
                # The merged step info holds the new trial's reset values under the reset keys.
                self.reset_infos[i] = {k: infos[i][k] for k in self._reset_keys if k in infos[i]}
                infos[i] = final[i]
            self._returns[ended] = 0.0
            self._lengths[ended] = 0
        return obs, reward.astype(np.float32), dones, infos

    def close(self) -> None:
        self.venv.close()

    def get_images(self) -> Sequence[np.ndarray | None]:
        if self.render_mode != "rgb_array":
            return [None] * self.num_envs
        return list(self.venv.render())

    # --- attribute access: one shared object behind all indices ------------------------------
    def _count(self, indices: VecEnvIndices) -> int:
        return len(list(self._get_indices(indices)))

    def _owner(self, attr_name: str) -> Any:
        """The outermost layer of the vector wrapper chain that has ``attr_name``."""
        layer = self.venv
        while not hasattr(layer, attr_name):
            if not hasattr(layer, "env"):
                raise AttributeError(f"{type(self.venv).__name__} has no attribute {attr_name!r}")
            layer = layer.env
        return layer

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        return [getattr(self._owner(attr_name), attr_name)] * self._count(indices)

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        if self._count(indices) != self.num_envs:
            raise ValueError(f"set_attr({attr_name!r}) acts on the shared vector env: use indices=None, got {indices!r}")
        setattr(self._owner(attr_name), attr_name, value)

    def env_method(self, method_name: str, *method_args, indices: VecEnvIndices = None, **method_kwargs) -> list[Any]:
        """Call ``method_name`` once on the vector env; its result is returned for every index."""
        result = getattr(self._owner(method_name), method_name)(*method_args, **method_kwargs)
        return [result] * self._count(indices)

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        """Whether each copy acts as if wrapped with ``wrapper_class``.

        Every copy behaves like ``Monitor(TransitionObservation(env))`` -- its infos carry Monitor's
        statistics and its observations are transitions -- so SB3 (e.g. ``evaluate_policy``, which
        trusts Monitor's returns only where ``env_is_wrapped(Monitor)``) gets the answer that matches.
        """
        wrapped = any(issubclass(layer, wrapper_class) for layer in _EQUIVALENT_WRAPPERS)
        return [wrapped] * self._count(indices)


def make_single_env(env_id: str, **env_kwargs: Any) -> gym.Env:
    """One env as the DummyVecEnv fallback uses it: ``Monitor(TransitionObservation(gym.make(...)))``."""
    return Monitor(TransitionObservation(gym.make(env_id, **env_kwargs)))


def make_vec_env(env_id: str, n_envs: int, seed: int | None = 0, **env_kwargs: Any) -> VecEnv:
    """``n_envs`` copies of ``env_id`` as an SB3 VecEnv with transition observations.

    Copy ``i`` is seeded with ``seed + i`` at the first reset (SB3 and Gymnasium convention).
    ``env_kwargs`` go to the family (e.g. ``length=10`` for a short T-maze).
    """
    n_envs = check_count("n_envs", n_envs)
    try:
        spec = gym.spec(env_id)
    except gym.error.Error as err:
        raise ValueError(f"unknown env id {env_id!r}; registered: {list(metarl_envs.REGISTERED_IDS)}") from err
    if spec.vector_entry_point is not None:
        venv = gym.make_vec(env_id, num_envs=n_envs, vectorization_mode="vector_entry_point", **env_kwargs)
        env: VecEnv = BatchedVecEnv(TransitionObservationVector(venv))
    else:
        env = DummyVecEnv([lambda: make_single_env(env_id, **env_kwargs) for _ in range(n_envs)])
    if seed is not None:
        env.seed(seed)
    return env
