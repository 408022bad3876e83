"""Cheetah-Dir / Cheetah-Vel single-env step throughput (pytest-benchmark), beside HalfCheetah-v5.

``python -m pytest benchmarks/bench_cheetah.py``. One call = one ``env.step`` (5 MuJoCo substeps),
resetting when a trial ends; steps/s is the ``ops`` column. Gymnasium's ``HalfCheetah-v5`` under the
same loop is the reference for what the trial bookkeeping costs on top of the physics.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import metarl_envs  # noqa: F401  (registers the ids)


def _stepper(env: gym.Env):
    actions = np.random.default_rng(0).uniform(-1, 1, size=(256, 6)).astype(np.float32)
    env.reset(seed=0)
    state = {"t": 0}

    def step():
        state["t"] = (state["t"] + 1) % 256
        _, _, terminated, truncated, _ = env.step(actions[state["t"]])
        if terminated or truncated:
            env.reset()

    return step


@pytest.mark.parametrize("env_id", ["MetaCheetahDir-v0", "MetaCheetahVel-v0"])
def test_cheetah_step(benchmark, env_id):
    benchmark.group = "cheetah single env"
    benchmark(_stepper(gym.make(env_id)))


def test_halfcheetah_v5_reference_step(benchmark, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # MuJoCo logs the XML's deprecated attribute to the working directory
    benchmark.group = "cheetah single env"
    benchmark(_stepper(gym.make("HalfCheetah-v5", max_episode_steps=200)))
