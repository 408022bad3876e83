"""Environment inputs that used to be accepted silently or refused unclearly (issue 36, E1-E8), and seeds
with a reset mask as Gymnasium's vector envs take them (issue 33)."""

from __future__ import annotations

from unittest import mock

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

import metarl_envs  # noqa: F401  (registers the ids)
from metarl_agents.training.build import check_buildable
from metarl_agents.training.config import RunConfig
from metarl_agents.training.vec_env import make_vec_env
from metarl_envs.sizes import available_memory, check_fits_in_memory
from metarl_envs.wrappers import TransitionObservationVector


def _small_machine(gib: float = 1.0):
    return mock.patch("metarl_envs.sizes.available_memory", return_value=int(gib * 2**30))


# --- E1/E2: Cheetah ---------------------------------------------------------------------------------------------
def test_cheetah_refuses_actions_beyond_float32_and_keeps_those_within_finite():
    env = gym.make("MetaCheetahVel-v0")
    env.reset(seed=0)
    for action in (np.full(6, 1e39), np.full(6, -3.5e38), np.array([0, 0, 0, 0, 0, np.inf])):
        with pytest.raises(ValueError, match="float32"):
            env.step(action)
    _, reward, *_ = env.step(np.full(6, 3.0e38))  # the largest magnitudes float32 holds: clamped by MuJoCo
    assert np.isfinite(reward) and reward < -1e76  # the control cost sees the action as given


@pytest.mark.parametrize("bounds", [(-1e308, 1e308), (0.0, 1e308), (-1e308, 0.0), (0.0, 1000.5)])
def test_cheetah_velocity_range_is_bounded(bounds):
    with pytest.raises(ValueError, match="velocity_range"):
        gym.make("MetaCheetahVel-v0", velocity_range=bounds)


def test_cheetah_widest_velocity_range_gives_finite_tasks_and_returns():
    env = gym.make("MetaCheetahVel-v0", velocity_range=(-1000.0, 1000.0), episode_steps=5)
    env.reset(seed=0)
    tasks = np.array(env.unwrapped.sample_tasks(100))
    assert np.isfinite(tasks).all() and (np.abs(tasks) <= 1000).all() and tasks.std() > 100
    total = sum(env.step(np.zeros(6, np.float32))[1] for _ in range(5))
    assert np.isfinite(total)


# --- E3: reset options of a single env ----------------------------------------------------------------------------
@pytest.mark.parametrize("key", ["taks", "tasks", "reset_mask"])
def test_single_env_refuses_unknown_reset_options_naming_the_allowed_ones(key):
    env = gym.make("MetaTMaze-v0")
    with pytest.raises(ValueError, match=rf"unknown reset option\(s\) '{key}'; allowed: \['task'\]"):
        env.reset(seed=0, options={key: [1.0]})


@pytest.mark.parametrize("options", ["task", [("task", [1.0])], 3])
def test_reset_options_must_be_a_dict(options):
    with pytest.raises(ValueError, match="reset options must be a dict"):
        gym.make("MetaTMaze-v0").reset(seed=0, options=options)
    with pytest.raises(ValueError, match="reset options must be a dict"):
        gym.make_vec("MetaTMaze-v0", num_envs=2).reset(seed=0, options=options)


def test_single_env_takes_its_own_option_and_empty_options():
    env = gym.make("MetaTMaze-v0")
    assert env.reset(seed=0, options={"task": [-1.0]})[1]["task"].tolist() == [-1.0]
    first = env.reset(seed=3, options={})[0]
    np.testing.assert_array_equal(first, env.reset(seed=3, options=None)[0])


# --- E4: the first vector reset starts every copy --------------------------------------------------------------------
@pytest.mark.parametrize("env_id", ["MetaTMaze-v0", "MetaFrozenLake-v0"])
def test_first_vector_reset_with_a_partial_mask_starts_every_copy(env_id):
    masked = gym.make_vec(env_id, num_envs=4)
    obs, info = masked.reset(seed=7, options={"reset_mask": np.array([True, False, False, False])})
    reference = gym.make_vec(env_id, num_envs=4)
    ref_obs, ref_info = reference.reset(seed=7)
    np.testing.assert_array_equal(obs, ref_obs)
    np.testing.assert_array_equal(info["task"], ref_info["task"])
    assert info["_task"].all()
    for i in range(4):  # and copy i is the single env seeded 7 + i
        single_obs, single_info = gym.make(env_id).reset(seed=7 + i)
        np.testing.assert_array_equal(obs[i], single_obs)
        np.testing.assert_array_equal(info["task"][i], single_info["task"])


def test_transition_wrapper_starts_every_copy_at_the_first_reset():
    env = TransitionObservationVector(gym.make_vec("MetaTMaze-v0", num_envs=3))
    obs, _ = env.reset(seed=0, options={"reset_mask": np.array([False, True, False])})
    reference, _ = TransitionObservationVector(gym.make_vec("MetaTMaze-v0", num_envs=3)).reset(seed=0)
    np.testing.assert_array_equal(obs, reference)
    assert (obs[:, env.layout["slices"]["s"]] != 0).any(axis=1).all()  # every copy shows its first state


# --- E5: max_episode_steps -----------------------------------------------------------------------------------------
def test_vector_env_refuses_max_episode_steps():
    with pytest.raises(ValueError, match="max_episode_steps is not supported"):
        gym.make_vec("MetaTMaze-v0", num_envs=2, max_episode_steps=3)
    with pytest.raises(ValueError, match="max_episode_steps"):
        make_vec_env("MetaTMaze-v0", 2, max_episode_steps=5)
    config = RunConfig.from_preset("MetaTMaze-v0", "SplAgger", env_kwargs={"max_episode_steps": 5})
    with pytest.raises(ValueError, match="max_episode_steps"):  # --env-kwarg max_episode_steps=5
        check_buildable(config)


# --- E6: another family's core ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(("env_id", "core"), [("MetaTMaze-v0", "metarl_envs.planning:PlanningCore"),
                                              ("MetaFrozenLake-v0", "metarl_envs.minecraft:MinecraftCore"),
                                              ("MetaCheetahVel-v0", "metarl_envs.tmaze:TMazeCore")])
def test_another_familys_core_is_refused(env_id, core):
    with pytest.raises(ValueError, match="is not a core of this family"):
        gym.make(env_id, core=core)
    with pytest.raises(ValueError, match=rf"{env_id}: core .* is not a core of this family"):
        gym.make_vec(env_id, num_envs=2, vectorization_mode="vector_entry_point", core=core)


def test_a_variant_of_the_same_family_is_still_chosen_with_core():
    latent = gym.make("MetaTMaze-v0", core="metarl_envs.tmaze:LatentCore")
    assert latent.unwrapped.core.family == "MetaTMazeLatent"
    vector = gym.make_vec("MetaCheetahVel-v0", num_envs=2, core="metarl_envs.cheetah:CheetahDirCore")
    assert vector.unwrapped.core.family == "MetaCheetahDir"
    assert vector.spec.id == "MetaCheetahVel-v0" and vector.spec.kwargs["core"].endswith("CheetahDirCore")


# --- E7: requests larger than the memory ----------------------------------------------------------------------------
def test_memory_check_names_the_request_and_the_sizes():
    with _small_machine(1.0), pytest.raises(ValueError, match=r"x=3 needs about 2\.0 GiB of memory, more than the "
                                                               r"1\.0 GiB available: less"):
        check_fits_in_memory("x=3", 2 * 2**30, "less")
    check_fits_in_memory("x=1", 2**20, "less")
    assert available_memory() > 0


@pytest.mark.parametrize("env_id", ["MetaTMaze-v0", "MetaFrozenLake-v0", "MetaCheetahDir-v0"])
def test_num_envs_is_checked_against_the_memory_before_anything_is_allocated(env_id):
    with _small_machine(0.01), pytest.raises(ValueError, match=r"num_envs=8192 \(.* per copy\) needs about"):
        gym.make_vec(env_id, num_envs=8192)
    with _small_machine(1.0):  # 8192 copies of any family fit in a GiB
        assert gym.make_vec(env_id, num_envs=8192).num_envs == 8192


def test_sample_tasks_and_render_scale_are_checked_against_the_memory():
    env = gym.make("MetaTMaze-v0", render_mode="rgb_array", render_scale=10**4)
    env.reset(seed=0)
    with _small_machine(1.0):
        with pytest.raises(ValueError, match=r"sample_tasks\(n=100000000\) needs about"):
            env.unwrapped.sample_tasks(10**8)
        assert len(env.unwrapped.sample_tasks(1000)) == 1000
        with pytest.raises(ValueError, match=r"render_scale=10000 \(a 200000x\d+ frame\) needs about"):
            env.render()
    small = gym.make("MetaTMaze-v0", render_mode="rgb_array", render_scale=2)
    small.reset(seed=0)
    height, width = small.unwrapped.core.render_rgb(0).shape[:2]
    assert small.render().shape == (2 * height, 2 * width, 3)


# --- E8: actions numpy would take --------------------------------------------------------------------------------------
@pytest.mark.parametrize("action", [np.timedelta64(1), np.array(1, dtype="m8[s]"), np.ma.masked_array([1], mask=[True])])
def test_discrete_env_refuses_timedeltas_and_masked_actions(action):
    env = gym.make("MetaTMaze-v0")
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action"):
        env.step(action)


def test_ragged_actions_are_refused_naming_the_action():
    vector = gym.make_vec("MetaTMaze-v0", num_envs=2)
    vector.reset(seed=0)
    with pytest.raises(ValueError, match=r"actions must form an array of shape \(2,\) \(not a ragged sequence\)"):
        vector.step([[0], [0, 1]])
    cheetah = gym.make("MetaCheetahDir-v0")
    cheetah.reset(seed=0)
    with pytest.raises(ValueError, match="ragged"):
        cheetah.step([[0.0] * 6, [0.0] * 5])


def test_unmasked_masked_arrays_and_numpy_integers_are_still_actions():
    env = gym.make("MetaTMaze-v0")
    env.reset(seed=0)
    reference = gym.make("MetaTMaze-v0")
    reference.reset(seed=0)
    for action in (np.ma.masked_array([2], mask=[False]), np.int64(2), 2.0):
        np.testing.assert_array_equal(env.step(action)[0], reference.step(2)[0])


# --- issue 33: seeds with a reset mask ---------------------------------------------------------------------------------
def _steps(env, actions):
    return [env.step(a)[0] for a in actions]


@pytest.mark.parametrize(("env_id", "kwargs"), [("MetaFrozenLake-v0", {"slippery": True}),
                                                ("MetaTMaze-v0", {"length": 5})])
def test_seed_list_with_a_reset_mask_reseeds_the_masked_copies_only(env_id, kwargs):
    """Gymnasium's pattern: the masked copies start over as single envs with their seeds (their per-step random
    streams from the beginning, mid-block), the unmasked ones go on exactly as if nothing had happened."""
    n, rng = 3, np.random.default_rng(0)
    vector = gym.make_vec(env_id, num_envs=n, **kwargs)
    twin = gym.make_vec(env_id, num_envs=n, **kwargs)
    vector.reset(seed=[10, 11, 12])
    twin.reset(seed=[10, 11, 12])
    before = rng.integers(0, 4, size=(5, n))
    for a in before:
        np.testing.assert_array_equal(vector.step(a)[0], twin.step(a)[0])
    obs, info = vector.reset(seed=[0, 1, 0], options={"reset_mask": np.array([True, True, False])})
    assert info["_task"].tolist() == [True, True, False]
    after = rng.integers(0, 4, size=(40, n))
    vector_obs = np.array(_steps(vector, after))
    twin_obs = np.array(_steps(twin, after))
    np.testing.assert_array_equal(vector_obs[:, 2], twin_obs[:, 2])  # the unmasked copy is untouched
    for i, seed in ((0, 0), (1, 1)):
        single = gym.make(env_id, **kwargs).unwrapped
        single_obs, single_info = single.reset(seed=seed)
        np.testing.assert_array_equal(obs[i], single_obs)
        np.testing.assert_array_equal(info["task"][i], single_info["task"])
        for t, a in enumerate(after[:, i]):
            single_obs, _, terminated, truncated, _ = single.step(a)
            if terminated or truncated:  # the vector env shows the next trial's first observation here
                break
            np.testing.assert_array_equal(vector_obs[t, i], single_obs)
        assert t > 5


def test_integer_seed_with_a_reset_mask_seeds_copy_i_with_seed_plus_i():
    vector = gym.make_vec("MetaFrozenLake-v0", num_envs=3, slippery=True)
    vector.reset(seed=100)
    vector.step(np.array([1, 2, 3]))
    obs, info = vector.reset(seed=5, options={"reset_mask": np.array([False, True, False])})
    single_obs, single_info = gym.make("MetaFrozenLake-v0", slippery=True).reset(seed=6)
    np.testing.assert_array_equal(obs[1], single_obs)
    np.testing.assert_array_equal(info["task"][1], single_info["task"])


def test_seed_list_with_a_reset_mask_matches_gymnasiums_sync_vector_env():
    kwargs = {"slippery": True}
    native = gym.make_vec("MetaFrozenLake-v0", num_envs=3, vectorization_mode="vector_entry_point", **kwargs)
    sync = gym.make_vec("MetaFrozenLake-v0", num_envs=3, vectorization_mode="sync",
                        vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP}, **kwargs)
    for env in (native, sync):
        env.reset(seed=[3, 4, 5])
        env.step(np.array([1, 1, 2]))
    mask = {"reset_mask": np.array([True, False, True])}
    native_obs, native_info = native.reset(seed=[0, 1, 0], options=dict(mask))
    sync_obs, sync_info = sync.reset(seed=[0, 1, 0], options=dict(mask))
    np.testing.assert_array_equal(native_obs, sync_obs)
    np.testing.assert_array_equal(native_info["task"][[0, 2]], sync_info["task"][[0, 2]])
    for a in np.random.default_rng(1).integers(0, 4, size=(6, 3)):
        np.testing.assert_array_equal(native.step(a)[0], sync.step(a)[0])


def test_none_in_a_seed_list_leaves_that_copy_unseeded():
    vector = gym.make_vec("MetaFrozenLake-v0", num_envs=2, slippery=True)
    twin = gym.make_vec("MetaFrozenLake-v0", num_envs=2, slippery=True)
    for env in (vector, twin):
        env.reset(seed=0)
    vector.reset(seed=[None, 9])
    twin.reset(options={"reset_mask": np.array([True, False])})
    twin.reset(seed=[None, 9], options={"reset_mask": np.array([False, True])})
    for a in np.random.default_rng(2).integers(0, 4, size=(10, 2)):
        np.testing.assert_array_equal(vector.step(a)[0], twin.step(a)[0])
