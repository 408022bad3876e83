"""Environment state in run checkpoints: each layer's ``state_dict`` round trip restores the exact next
step, attributes added to the code later do not matter, and checkpoints of the first format (every
attribute by path, as main wrote them before the envs owned their state) still resume."""

from __future__ import annotations

import io
import sys
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3.common.vec_env import VecEnv

import metarl_envs
from metarl_agents import make_vec_env
from metarl_agents.leaderboard.checkpoint import CheckpointError, env_state, restore_env_state

ATTRIBUTE_PATHS_FILE = Path(__file__).parent / "data" / "env_state_attribute_paths.pt"


def _actions(space: gym.Space, rng: np.random.Generator, n: int | None) -> np.ndarray:
    shape = () if n is None else (n,)
    if isinstance(space, gym.spaces.Discrete):
        return rng.integers(0, space.n, size=shape)
    return rng.uniform(space.low, space.high, size=(*shape, *space.shape)).astype(space.dtype)


def _advance(env, steps: int, seed: int) -> list[tuple]:
    """``steps`` steps of random actions; a single env is reset (unseeded) where its trial ends."""
    rng, vector = np.random.default_rng(seed), hasattr(env, "num_envs")
    space = getattr(env, "single_action_space", env.action_space)
    compared = 3 if isinstance(env, VecEnv) else 4  # SB3: (obs, reward, done, infos); Gymnasium: + truncated
    out = []
    for _ in range(steps):
        result = env.step(_actions(space, rng, env.num_envs if vector else None))
        out.append(tuple(np.copy(v) for v in result[:compared]))
        if not vector and (result[2] or result[3]):
            out.append((np.copy(env.reset()[0]),))
    return out


def _build(env_id: str, vector: bool, seed: int):
    if vector:
        env = gym.make_vec(env_id, num_envs=3, vectorization_mode="vector_entry_point")
        env.reset(seed=seed)
        return env
    env = gym.make(env_id).unwrapped
    env.reset(seed=seed)
    return env


def _through_file(state: dict) -> dict:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def _assert_same_steps(ours: list[tuple], theirs: list[tuple], atol: float = 0.0) -> None:
    """Equal step for step (to ``atol`` where the physics may round differently)."""
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs, strict=True):
        for x, y in zip(a, b, strict=True):
            if atol:
                np.testing.assert_allclose(np.asarray(x, dtype=float), np.asarray(y, dtype=float), rtol=0, atol=atol)
            else:
                np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("vector", [True, False], ids=["vector", "single"])
@pytest.mark.parametrize("env_id", metarl_envs.REGISTERED_IDS)
def test_state_dict_round_trip_restores_the_exact_next_steps(env_id, vector):
    env = _build(env_id, vector, seed=5)
    _advance(env, 23, seed=1)
    fresh = _build(env_id, vector, seed=99)
    restore_env_state(fresh, _through_file(env_state(env)))
    if "Cheetah" in env_id:  # MuJoCo's whole integration state (time, warm start, controls), not only what steps show
        np.testing.assert_array_equal(fresh.core.state, env.core.state)
    _assert_same_steps(_advance(env, 40, seed=2), _advance(fresh, 40, seed=2))
    if "Cheetah" in env_id:
        np.testing.assert_array_equal(fresh.core.state, env.core.state)


def _trained_vec_env(env_id: str = "MetaTMaze-v0", **kwargs):
    env = make_vec_env(env_id, n_envs=3, seed=5, **kwargs)
    env.reset()
    _advance(env, 17, seed=1)
    return env


def test_env_with_an_attribute_added_after_the_checkpoint_still_resumes_exactly():
    env = _trained_vec_env()
    state = _through_file(env_state(env))
    fresh = make_vec_env("MetaTMaze-v0", n_envs=3, seed=99)
    core = fresh.venv.env.core
    core.new_cache, fresh.venv.env.runner.new_counter = np.zeros(3), 7  # as a newer version of the code might add
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        restore_env_state(fresh, state)
    assert fresh.venv.env.runner.new_counter == 7 and "new_cache" not in state["venv"]["env"]["runner"]["core"]
    _assert_same_steps(_advance(env, 40, seed=2), _advance(fresh, 40, seed=2))


def test_env_without_mujoco_data_checkpoints_where_mujoco_cannot_be_imported(monkeypatch):
    """Only the Cheetah families hold MuJoCo data; the others checkpoint and resume without MuJoCo."""
    env = _trained_vec_env()
    fresh = make_vec_env("MetaTMaze-v0", n_envs=3, seed=99)
    monkeypatch.setitem(sys.modules, "mujoco", None)  # makes `import mujoco` raise ImportError
    restore_env_state(fresh, env_state(env))
    _assert_same_steps(_advance(env, 40, seed=2), _advance(fresh, 40, seed=2))


def test_state_missing_a_value_is_refused_naming_it():
    state = env_state(_trained_vec_env())
    del state["venv"]["env"]["runner"]["core"]["noise_bit"]
    with pytest.raises(CheckpointError, match="noise_bit"):
        restore_env_state(make_vec_env("MetaTMaze-v0", n_envs=3, seed=99), state)


def test_state_of_another_number_of_copies_is_refused():
    state = env_state(_trained_vec_env())
    with pytest.raises(CheckpointError, match=r"shape \(3,"):
        restore_env_state(make_vec_env("MetaTMaze-v0", n_envs=2, seed=99), state)


@pytest.mark.parametrize(("env_id", "kwargs", "actions", "steps"), [
    ("MetaTMaze-v0", {"length": 8, "episode_limit": 12}, "discrete", 17),
    ("MetaCheetahVel-v0", {}, "box", 30),
])
def test_checkpoint_of_the_attribute_path_format_still_resumes_exactly(env_id, kwargs, actions, steps):
    """The file holds env states written by main's code before envs owned their state (every attribute of
    every layer by path, MuJoCo's batch as ``__mjbatch__``), after this test's seeds and actions."""
    n_envs = 3 if actions == "discrete" else 2
    reference = make_vec_env(env_id, n_envs=n_envs, seed=5, **kwargs)
    reference.reset()
    rng = np.random.default_rng(1 if actions == "discrete" else 0)
    for _ in range(steps):
        reference.step(rng.integers(0, 4, size=3) if actions == "discrete" else rng.uniform(-1, 1, size=(2, 6)))
    saved = torch.load(ATTRIBUTE_PATHS_FILE, weights_only=True)[env_id]
    assert all(key.startswith("env.") for key in saved)
    fresh = make_vec_env(env_id, n_envs=n_envs, seed=99, **kwargs)
    restore_env_state(fresh, saved)
    atol = 0.0
    if actions == "box":
        core = fresh.venv.env.core
        np.testing.assert_array_equal(core.qpos, saved["env.venv.env.runner.core._qpos"].numpy())
        np.testing.assert_array_equal(core.qvel, saved["env.venv.env.runner.core._qvel"].numpy())
        if not np.array_equal(core.state, reference.venv.env.core.state):
            # The file was written on a CPU with other vector instructions (AVX-512), where MuJoCo rounds
            # the last bits differently: the recomputed physics agrees to rounding, and 60 steps later to
            # about 1e-4. Exact on the CPU that wrote it.
            np.testing.assert_allclose(core.state, reference.venv.env.core.state, rtol=0, atol=1e-8)
            atol = 1e-3
    np.testing.assert_array_equal(fresh.venv.env.runner.rng.keys, reference.venv.env.runner.rng.keys)
    _assert_same_steps(_advance(reference, 60, seed=2), _advance(fresh, 60, seed=2), atol)
