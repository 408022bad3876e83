"""The contract every registered id keeps, checked id by id."""

from __future__ import annotations

import pickle
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env, data_equivalence

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
    trace = [(np.asarray(obs).copy(), 0.0, False, False, info["inner_episode"])]
    for a in actions:
        obs, reward, terminated, truncated, info = env.step(a)
        trace.append((np.asarray(obs).copy(), reward, terminated, truncated, info["inner_episode"]))
        if terminated or truncated:
            obs, info = env.reset()
            trace.append((np.asarray(obs).copy(), 0.0, False, False, info["inner_episode"]))
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
    env = gym.make(env_id).unwrapped
    with pytest.raises(ValueError, match="render_mode"):
        type(env)(render_mode="bogus", core=env.core_class)
    with pytest.raises(ValueError, match="core"):
        gym.make(env_id, core="metarl_envs.tmaze:NoSuchCore")
    with pytest.raises(TypeError):
        gym.make(env_id, no_such_option=3)


def _render_ansi(env_id: str, **kwargs) -> str:
    env = _make(env_id, render_mode="ansi", **kwargs)
    env.reset(seed=0)
    return env.render()


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_renders(env_id):
    env = _make(env_id, render_mode="ansi")
    env.reset(seed=0)
    assert isinstance(env.render(), str) and env.render()
    assert _render_ansi(env_id, render_scale=3) == env.render()  # render_scale leaves ANSI alone
    for bad in (0, 1.5, "big"):
        with pytest.raises(ValueError, match="render_scale"):
            _make(env_id, render_scale=bad)
    if "Cheetah" in env_id:
        return  # MuJoCo rendering needs GL; covered (and skipped without it) in test_cheetah.py
    env = _make(env_id, render_mode="rgb_array")
    env.reset(seed=0)
    frame = env.render()
    assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3 and min(frame.shape[:2]) >= 8
    assert max(frame.shape[:2]) >= 256, "frames a person can read"
    base = _make(env_id, render_mode="rgb_array", render_scale=1)
    base.reset(seed=0)
    small = base.render()
    assert max(small.shape[:2]) < 256 or frame.shape == small.shape
    twice = _make(env_id, render_mode="rgb_array", render_scale=2)
    twice.reset(seed=0)
    np.testing.assert_array_equal(twice.render(), small.repeat(2, axis=0).repeat(2, axis=1))
    if env_id in BATCHED_IDS:  # the native vector env renders each copy the same way
        vec = gym.make_vec(env_id, num_envs=2, render_mode="rgb_array")
        vec.reset(seed=0)
        np.testing.assert_array_equal(vec.render()[0], frame)


@pytest.mark.parametrize("env_id", [i for i in BATCHED_IDS if gym.spec(i).kwargs.get("episodes_per_trial", 1) > 1])
def test_trial_flag_and_episode_info(env_id):
    env = _make(env_id)
    obs, info = env.reset(seed=2)
    assert obs[-1] == 0.0 and info["inner_episode"] == 0
    episodes_per_trial = env.unwrapped.episodes_per_trial
    boundaries, done = 0, False
    while not done:
        obs, _, terminated, truncated, info = env.step(env.action_space.sample())
        done = terminated or truncated
        if info.get("episode_end") and not done:
            boundaries += 1
            assert obs[-1] == 1.0 and "final_episode_observation" in info
            assert info["final_episode_observation"][-1] == 0.0
            assert info["inner_episode"] == boundaries
        else:
            assert obs[-1] == 0.0
    assert boundaries == episodes_per_trial - 1 and info.get("episode_end") is True


# --- Ported from Gymnasium's own suites: tests/envs/test_envs.py, tests/envs/registration/test_make*.py,
# tests/vector/test_vector_env.py, test_vector_env_info.py and test_autoreset_mode.py -----------------


def _check_rendered(frame, mode: str) -> None:
    if mode == "rgb_array":
        assert isinstance(frame, np.ndarray) and frame.ndim == 3 and frame.shape[2] == 3 and frame.dtype == np.uint8
    else:
        assert isinstance(frame, str) and frame


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_gymnasium_determinism_rollout(env_id):
    """Two envs with one seed: equal observations (inside the space), rewards, flags and whole infos."""
    env_1, env_2 = _make(env_id), _make(env_id)
    assert data_equivalence(env_1.reset(seed=0), env_2.reset(seed=0))
    env_1.action_space.seed(0)
    for t in range(ROLLOUT[env_id]):
        action = env_1.action_space.sample()
        step_1, step_2 = env_1.step(action), env_2.step(action)
        assert data_equivalence(step_1, step_2), t
        assert env_1.observation_space.contains(step_1[0]), t
        if step_1[2] or step_1[3]:
            assert data_equivalence(env_1.reset(seed=0), env_2.reset(seed=0))


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_gymnasium_render_modes(env_id):
    """Every declared render mode renders after reset and after a step."""
    env = _make(env_id)
    assert set(env.metadata["render_modes"]) == {"rgb_array", "ansi"}
    for mode in env.metadata["render_modes"]:
        if mode == "rgb_array" and "Cheetah" in env_id:
            continue  # MuJoCo rendering needs GL; covered (and skipped without it) in test_cheetah.py
        env = _make(env_id, render_mode=mode)
        env.reset(seed=0)
        _check_rendered(env.render(), mode)
        env.step(env.action_space.sample())
        _check_rendered(env.render(), mode)
        env.close()


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_gymnasium_pickle_env(env_id):
    """A pickled env resets and steps exactly like the original (infos included)."""
    env = _make(env_id)
    env.reset(seed=5)
    clone = pickle.loads(pickle.dumps(env))
    assert data_equivalence(env.reset(), clone.reset())
    env.action_space.seed(2)
    for _ in range(20):
        action = env.action_space.sample()
        assert data_equivalence(env.step(action), clone.step(action))


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_gymnasium_make_paths(env_id):
    """``module:id``, the id and the spec make the same env; the spec records the registration, and no
    registered time limit: the env's spec reports the trial bound that follows from its kwargs."""
    spec = gym.spec(env_id)
    assert spec.max_episode_steps is None and spec.entry_point.startswith("metarl_envs.")
    by_module = gym.make(f"metarl_envs:{env_id}")
    by_spec = gym.make(spec)
    assert by_module.spec.id == by_spec.spec.id == env_id
    assert by_module.spec.max_episode_steps == by_module.unwrapped.max_trial_steps
    assert data_equivalence(by_module.reset(seed=9), by_spec.reset(seed=9))
    assert data_equivalence(by_module.reset(seed=9), _make(env_id).reset(seed=9))


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_gymnasium_make_vec_modes_agree(env_id):
    """``make_vec``'s vectorisation modes give the same spaces and first observations."""
    modes = ["sync"] + (["vector_entry_point"] if env_id in BATCHED_IDS else [])
    envs = [gym.make_vec(env_id, num_envs=2, vectorization_mode=m) for m in modes]
    first = [e.reset(seed=4) for e in envs]
    for env, (obs, _) in zip(envs[1:], first[1:], strict=True):
        assert env.single_observation_space == envs[0].single_observation_space
        assert env.single_action_space == envs[0].single_action_space
        assert env.observation_space == envs[0].observation_space
        np.testing.assert_array_equal(obs, first[0][0])
    for env in envs:
        env.close()


def test_gymnasium_async_vector_env_runs_a_family():
    """AsyncVectorEnv pickles the env factories into worker processes."""
    envs = gym.make_vec("MetaTMaze-v0", num_envs=2, vectorization_mode="async", length=4)
    sync = gym.make_vec("MetaTMaze-v0", num_envs=2, vectorization_mode="sync", length=4)
    try:
        assert data_equivalence(envs.reset(seed=1), sync.reset(seed=1))
        for _ in range(20):
            assert data_equivalence(envs.step(np.array([1, 2])), sync.step(np.array([1, 2])))
    finally:
        envs.close()
        sync.close()


def _check_vector_info(info: dict, n: int, space: gym.Space) -> None:
    """Gymnasium's vector-info layout: every key ``k`` has a bool mask ``_k`` of shape (n,)."""
    for key, value in info.items():
        if key.startswith("_"):
            continue
        mask = info["_" + key]
        assert mask.dtype == np.bool_ and mask.shape == (n,), key
        if key == "final_obs":
            assert value.dtype == object and len(value) == n
            for i in range(n):
                assert (value[i] is None) != bool(mask[i])
                assert value[i] is None or space.contains(value[i])
        elif key == "final_info":
            _check_vector_info(value, n, space)
        else:
            assert len(value) == n, key


@pytest.mark.parametrize("env_id", BATCHED_IDS)
def test_gymnasium_native_vector_env_equals_sync_vector_env(env_id):
    """The native batched env steps exactly like Gymnasium's SAME_STEP SyncVectorEnv of single envs.

    So copy ``i`` of ``make_vec(seed=s)`` is the single env seeded ``s + i``, across trial ends and
    autoresets (the spec's single == batched requirement).

    Observations, rewards, termination and truncation flags and whole infos (``final_obs``,
    ``final_info`` and every mask, dtypes included) must be equal. The single envs are unwrapped:
    trials end by themselves, and the registered TimeLimit would add ``truncated=True`` where the
    longest possible trial ends exactly at the limit.
    """
    n, seed = 3, 13
    native = gym.make_vec(env_id, num_envs=n)
    sync = gym.vector.SyncVectorEnv([lambda: _make(env_id).unwrapped for _ in range(n)],
                                    autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    assert native.metadata["autoreset_mode"] is gym.vector.AutoresetMode.SAME_STEP
    assert native.single_observation_space == sync.single_observation_space
    assert native.single_action_space == sync.single_action_space
    assert native.observation_space == sync.observation_space and native.action_space == sync.action_space
    assert data_equivalence(native.reset(seed=seed), sync.reset(seed=seed))
    native.action_space.seed(seed)
    ends = 0
    for t in range(ROLLOUT[env_id]):
        actions = native.action_space.sample()
        step_native, step_sync = native.step(actions), sync.step(actions)
        assert data_equivalence(step_native, step_sync), t
        obs, _, terminated, truncated, info = step_native
        assert native.observation_space.contains(obs)
        _check_vector_info(info, n, native.single_observation_space)
        ends += int((terminated | truncated).sum())
    assert ends >= n, "the rollout must cross trial ends"


@pytest.mark.parametrize("env_id", BATCHED_IDS)
def test_gymnasium_vector_seeding(env_id):
    """``seed=s`` seeds copy i with s + i; a list seeds each copy; the same seed repeats the run."""
    vec = gym.make_vec(env_id, num_envs=2)
    singles = [_make(env_id).unwrapped for _ in range(2)]
    obs, _ = vec.reset(seed=[7, 3])
    np.testing.assert_array_equal(obs, np.stack([singles[0].reset(seed=7)[0], singles[1].reset(seed=3)[0]]))
    vec.action_space.seed(0)
    actions = [vec.action_space.sample() for _ in range(30)]
    runs = []
    for _ in range(2):
        vec.reset(seed=11)
        runs.append([vec.step(a)[:2] for a in actions])
    assert data_equivalence(runs[0], runs[1])


@pytest.mark.parametrize("env_id", BATCHED_IDS)
def test_gymnasium_vector_partial_reset(env_id):
    """Gymnasium's ``reset_mask``: only masked copies restart; malformed masks are refused."""
    vec = gym.make_vec(env_id, num_envs=3)
    vec.reset(seed=0)
    vec.action_space.seed(1)
    for _ in range(3):
        step_obs, *_ = vec.step(vec.action_space.sample())
    mask = np.array([True, False, True])
    obs, info = vec.reset(options={"reset_mask": mask})
    np.testing.assert_array_equal(obs[1], step_obs[1])
    assert vec.observation_space.contains(obs)
    np.testing.assert_array_equal(info["_task"], mask)
    assert list(info["inner_episode"][mask]) == [0, 0]
    for bad in (np.array([True]), np.array([True, True, False, False]), np.array([[True, True, True]]),
                np.array([1, 1, 0]), np.array([1.0, 1.0, 0.0]), np.zeros(3, dtype=bool)):
        with pytest.raises(ValueError, match="reset_mask"):
            vec.reset(options={"reset_mask": bad})


@pytest.mark.parametrize("env_id", BATCHED_IDS)
def test_gymnasium_vector_pickle(env_id):
    """A pickled native vector env continues exactly like the original."""
    vec = gym.make_vec(env_id, num_envs=2)
    vec.reset(seed=2)
    vec.action_space.seed(2)
    for _ in range(10):
        vec.step(vec.action_space.sample())
    clone = pickle.loads(pickle.dumps(vec))
    for _ in range(40):
        actions = vec.action_space.sample()
        assert data_equivalence(vec.step(actions), clone.step(actions))
