"""T-maze families: exact optimal returns from scripted memory policies, chance levels, dynamics."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from helpers import first_copy_step

import metarl_envs  # noqa: F401
from metarl_envs.tmaze import DOWN, LEFT, RIGHT, UP

IS_START, INDICATOR, IS_END, NOISE = range(4)


def run_trials(env_id: str, policy, n_envs: int = 64, seed: int = 0, **kwargs) -> np.ndarray:
    """Run one trial in each of ``n_envs`` batched copies with a batched policy; trial returns."""
    env = gym.make_vec(env_id, num_envs=n_envs, **kwargs)
    obs, _ = env.reset(seed=seed)
    memory = np.zeros((n_envs, 4))
    returns, done = np.zeros(n_envs), np.zeros(n_envs, dtype=bool)
    while not done.all():
        actions = policy(obs, memory)
        obs, reward, terminated, truncated, info = env.step(actions)
        returns += np.where(done, 0.0, reward)
        ended = terminated | truncated
        if "episode_end" in info:
            memory[:, 3] = np.where(info["episode_end"], info["episode_return"], memory[:, 3])
        done |= ended
    return returns


def indicator_policy(obs, memory):
    """Remember the indicator; at the junction take its arm (LEFT/RIGHT elsewhere: forced right)."""
    memory[:, 0] = np.where(obs[:, INDICATOR] != 0, obs[:, INDICATOR], memory[:, 0])
    return np.where(obs[:, IS_END] == 1, np.where(memory[:, 0] > 0, UP, DOWN), RIGHT)


def test_metatmaze_optimal_return_is_exactly_16():
    returns = run_trials("MetaTMaze-v0", indicator_policy)
    np.testing.assert_array_equal(returns, 16.0)


def test_metatmaze_episodes_are_exactly_100_steps():
    env = gym.make("MetaTMaze-v0")
    env.reset(seed=0)
    lengths, steps, done = [], 0, False
    while not done:
        _, _, terminated, truncated, info = env.step(LEFT)
        steps += 1
        if info.get("episode_end"):
            lengths.append(steps)
            steps = 0
        done = terminated or truncated
    assert lengths == [100] * 4


def test_longshort_optimal_return_is_exactly_55_6():
    def policy(obs, memory):
        memory[:, 0] = np.where(obs[:, INDICATOR] != 0, obs[:, INDICATOR], memory[:, 0])
        answer = np.where(obs[:, NOISE] > 0, UP, DOWN)
        return np.where(obs[:, IS_END] == 1, np.where(memory[:, 0] > 0, UP, DOWN), answer)

    returns = run_trials("MetaTMazeLongShort-v0", policy)
    np.testing.assert_allclose(returns, 55.6, atol=1e-9)


def test_longshort_wrong_checks_stay_and_timeouts_end_episodes():
    env = gym.make("MetaTMazeLongShort-v0")
    obs, _ = env.reset(seed=0)
    wrong = DOWN if obs[NOISE] > 0 else UP
    obs, reward, *_ = env.step(wrong)
    assert reward == 0.0 and obs[IS_START] == 1.0
    obs, reward, *_ = env.step(RIGHT)  # RIGHT is not a move in Long-Short
    assert reward == 0.0 and obs[IS_START] == 1.0
    total, steps, done = 0.0, 2, False
    while not done:
        _, reward, terminated, truncated, _ = env.step(LEFT)
        total, steps, done = total + reward, steps + 1, terminated or truncated
    assert total == 0.0 and steps == 4 * 151  # 150 ordinary steps and the timeout step per episode


@pytest.mark.parametrize("vectorised", [False, True])
def test_timeout_step_ignores_the_action_pays_zero_and_ends_the_episode(vectorised):
    """The reference's limit: 150 ordinary steps, then a 151st step that does nothing but end the episode.

    The agent answers every check wrongly (no move, no reward) for 150 steps, then gives the correct
    answer at the timeout step: no reward, no move (the episode's final observation still shows the
    start cell), and the next episode starts.
    """
    if vectorised:
        env = gym.make_vec("MetaTMazeLongShort-v0", num_envs=1)
        obs, _ = env.reset(seed=1)
        obs = obs[0]
    else:
        env = gym.make("MetaTMazeLongShort-v0")
        obs, _ = env.reset(seed=1)
    def answer(obs, correct):
        return (UP if obs[NOISE] > 0 else DOWN) if correct else (DOWN if obs[NOISE] > 0 else UP)

    step = first_copy_step(env, vectorised)

    for _ in range(150):
        obs, reward, terminated, truncated, info = step(answer(obs, correct=False))
        assert reward == 0.0 and obs[IS_START] == 1.0 and not info.get("episode_end", False)
    obs, reward, terminated, truncated, info = step(answer(obs, correct=True))
    assert reward == 0.0 and info["episode_end"] and not (terminated or truncated)
    assert info["final_episode_observation"][IS_START] == 1.0  # the agent did not move
    assert obs[IS_START] == 1.0 and obs[-1] == 1.0  # the next episode's first observation, flagged
    # In the next episode the same correct answer moves the agent and pays the check reward.
    obs, reward, *_ = step(answer(obs, correct=True))
    assert reward == pytest.approx(0.1) and obs[IS_START] == 0.0


def test_agreement_optimal_return_is_exactly_16():
    def policy(obs, memory):
        at_second = (obs[:, INDICATOR] != 0) & (memory[:, 0] != 0)
        memory[:, 1] = np.where(at_second, obs[:, INDICATOR], memory[:, 1])
        memory[:, 0] = np.where((obs[:, INDICATOR] != 0) & ~at_second, obs[:, INDICATOR], memory[:, 0])
        agree = memory[:, 0] == memory[:, 1]
        action = np.where(obs[:, IS_END] == 1, np.where(agree, DOWN, UP), RIGHT)
        memory[:, :2] = np.where((obs[:, IS_END] == 1)[:, None], 0.0, memory[:, :2])  # new episode next
        return action

    returns = run_trials("MetaTMazeAgreement-v0", policy)
    np.testing.assert_array_equal(returns, 16.0)


def test_agreement_tasks_cover_all_four_combinations():
    env = gym.make("MetaTMazeAgreement-v0")
    env.reset(seed=0)
    tasks = {tuple(t) for t in env.unwrapped.sample_tasks(64)}
    assert tasks == {(1.0, 1.0), (1.0, -1.0), (-1.0, 1.0), (-1.0, -1.0)}


def test_latent_bayes_optimal_policy_reaches_15_5():
    """Posterior from the noise bits in episode one, then the outcome reveals the goal."""
    log_up, log_down = np.log(0.7 / 0.5), np.log(0.3 / 0.5)

    def policy(obs, memory):
        # memory: [log-likelihood ratio UP:DOWN, known goal (+1/-1, 0 unknown), unused, last return]
        first_step = (obs[:, IS_START] == 1) & (obs[:, -1] == 0)  # trial start (no boundary flag)
        memory[:, 0] = np.where(first_step, 0.0, memory[:, 0])
        memory[:, 1] = np.where(first_step, 0.0, memory[:, 1])
        learned = (obs[:, -1] == 1) & (memory[:, 1] == 0)  # first boundary: read episode one's outcome
        guess = np.where(memory[:, 0] > 0, 1.0, -1.0)
        memory[:, 1] = np.where(learned, np.where(memory[:, 3] > 0, guess, -guess), memory[:, 1])
        memory[:, 0] += np.where(obs[:, NOISE] > 0, log_up, log_down)
        belief = np.where(memory[:, 1] != 0, memory[:, 1], np.where(memory[:, 0] > 0, 1.0, -1.0))
        return np.where(obs[:, IS_END] == 1, np.where(belief > 0, UP, DOWN), RIGHT)

    returns = run_trials("MetaTMazeLatent-v0", policy, n_envs=512)
    assert returns.mean() >= 15.5
    assert returns.max() == 16.0


def test_latent_noise_statistics_follow_the_goal():
    env = gym.make_vec("MetaTMazeLatent-v0", num_envs=256)
    obs, info = env.reset(seed=3, options={"tasks": np.array([[1.0]] * 128 + [[-1.0]] * 128)})
    assert np.all(obs[:, INDICATOR] == 0)
    plus = np.zeros(256)
    for _ in range(50):
        obs, *_ = env.step(np.full(256, RIGHT))
        plus += obs[:, NOISE] > 0
    assert abs(plus[:128].mean() / 50 - 0.7) < 0.02
    assert abs(plus[128:].mean() / 50 - 0.5) < 0.02


@pytest.mark.parametrize("env_id", ["MetaTMaze-v0", "MetaTMazeAgreement-v0"])
def test_memoryless_guessing_is_near_chance(env_id):
    """A random arm at the junction: 0.5 x 4 - 0.5 x 3 = 0.5 per episode, 2.0 per trial."""
    rng = np.random.default_rng(0)

    def policy(obs, memory):
        return np.where(obs[:, IS_END] == 1, rng.integers(UP, DOWN + 1, len(obs)), RIGHT)

    returns = run_trials(env_id, policy, n_envs=1024)
    assert abs(returns.mean() - 2.0) < 0.35  # std of the mean: 3.5 * 2 / 32 ~ 0.22


def test_noise_is_fair_and_redrawn_every_step():
    env = gym.make_vec("MetaTMaze-v0", num_envs=512)
    obs, _ = env.reset(seed=1)
    noise = [obs[:, NOISE]]
    for _ in range(20):
        obs, *_ = env.step(np.full(512, RIGHT))
        noise.append(obs[:, NOISE])
    noise = np.stack(noise)
    assert abs((noise > 0).mean() - 0.5) < 0.02
    assert abs(np.mean(noise[1:] == noise[:-1]) - 0.5) < 0.02  # no stickiness between steps


def test_invalid_kwargs_name_the_value_and_range():
    with pytest.raises(ValueError, match=r"length must be an integer \[3, 1000000\], got 2"):
        gym.make("MetaTMaze-v0", length=2)
    with pytest.raises(ValueError, match=r"indicator_pos must be an integer in \[1, 8\], got 9|indicator_pos"):
        gym.make("MetaTMaze-v0", length=10, indicator_pos=9)
    with pytest.raises(ValueError, match="second_indicator_pos"):
        gym.make("MetaTMazeAgreement-v0", length=40)
    with pytest.raises(ValueError, match="p_up"):
        gym.make("MetaTMazeLatent-v0", p_up=1.5)



def test_longer_trials_with_matching_time_limit():
    returns = run_trials("MetaTMaze-v0", indicator_policy, episodes_per_trial=8, length=10)
    np.testing.assert_array_equal(returns, 32.0)
    env = gym.make("MetaTMaze-v0", episodes_per_trial=8, length=10, max_episode_steps=8 * 150)
    env.reset(seed=0)
    steps, done = 0, False
    while not done:
        _, _, terminated, truncated, _ = env.step(RIGHT)
        steps, done = steps + 1, terminated or truncated
    assert terminated and not truncated and steps == 8 * 10


def test_invalid_tasks_are_rejected_with_family_name():
    env = gym.make("MetaTMaze-v0").unwrapped
    with pytest.raises(ValueError, match=r"MetaTMaze: invalid task .*\+1 \(UP\) or -1 \(DOWN\)"):
        env.set_task(np.array([0.5]))
    with pytest.raises(ValueError, match="MetaTMazeAgreement"):
        gym.make("MetaTMazeAgreement-v0").unwrapped.set_task([1.0])


def test_short_corridor_kwargs():
    returns = run_trials("MetaTMaze-v0", indicator_policy, length=10)
    np.testing.assert_array_equal(returns, 16.0)
