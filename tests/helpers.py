"""Small helpers shared by several test modules (not tests themselves)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


def predict_sequence(model, env, steps: int) -> tuple[np.ndarray, Any]:
    """Deterministic actions of a recurrent SB3 model over ``steps`` steps of a freshly seeded VecEnv,
    carrying the memory state and episode starts as SB3's own evaluation loop does; and the last state."""
    env.seed(0)
    obs, state, start = env.reset(), None, np.ones(env.num_envs, dtype=bool)
    actions = []
    for _ in range(steps):
        action, state = model.predict(obs, state=state, episode_start=start, deterministic=True)
        obs, _, start, _ = env.step(action)
        actions.append(action)
    return np.array(actions), state


def first_copy_step(env, vectorised: bool) -> Callable[[Any], tuple]:
    """``step(action)`` for a single env, or for copy 0 of a one-copy vector env, in the single env's
    form, so one scripted test drives both (the vector info keeps only the episode-boundary keys)."""

    def step(action):
        obs, reward, terminated, truncated, info = env.step(np.array([action]) if vectorised else action)
        if vectorised:
            obs, reward, terminated, truncated = obs[0], reward[0], terminated[0], truncated[0]
            info = {k: v[0] for k, v in info.items() if k in ("episode_end", "final_episode_observation")}
        return obs, reward, terminated, truncated, info

    return step
