"""Cheetah-Dir / Cheetah-Vel: spec rewards, HalfCheetah-v5 dynamics, seeding, trials, validation, render."""

from __future__ import annotations

import pickle
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from vector_equivalence import assert_vector_matches_singles

import metarl_envs  # noqa: F401  (registers the ids)
from metarl_envs import cheetah

DT = 0.05


def random_actions(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, size=(n, 6)).astype(np.float32)


@pytest.mark.parametrize("env_id", ["MetaCheetahDir-v0", "MetaCheetahVel-v0"])
def test_rewards_and_info_follow_the_spec(env_id):
    env = gym.make(env_id)
    _, info = env.reset(seed=3)
    target = info["task"][0]
    x_before = info["x_position"]
    for action in random_actions(200):
        _, reward, _, _, info = env.step(action)
        velocity = (info["x_position"] - x_before) / DT
        forward = target * velocity if "Dir" in env_id else -abs(velocity - target)
        ctrl = -0.05 * float(np.sum(np.square(action.astype(np.float64))))
        assert info["x_velocity"] == pytest.approx(velocity, rel=1e-9, abs=1e-9)
        assert info["reward_forward"] == pytest.approx(forward, rel=1e-9, abs=1e-9)
        assert info["reward_ctrl"] == pytest.approx(ctrl, rel=1e-12)
        assert reward == pytest.approx(forward + ctrl, rel=1e-9, abs=1e-9)
        x_before = info["x_position"]
    assert info["x_position"] == env.unwrapped.core.qpos[0, 0]


def test_dynamics_and_observation_are_halfcheetah_v5(tmp_path, monkeypatch):
    """From the same state and actions, Gymnasium's HalfCheetah-v5 gives the same physics."""
    monkeypatch.chdir(tmp_path)  # MuJoCo logs HalfCheetah-v5's deprecated XML attribute to the cwd
    env = gym.make("MetaCheetahDir-v0")
    env.reset(seed=1, options={"task": [-1.0]})
    core = env.unwrapped.core
    reference = gym.make("HalfCheetah-v5").unwrapped
    reference.reset(seed=0)
    reference.set_state(core.qpos[0].copy(), core.qvel[0].copy())
    for action in random_actions(60, seed=2):
        obs, _, _, _, info = env.step(action)
        ref_obs, _, _, _, ref_info = reference.step(action)
        assert obs.shape == (20,) and obs.dtype == np.float32
        # The physics is HalfCheetah-v5's bit for bit (the warm start is part of each copy's state).
        np.testing.assert_array_equal(core.qpos[0], reference.data.qpos)
        np.testing.assert_array_equal(core.qvel[0], reference.data.qvel)
        np.testing.assert_array_equal(obs[:17], ref_obs.astype(np.float32))
        np.testing.assert_array_equal(obs[17:], reference.get_body_com("torso").astype(np.float32))
        assert info["x_velocity"] == pytest.approx(ref_info["x_velocity"], abs=1e-12)
        assert info["reward_forward"] == pytest.approx(-ref_info["reward_forward"], abs=1e-12)  # d = -1
        assert info["reward_ctrl"] == pytest.approx(0.5 * ref_info["reward_ctrl"], rel=1e-6)  # 0.05 vs 0.1


def test_reset_noise_matches_halfcheetah_v5_distribution():
    env = gym.make("MetaCheetahVel-v0")
    env.reset(seed=0)
    core = env.unwrapped.core
    qpos, qvel = [], []
    for _ in range(1500):
        env.reset()
        qpos.append(core.qpos[0].copy())
        qvel.append(core.qvel[0].copy())
    qpos_noise, qvel_noise = np.array(qpos) - core.init_qpos, np.array(qvel) - core.init_qvel
    n = qvel_noise.size
    assert np.abs(qpos_noise).max() <= 0.1 and np.abs(qpos_noise).max() > 0.099  # U(-0.1, 0.1)
    assert abs(qpos_noise.mean()) < 4 * 0.1 / np.sqrt(3 * n)
    assert abs(qvel_noise.mean()) < 4 * 0.1 / np.sqrt(n)  # 0.1 * N(0, 1)
    assert abs(qvel_noise.std() - 0.1) < 4 * 0.1 / np.sqrt(2 * n)
    assert abs(np.mean(np.abs(qvel_noise) > 0.2) - 0.0455) < 0.0072  # normal tails (4 standard errors), not uniform


def test_episodes_last_200_steps_and_end_truncated():
    env = gym.make("MetaCheetahVel-v0", velocity_range=(0.0, 2.0))
    env.reset(seed=0)
    total = 0.0
    for t, action in enumerate(random_actions(200)):
        _, reward, terminated, truncated, info = env.step(action)
        total += reward
        assert not terminated and truncated == (t == 199)
    assert info["episode_end"] and info["episode_return"] == pytest.approx(total)

    env = gym.make("MetaCheetahDir-v0", episodes_per_trial=2, max_episode_steps=400)
    obs, info = env.reset(seed=0)
    assert obs.shape == (21,) and obs[-1] == 0.0 and env.observation_space.shape == (21,)
    flags, ends = [], []
    for action in random_actions(400):
        obs, _, terminated, truncated, info = env.step(action)
        flags.append(obs[-1])
        ends.append((info.get("episode_end", False), terminated, truncated))
    assert [i for i, f in enumerate(flags) if f] == [199]
    assert ends[199] == (True, False, False) and ends[399] == (True, False, True)
    assert sum(e[0] for e in ends) == 2


def test_seeding_is_deterministic():
    def run(seed, env_id="MetaCheetahVel-v0"):
        env = gym.make(env_id)
        obs, info = env.reset(seed=seed)
        trace = [obs, info["task"]]
        for action in random_actions(30):
            obs, reward, *_ = env.step(action)
            trace += [obs, np.array([reward])]
        return np.concatenate(trace)

    np.testing.assert_array_equal(run(5), run(5))
    assert not np.array_equal(run(5)[:20], run(6)[:20])
    tasks = np.array([gym.make("MetaCheetahDir-v0").reset(seed=s)[1]["task"][0] for s in range(40)])
    assert set(tasks) == {-1.0, 1.0}
    vel = gym.make("MetaCheetahVel-v0", velocity_range=(0.5, 2.0)).unwrapped
    vel.reset(seed=0)
    samples = np.array(vel.sample_tasks(4000))
    assert samples.shape == (4000, 1) and samples.min() >= 0.5 and samples.max() < 2.0
    assert abs(samples.mean() - 1.25) < 0.03


def test_check_env_pickle_and_sync_vectorisation():
    env = gym.make("MetaCheetahVel-v0", velocity_range=(0.0, 2.0), episodes_per_trial=2, max_episode_steps=400)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped, skip_render_check=True)
    env.reset(seed=2)
    for action in random_actions(10):
        env.step(action)
    clone = pickle.loads(pickle.dumps(env))
    for action in random_actions(20, seed=1):
        first, second = env.step(action), clone.step(action)
        np.testing.assert_array_equal(first[0], second[0])
        assert first[1:4] == second[1:4]
    envs = gym.make_vec("MetaCheetahDir-v0", num_envs=2)
    obs, _ = envs.reset(seed=0)
    assert obs.shape == (2, 20)
    envs.close()


def test_invalid_kwargs_tasks_and_actions_raise():
    for bad in [(3.0, 0.0), ("a", 1.0), (0.0, np.inf), 5.0, (0.0, 1.0, 2.0), (True, 2.0)]:
        with pytest.raises(ValueError, match="velocity_range"):
            gym.make("MetaCheetahVel-v0", velocity_range=bad)
    with pytest.raises(TypeError):
        gym.make("MetaCheetahDir-v0", velocity_range=(0.0, 1.0))
    direction = gym.make("MetaCheetahDir-v0").unwrapped
    for task in ([0.5], [2.0], "x", [1.0, -1.0]):
        with pytest.raises(ValueError, match="MetaCheetahDir"):
            direction.set_task(task)
    velocity = gym.make("MetaCheetahVel-v0", velocity_range=(0.0, 2.0)).unwrapped
    for task in ([2.5], [-0.1], [np.nan], None):
        with pytest.raises(ValueError, match="MetaCheetahVel"):
            velocity.set_task(task)
    velocity.set_task(np.array([2.0]))
    velocity.reset(seed=0)
    for action in (np.zeros(5), np.full(6, np.nan), np.full(6, np.inf), np.zeros((2, 6))):
        with pytest.raises(ValueError, match="action"):
            velocity.step(action)


def test_out_of_box_actions_are_clamped_by_mujoco_and_pay_their_raw_control_cost():
    """As HalfCheetah-v5 (and the reference, which stepped raw Gaussian samples): the physics sees the
    action clamped to [-1, 1] (the actuators are ctrllimited), the control cost the action as given."""
    model = cheetah.load_half_cheetah()
    assert model.actuator_ctrllimited.all() and (model.actuator_ctrlrange == [-1.0, 1.0]).all()
    raw_env, clipped_env = gym.make("MetaCheetahVel-v0"), gym.make("MetaCheetahVel-v0")
    raw_env.reset(seed=4, options={"task": [1.0]})
    clipped_env.reset(seed=4, options={"task": [1.0]})
    for action in 2.5 * random_actions(30, seed=5):
        assert np.abs(action).max() > 1.0
        obs, reward, _, _, info = raw_env.step(action)
        clipped_obs, _, _, _, clipped_info = clipped_env.step(np.clip(action, -1.0, 1.0))
        np.testing.assert_array_equal(obs, clipped_obs)
        assert info["reward_forward"] == clipped_info["reward_forward"]
        assert info["reward_ctrl"] == pytest.approx(-0.05 * float(np.sum(np.square(action.astype(np.float64)))), rel=1e-12)
        assert info["reward_ctrl"] < clipped_info["reward_ctrl"]


def test_rgb_render():
    env = gym.make("MetaCheetahDir-v0", render_mode="rgb_array")
    env.reset(seed=0)
    try:
        first = env.render()
    except Exception as error:  # no usable OpenGL backend (EGL / OSMesa / a display)
        pytest.skip(f"MuJoCo cannot render here ({error!r}); set MUJOCO_GL=egl or osmesa to test rendering")
    assert first.shape == (480, 480, 3) and first.dtype == np.uint8 and first.std() > 1.0
    for action in random_actions(20):
        env.step(action)
    assert not np.array_equal(env.render(), first)
    clone = pickle.loads(pickle.dumps(env))  # the renderer is rebuilt after unpickling
    np.testing.assert_array_equal(clone.render(), env.render())
    env.close()
    clone.close()


def test_ansi_render_reports_state():
    env = gym.make("MetaCheetahVel-v0", render_mode="ansi")
    env.reset(seed=0, options={"task": [1.5]})
    _, reward, _, _, info = env.step(np.zeros(6, dtype=np.float32))
    text = env.render()
    assert f"x={info['x_position']:+.3f}" in text and "task=+1.500" in text and f"reward={reward:+.3f}" in text
    assert cheetah.EPISODE_STEPS == 200 and cheetah.FRAME_SKIP == 5


@pytest.mark.parametrize(("env_id", "nthread"), [("MetaCheetahVel-v0", 0), ("MetaCheetahDir-v0", 2)])
def test_batched_core_matches_single_envs_with_infos(env_id, nthread):
    """Copy i of make_vec(seed=s) equals a single env seeded s + i bit for bit, infos included, threaded or not."""
    actions = np.random.default_rng(4).uniform(-1, 1, size=(230, 5, 6)).astype(np.float32)
    assert assert_vector_matches_singles(env_id, actions, seed=7, nthread=nthread) == 5
    vec = gym.make_vec(env_id, num_envs=3)
    assert isinstance(vec.unwrapped, cheetah.MetaCheetahVectorEnv) and vec.unwrapped.core.nthread == 0
    with pytest.raises(ValueError, match="nthread"):
        gym.make_vec(env_id, num_envs=2, nthread=-1)
