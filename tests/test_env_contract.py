"""The contract every registered id keeps (environments.md §1), checked id by id."""

from __future__ import annotations

import pickle
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import metarl_envs

ALL_IDS = list(metarl_envs.REGISTERED_IDS)
BATCHED_IDS = [i for i in ALL_IDS if gym.spec(i).vector_entry_point is not None]
# Cheetah steps cost ~100x more; shorter rollouts keep the suite fast without weakening the checks.
ROLLOUT = {i: (250 if "Cheetah" in i else 1300) for i in ALL_IDS}


def _make(env_id: str, **kwargs) -> gym.Env:
    return gym.make(env_id, **kwargs)


def _rollout(env: gym.Env, actions, seed: int):
    """Step through ``actions``, resetting (without seed) whenever a trial ends."""
    obs, info = env.reset(seed=seed)
    trace = [(np.asarray(obs).copy(), 0.0, False, False, info["episode"])]
    for a in actions:
        obs, reward, terminated, truncated, info = env.step(a)
        trace.append((np.asarray(obs).copy(), reward, terminated, truncated, info["episode"]))
        if terminated or truncated:
            obs, info = env.reset()
            trace.append((np.asarray(obs).copy(), 0.0, False, False, info["episode"]))
    return trace


def _actions(env: gym.Env, n: int, seed: int) -> list:
    env.action_space.seed(seed)
    return [env.action_space.sample() for _ in range(n)]


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_check_env_passes_without_warnings(env_id):
    env = _make(env_id, render_mode="rgb_array")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped)


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_seeded_runs_are_identical_and_seeds_matter(env_id):
    env_a, env_b = _make(env_id), _make(env_id)
    actions = _actions(env_a, ROLLOUT[env_id], seed=5)
    trace_a, trace_b = _rollout(env_a, actions, 3), _rollout(env_b, actions, 3)
    for (oa, ra, ta, ua, ea), (ob, rb, tb, ub, eb) in zip(trace_a, trace_b, strict=True):
        np.testing.assert_array_equal(oa, ob)
        assert (ra, ta, ua, ea) == (rb, tb, ub, eb)
    other = _rollout(_make(env_id), actions, 4)
    # Observations or rewards must differ (Frozen Lake penalty maps change rewards, not the cells visited).
    differs = any(not np.array_equal(x[0], y[0]) or x[1] != y[1] for x, y in zip(trace_a, other, strict=False))
    assert differs, "different seeds gave one trajectory"


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_pickle_round_trip_continues_identically(env_id):
    env = _make(env_id)
    env.reset(seed=11)
    actions = _actions(env, 60, seed=1)
    for a in actions[:30]:
        if any(env.step(a)[2:4]):
            env.reset()
    clone = pickle.loads(pickle.dumps(env))
    for a in actions[30:]:
        out_a, out_b = env.step(a), clone.step(a)
        np.testing.assert_array_equal(out_a[0], out_b[0])
        assert out_a[1:4] == out_b[1:4]
        if out_a[2] or out_a[3]:  # the trial ended: both start the next one from their (equal) generators
            np.testing.assert_array_equal(env.reset()[0], clone.reset()[0])


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_task_api(env_id):
    env = _make(env_id)
    env.reset(seed=0)
    base = env.unwrapped
    tasks = base.sample_tasks(3)
    assert len(tasks) == 3
    for task in tasks:
        base.set_task(task)
        np.testing.assert_array_equal(base.get_task(), task)
        assert base.get_task() is not base.get_task(), "get_task must return a copy"
    _, info = env.reset(options={"task": tasks[1]})
    np.testing.assert_array_equal(info["task"], tasks[1])
    _, _, _, _, info = env.step(env.action_space.sample())
    np.testing.assert_array_equal(info["task"], tasks[1])
    with pytest.raises(ValueError, match=base.core.family if hasattr(base, "core") else ""):
        base.set_task(np.full(np.shape(tasks[0]), 7.5))
    with pytest.raises(ValueError):
        env.reset(options={"task": "not a task"})


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_reset_samples_fresh_tasks_without_options(env_id):
    env = _make(env_id)
    env.reset(seed=0)
    seen = {tuple(np.ravel(env.reset()[1]["task"])) for _ in range(30)}
    assert len(seen) > 1


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_out_of_space_actions_raise(env_id):
    env = _make(env_id)
    env.reset(seed=0)
    space = env.action_space
    # Box: out-of-box but finite actions are the dynamics' business (Cheetah: MuJoCo clamps them,
    # tested in test_cheetah.py); wrong shapes and non-finite values never are.
    bad = [space.n, -1, 0.5, "left"] if isinstance(space, gym.spaces.Discrete) else [
        np.full(space.shape, np.nan), np.zeros(space.shape[0] + 1)]
    for action in bad:
        with pytest.raises(ValueError, match="action"):
            env.unwrapped.step(action)


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_bad_kwargs_raise(env_id):
    for kwargs in ({"episodes_per_trial": 0}, {"episodes_per_trial": 1.5}):
        with pytest.raises(ValueError, match="episodes_per_trial"):
            gym.make(env_id, **kwargs)
    env_class = type(gym.make(env_id).unwrapped)
    with pytest.raises(ValueError, match="render_mode"):
        env_class(render_mode="bogus")
    with pytest.raises(TypeError):
        gym.make(env_id, no_such_option=3)


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_renders(env_id):
    env = _make(env_id, render_mode="ansi")
    env.reset(seed=0)
    assert isinstance(env.render(), str) and env.render()
    if "Cheetah" in env_id:
        return  # MuJoCo rendering needs GL; covered (and skipped without it) in test_cheetah.py
    env = _make(env_id, render_mode="rgb_array")
    env.reset(seed=0)
    frame = env.render()
    assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3 and min(frame.shape[:2]) >= 8


@pytest.mark.parametrize("env_id", BATCHED_IDS)
def test_batched_env_matches_single_envs(env_id):
    """Copy i of make_vec(seed=s) == a single env seeded s+i, across trial ends and autoresets."""
    n, seed, steps = 4, 21, ROLLOUT[env_id]
    vec = gym.make_vec(env_id, num_envs=n)
    # Unwrapped: the registered TimeLimit (= the longest possible trial) may add truncated=True on the
    # step where a trial of all-timed-out episodes terminates by itself; the cores are what must agree.
    singles = [_make(env_id).unwrapped for _ in range(n)]
    rng = np.random.default_rng(0)
    actions = rng.integers(0, vec.single_action_space.n, size=(steps, n))
    obs, info = vec.reset(seed=seed)
    single_obs = [env.reset(seed=seed + i)[0] for i, env in enumerate(singles)]
    np.testing.assert_array_equal(obs, np.stack(single_obs))
    trial_ends = 0
    for t in range(steps):
        obs, reward, terminated, truncated, info = vec.step(actions[t])
        for i, env in enumerate(singles):
            o, r, te, tr, inf = env.step(actions[t, i])
            assert (r, te, tr) == (reward[i], terminated[i], truncated[i]), (t, i)
            assert inf.get("episode_end", False) == bool(info.get("episode_end", np.zeros(n))[i])
            if te or tr:  # SAME_STEP: the step's info is the new trial's; the ended one is in final_info
                trial_ends += 1
                np.testing.assert_array_equal(o, info["final_obs"][i])
                assert inf["episode"] == info["final_info"]["episode"][i]
                assert inf["episode_return"] == info["final_info"]["episode_return"][i]
                o, inf = env.reset()
            assert inf["episode"] == info["episode"][i]
            np.testing.assert_array_equal(o, obs[i])
    assert trial_ends >= n, "the rollout must cross trial boundaries"


@pytest.mark.parametrize("env_id", [i for i in BATCHED_IDS if gym.spec(i).kwargs.get("episodes_per_trial", 1) > 1])
def test_trial_flag_and_episode_info(env_id):
    env = _make(env_id)
    obs, info = env.reset(seed=2)
    assert obs[-1] == 0.0 and info["episode"] == 0
    episodes_per_trial = env.unwrapped.episodes_per_trial
    boundaries, done = 0, False
    while not done:
        obs, _, terminated, truncated, info = env.step(env.action_space.sample())
        done = terminated or truncated
        if info.get("episode_end") and not done:
            boundaries += 1
            assert obs[-1] == 1.0 and "final_episode_observation" in info
            assert info["final_episode_observation"][-1] == 0.0
            assert info["episode"] == boundaries
        else:
            assert obs[-1] == 0.0
    assert boundaries == episodes_per_trial - 1 and info.get("episode_end") is True
