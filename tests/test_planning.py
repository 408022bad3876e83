"""Planning Game: dynamics, scripted and random returns, validation, batched equivalence."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from vector_equivalence import assert_vector_matches_singles

import metarl_envs  # noqa: F401
from metarl_envs.planning import COLLECT, DOWN, LEFT, RIGHT, UP
from metarl_envs.rendering import PALETTE

IDS = ["MetaPlanningGame-v0", "MetaPlanningGame4x4-v0", "MetaPlanningGameJustGoal-v0"]


def shortest_path_action(obs: np.ndarray, task: np.ndarray, size: int) -> int:
    """Knowing the map (task), walk a shortest torus path to the goal and collect there."""
    n = size * size
    cell_of_label = np.argsort(task)
    agent, goal = cell_of_label[np.argmax(obs[:n])], cell_of_label[np.argmax(obs[n : 2 * n])]
    (ay, ax), (gy, gx) = divmod(int(agent), size), divmod(int(goal), size)
    dx, dy = (gx - ax) % size, (gy - ay) % size
    if dx:
        return RIGHT if dx <= size // 2 else LEFT
    if dy:
        return UP if dy <= size // 2 else DOWN
    return COLLECT


def trial_returns(env_id: str, seeds: range, policy) -> np.ndarray:
    # Unwrapped: the registered TimeLimit equals the trial length and would add truncated=True.
    env = gym.make(env_id).unwrapped
    returns = []
    for seed in seeds:
        obs, info = env.reset(seed=seed)
        total, steps, terminated = 0.0, 0, False
        while not terminated:
            obs, reward, terminated, truncated, info = env.step(policy(obs, info))
            assert not truncated
            total, steps = total + reward, steps + 1
        assert steps == 100
        returns.append(total)
    return np.array(returns)


def test_shortest_path_policy_reaches_the_upper_bound():
    returns = trial_returns("MetaPlanningGame-v0", range(60), lambda obs, info: shortest_path_action(obs, info["task"], 3))
    # Spec: about 40 with a known map (mean distance 1.5 + 1 collect per goal). Measured over 1000
    # seeds: 39.76 (sd 1.28 per trial); these 60 seeds give 39.68.
    assert 39.3 <= returns.mean() <= 40.2
    assert returns.min() >= 36
    big = trial_returns("MetaPlanningGame4x4-v0", range(20), lambda obs, info: shortest_path_action(obs, info["task"], 4))
    # 4x4: mean distance 32/15, so about 100 / 3.13 = 32 goals; measured 31.60 over 400 seeds.
    assert 30.6 <= big.mean() <= 32.4


def test_random_policy_scores_near_chance():
    rng = np.random.default_rng(0)
    returns = trial_returns("MetaPlanningGame-v0", range(60), lambda obs, info: int(rng.integers(5)))
    assert 1.3 <= returns.mean() <= 2.2  # measured 1.75 over 1000 seeds


def test_moves_wrap_and_collect_rules():
    env = gym.make("MetaPlanningGame-v0").unwrapped
    task = np.array([4, 7, 1, 0, 8, 2, 6, 3, 5])
    env.reset(seed=0, options={"task": task})
    core = env.core
    core.agent[0], core.goal[0] = 0, 4  # cell (0, 0), goal (1, 1)
    expected = {LEFT: 2, DOWN: 6, RIGHT: 1, UP: 3, COLLECT: 0}
    for action, cell in expected.items():
        core.agent[0] = 0
        obs, reward, *_ = env.step(action)
        assert reward == 0.0 and core.agent[0] == cell and core.goal[0] == 4
        np.testing.assert_array_equal(np.flatnonzero(obs), [task[cell], 9 + task[4]])
    core.agent[0] = 4
    obs, reward, *_ = env.step(COLLECT)
    assert reward == 1.0 and core.agent[0] == 4 and core.goal[0] != 4
    assert obs[9 + task[4]] == 0.0 and obs[9 + task[core.goal[0]]] == 1.0


def test_start_goal_and_new_goals_are_uniform_over_other_cells():
    vec = gym.make_vec("MetaPlanningGame-v0", num_envs=9000)
    vec.reset(seed=0)
    core = vec.unwrapped.core
    assert np.all(core.agent != core.goal)
    assert np.bincount(core.agent, minlength=9).min() > 850  # 1000 expected per cell
    offsets = (core.goal - core.agent) % 9
    assert np.bincount(offsets, minlength=9)[1:].min() > 950  # 1125 expected per other cell
    core.agent[:] = core.goal
    old_goal = core.goal.copy()
    _, reward, *_ = vec.step(np.full(9000, COLLECT))
    assert np.all(reward == 1.0) and np.all(core.agent == old_goal) and np.all(core.goal != old_goal)
    assert np.bincount((core.goal - old_goal) % 9, minlength=9)[1:].min() > 950
    perms = np.stack(vec.reset()[1]["task"])
    assert np.all(np.sort(perms, axis=1) == np.arange(9))
    assert np.bincount(perms[:, 0], minlength=9).min() > 850


def test_just_goal_observation_flags_the_goal():
    env = gym.make("MetaPlanningGameJustGoal-v0").unwrapped
    obs, _ = env.reset(seed=1)
    assert obs.shape == (1,) and obs[0] == 0.0
    core = env.core
    core.agent[0] = (core.goal[0] + 3) % 9  # one step DOWN from the goal on the 3x3 torus
    obs, *_ = env.step(DOWN)
    assert obs[0] == 1.0 and core.agent[0] == core.goal[0]
    obs, reward, *_ = env.step(COLLECT)
    assert reward == 1.0 and obs[0] == 0.0


def test_renders_show_labels_agent_and_goal():
    env = gym.make("MetaPlanningGame-v0", render_mode="rgb_array", render_scale=1)
    env.reset(seed=0, options={"task": np.arange(9)})
    core = env.unwrapped.core
    core.agent[0], core.goal[0] = 0, 8
    image = env.render()
    assert image.shape == (36, 36, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(image[24 + 2, 2], PALETTE["agent"])  # cell (0, 0) is bottom left
    np.testing.assert_array_equal(image[1, 24 + 1], PALETTE["goal"])  # cell (2, 2) top right
    text = gym.make("MetaPlanningGame-v0", render_mode="ansi")
    text.reset(seed=0, options={"task": np.arange(9)})
    text.unwrapped.core.agent[0], text.unwrapped.core.goal[0] = 0, 8
    assert text.render().splitlines() == ["  6   7 G 8", "  3   4   5", "A 0   1   2"]


@pytest.mark.parametrize("env_id", IDS)
def test_check_env_passes_without_warnings(env_id):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(gym.make(env_id).unwrapped)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"size": 1}, "size"), ({"size": 2.5}, "size"), ({"observation": "pixels"}, "observation"),
     ({"episode_steps": 0}, "episode_steps")],
)
def test_invalid_kwargs_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        gym.make("MetaPlanningGame-v0", **kwargs)


@pytest.mark.parametrize(
    "task", [[0, 0, 1, 2, 3, 4, 5, 6, 7], list(range(8)), list(range(16)), np.arange(9) + 0.5, "abc", [[0, 1, 2]] * 3]
)
def test_invalid_tasks_raise(task):
    env = gym.make("MetaPlanningGame-v0")
    with pytest.raises(ValueError, match="MetaPlanningGame: invalid task .* permutation of 0..8"):
        env.unwrapped.set_task(task)
    with pytest.raises(ValueError, match="MetaPlanningGame: invalid task"):
        env.reset(options={"task": task})


@pytest.mark.parametrize("action", [5, -1, 0.5])
def test_invalid_actions_raise(action):
    env = gym.make("MetaPlanningGame-v0").unwrapped
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"Discrete\(5\)"):
        env.step(action)


@pytest.mark.parametrize(
    ("env_id", "kwargs"),
    [*((i, {}) for i in IDS), ("MetaPlanningGame-v0", {"episode_steps": 7, "episodes_per_trial": 3})],
)
def test_batched_equals_single(env_id, kwargs):
    # Collect often so that goals are reached and redrawn.
    actions = np.random.default_rng(3).choice(5, size=(230, 4), p=[0.15, 0.15, 0.15, 0.15, 0.4])
    assert assert_vector_matches_singles(env_id, actions, seed=5, **kwargs) >= 8
