"""MetaPointNav2D-v0: dynamics, rewards, bounds, tasks and arguments (the shared contract is in test_env_contract)."""

import gymnasium as gym
import numpy as np
import pytest

import metarl_envs  # noqa: F401


def test_steps_move_by_the_clipped_action_and_pay_minus_the_distance():
    env = gym.make("MetaPointNav2D-v0")
    obs, info = env.reset(seed=0, options={"task": [0.3, -0.4]})
    assert np.array_equal(obs, [0.0, 0.0]) and np.array_equal(info["task"], [0.3, -0.4])
    obs, reward, terminated, truncated, _ = env.step(np.array([0.5, -3.0], dtype=np.float32))
    np.testing.assert_allclose(obs, [0.05, -0.1], rtol=1e-6)
    assert reward == pytest.approx(-np.hypot(0.25, 0.3)) and not terminated and not truncated
    for _ in range(98):
        obs, reward, terminated, truncated, _ = env.step(np.zeros(2))
        assert not terminated
    obs, reward, terminated, truncated, _ = env.step(np.zeros(2))
    assert terminated and not truncated  # exactly 100 steps, the horizon is part of the task


def test_going_straight_to_the_goal_earns_what_the_docstring_says():
    env = gym.make_vec("MetaPointNav2D-v0", num_envs=500)
    obs, info = env.reset(seed=1)
    total = np.zeros(500)
    for _ in range(100):
        obs, reward, *_ = env.step(np.clip((info["task"] - obs) / 0.1, -1, 1))
        total += reward
    assert -0.7 < total.mean() < -0.35
    # The first step of a goal 0.25 away along x: one full step, then 0.15 away, then 0.05, then there.
    single = gym.make("MetaPointNav2D-v0")
    single.reset(options={"task": [0.25, 0.0]})
    rewards = [single.step(np.array([1.0, 0.0]) if k < 2 else np.array([0.5, 0.0]))[1] for k in range(3)]
    np.testing.assert_allclose(rewards, [-0.15, -0.05, 0.0], atol=1e-12)


def test_observations_and_rewards_stay_inside_their_declared_bounds():
    env = gym.make("MetaPointNav2D-v0", start=(-1.5, -1.5), episode_steps=20)
    core = env.unwrapped.core
    obs, _ = env.reset(seed=0, options={"task": [0.5, 0.5]})
    for _ in range(20):
        obs, reward, *_ = env.step(np.array([-1.0, -1.0]))  # as far from the goal as the square allows
        assert env.observation_space.contains(obs)
        assert core.reward_range[0] <= reward <= 0
    assert reward == pytest.approx(core.reward_range[0])  # the bound is attained: it is tight
    np.testing.assert_allclose(obs, [-3.5, -3.5], rtol=1e-6)


def test_tasks_are_uniform_in_the_goal_box_and_goals_outside_it_are_refused():
    env = gym.make("MetaPointNav2D-v0", goal_low=(1.0, -0.5), goal_high=(2.0, 0.5))
    env.reset(seed=3)
    tasks = np.array(env.unwrapped.sample_tasks(4000))
    assert tasks.shape == (4000, 2) and tasks.min(0) == pytest.approx([1.0, -0.5], abs=0.01)
    assert tasks.max(0) == pytest.approx([2.0, 0.5], abs=0.01) and tasks.mean(0) == pytest.approx([1.5, 0.0], abs=0.02)
    for bad in ([0.0, 0.0], [1.5], [1.5, np.nan], "north"):
        with pytest.raises(ValueError, match="MetaPointNav2D: invalid task"):
            env.reset(options={"task": bad})


@pytest.mark.parametrize("kwargs, name", [({"start": (0.0,)}, "start"), ({"start": (0.0, np.inf)}, "start"),
                                          ({"goal_low": (1.0, 0.0), "goal_high": (0.0, 1.0)}, "goal_low"),
                                          ({"max_step": 0.0}, "max_step"), ({"episode_steps": 0}, "episode_steps")])
def test_bad_arguments_name_themselves(kwargs, name):
    with pytest.raises(ValueError, match=name):
        gym.make("MetaPointNav2D-v0", **kwargs)
