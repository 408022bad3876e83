"""Environment throughput (pytest-benchmark): single env, SyncVectorEnv of single envs, native batch.

Run with ``make bench`` or ``python -m pytest benchmarks/bench_envs.py``; ``benchmarks/env_speed.py``
prints the same comparison as a table with the ratios the targets are stated in.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import metarl_envs

BATCHED_IDS = [i for i in metarl_envs.REGISTERED_IDS if gym.spec(i).vector_entry_point is not None]


def _stepper(env, n: int | None):
    """A closure stepping ``env`` with fixed random actions (resetting single envs at trial ends)."""
    rng = np.random.default_rng(0)
    space = env.single_action_space if n is not None else env.action_space
    actions = rng.integers(0, space.n, size=(256, n) if n is not None else 256)
    env.reset(seed=0)
    state = {"t": 0}

    def step_vector():
        state["t"] = (state["t"] + 1) % 256
        env.step(actions[state["t"]])

    def step_single():
        state["t"] = (state["t"] + 1) % 256
        _, _, terminated, truncated, _ = env.step(int(actions[state["t"]]))
        if terminated or truncated:
            env.reset()

    return step_vector if n is not None else step_single


@pytest.mark.parametrize("env_id", BATCHED_IDS)
def test_single_env_step(benchmark, env_id):
    benchmark.group = f"single {env_id}"
    benchmark(_stepper(gym.make(env_id).unwrapped, None))


@pytest.mark.parametrize("n", [1, 16, 256, 4096])
@pytest.mark.parametrize("env_id", BATCHED_IDS)
def test_native_batched_step(benchmark, env_id, n):
    benchmark.group = f"batched {env_id}"
    benchmark.extra_info["env_steps_per_call"] = n
    benchmark(_stepper(gym.make_vec(env_id, num_envs=n), n))


@pytest.mark.parametrize("n", [16, 256])
@pytest.mark.parametrize("env_id", ["MetaTMaze-v0"])
def test_sync_vector_env_step(benchmark, env_id, n):
    benchmark.group = f"sync {env_id}"
    benchmark.extra_info["env_steps_per_call"] = n
    benchmark(_stepper(gym.make_vec(env_id, num_envs=n, vectorization_mode="sync"), n))
