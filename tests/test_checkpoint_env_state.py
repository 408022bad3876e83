"""Environment state in run checkpoints: an exact round trip, and checkpoints from older code versions."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from metarl_agents import make_vec_env
from metarl_agents.leaderboard.checkpoint import (
    CheckpointError,
    CheckpointWarning,
    env_state,
    restore_env_state,
)

DERIVED = "env.venv.env.runner._action_shape"


def _advance(env, steps: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    observations = []
    for _ in range(steps):
        obs, *_ = env.step(rng.integers(0, env.action_space.n, size=env.num_envs))
        observations.append(obs.copy())
    return observations


def _trained_env():
    env = make_vec_env("MetaTMaze-v0", n_envs=3, seed=5)
    env.reset()
    _advance(env, 17, seed=1)
    return env


def test_restored_env_continues_exactly():
    env = _trained_env()
    fresh = make_vec_env("MetaTMaze-v0", n_envs=3, seed=99)
    restore_env_state(fresh, env_state(env))
    for ours, theirs in zip(_advance(env, 40, seed=2), _advance(fresh, 40, seed=2), strict=True):
        np.testing.assert_array_equal(ours, theirs)


def test_env_without_mujoco_data_checkpoints_where_mujoco_cannot_be_imported(monkeypatch):
    """Only the Cheetah families hold MuJoCo data; the others checkpoint and resume without MuJoCo."""
    env = _trained_env()
    fresh = make_vec_env("MetaTMaze-v0", n_envs=3, seed=99)
    monkeypatch.setitem(sys.modules, "mujoco", None)  # makes `import mujoco` raise ImportError
    restore_env_state(fresh, env_state(env))
    for ours, theirs in zip(_advance(env, 40, seed=2), _advance(fresh, 40, seed=2), strict=True):
        np.testing.assert_array_equal(ours, theirs)


def test_checkpoint_from_before_a_derived_attribute_still_resumes_exactly():
    env = _trained_env()
    state = env_state(env)
    assert DERIVED in state
    del state[DERIVED]  # as written by a version of the code without this cache
    fresh = make_vec_env("MetaTMaze-v0", n_envs=3, seed=99)
    with pytest.warns(CheckpointWarning, match="_action_shape"):
        restore_env_state(fresh, state)
    for ours, theirs in zip(_advance(env, 40, seed=2), _advance(fresh, 40, seed=2), strict=True):
        np.testing.assert_array_equal(ours, theirs)


def test_checkpoint_with_state_this_env_lacks_is_refused():
    state = env_state(_trained_env())
    state["env.venv.env.no_such_part.counter"] = 3
    with pytest.raises(CheckpointError, match="no_such_part.counter"):
        restore_env_state(make_vec_env("MetaTMaze-v0", n_envs=3, seed=99), state)


@pytest.mark.parametrize("env_id", ["MetaCheetahVel-v0", "MetaCheetahDir-v0"])
def test_restored_cheetah_env_continues_exactly(env_id):
    """The batched MuJoCo core: its whole integration state travels, and its derived fields (read-only
    live views such as the torso position) stay live instead of being frozen at the saved values."""
    env = make_vec_env(env_id, n_envs=2, seed=5)
    env.reset()
    rng = np.random.default_rng(0)
    for _ in range(150):
        env.step(rng.uniform(-1, 1, size=(2, *env.action_space.shape)))
    fresh = make_vec_env(env_id, n_envs=2, seed=9)
    restore_env_state(fresh, env_state(env))
    # MuJoCo's whole integration state (time and solver warm start included), not only what steps show.
    np.testing.assert_array_equal(fresh.venv.env.core.state, env.venv.env.core.state)
    rng = np.random.default_rng(1)
    for _ in range(60):
        actions = rng.uniform(-1, 1, size=(2, *env.action_space.shape))
        (obs, reward, *_), (fresh_obs, fresh_reward, *_) = env.step(actions), fresh.step(actions)
        np.testing.assert_array_equal(obs, fresh_obs)
        np.testing.assert_array_equal(reward, fresh_reward)
