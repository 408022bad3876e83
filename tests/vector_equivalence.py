"""Check that a native batched env reproduces single envs step for step (imported by family tests)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

import metarl_envs  # noqa: F401  (registers the ids)


def _assert_copy_info(vector_info: dict[str, Any], i: int, info: dict[str, Any], *, extra_ok: bool = False) -> None:
    """Copy ``i`` of a Gymnasium vector info holds exactly ``info`` (plus, if ``extra_ok``, other keys)."""
    present = {k for k in vector_info if not k.startswith("_") and vector_info[f"_{k}"][i]}
    present -= {"final_obs", "final_info"}
    assert set(info) <= present if extra_ok else set(info) == present, (sorted(present), sorted(info))
    for key, value in info.items():
        np.testing.assert_array_equal(vector_info[key][i], value, err_msg=key)


def assert_vector_matches_singles(env_id: str, actions: np.ndarray, seed: int, **kwargs: Any) -> int:
    """Step ``make_vec(env_id)`` and ``actions.shape[1]`` single envs (seeds ``seed + i``) in lockstep.

    Single envs are reset by hand when their trial ends, as the vector env does itself (SAME_STEP).
    Returns the number of trial ends seen, so callers can check that the run crossed some.
    """
    n = actions.shape[1]
    vec = gym.make_vec(env_id, num_envs=n, vectorization_mode="vector_entry_point", **kwargs)
    singles = [gym.make(env_id, **kwargs).unwrapped for _ in range(n)]
    obs, vinfo = vec.reset(seed=seed)
    for i, env in enumerate(singles):
        o, info = env.reset(seed=seed + i)
        np.testing.assert_array_equal(obs[i], o)
        _assert_copy_info(vinfo, i, info)
    trial_ends = 0
    for a in actions:
        obs, reward, terminated, truncated, vinfo = vec.step(a)
        for i, env in enumerate(singles):
            o, r, term, trunc, info = env.step(a[i])
            assert (r, term, trunc) == (reward[i], terminated[i], truncated[i])
            ended = term or trunc
            assert bool(vinfo.get("_final_obs", np.zeros(n, bool))[i]) == ended
            if ended:
                trial_ends += 1
                np.testing.assert_array_equal(vinfo["final_obs"][i], o)
                _assert_copy_info(vinfo["final_info"], i, info)
                o, info = env.reset()
            np.testing.assert_array_equal(obs[i], o)
            # After an autoreset the vector info holds the reset info; it may keep the ended episode's keys.
            _assert_copy_info(vinfo, i, info, extra_ok=ended)
    vec.close()
    return trial_ends
