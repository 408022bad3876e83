"""evaluate_meta: meta-episode return of scripted agents, computed from first principles."""

import numpy as np
import pytest

from metarl_agents.training.evaluation import evaluate_meta
from metarl_agents.training.vec_env import make_vec_env

UP, DOWN, RIGHT = 2, 3, 1
STATE = slice(-5, None)  # the current observation [is_start, indicator, is_end, noise, flag] in the transition


class OptimalTMaze:
    """Remembers the indicator of the current episode and turns to it at the junction."""

    def predict(self, obs, state=None, episode_start=None, deterministic=False):
        s = obs[:, STATE]
        goal = np.zeros(len(obs)) if state is None else state.copy()
        goal[np.asarray(episode_start, dtype=bool)] = 0.0
        goal = np.where(s[:, 1] != 0, s[:, 1], goal)
        return np.where(s[:, 2] == 1, np.where(goal > 0, UP, DOWN), RIGHT), goal


class AlwaysUp:
    def predict(self, obs, state=None, episode_start=None, deterministic=False):
        return np.full(len(obs), UP), state


def test_optimal_policy_scores_16():
    result = evaluate_meta(OptimalTMaze(), "MetaTMaze-v0")
    assert result["meta_episode_return"] == 16.0
    assert result["episode_returns"] == [4.0] * 4
    assert result["per_task"] == [[4.0] * 4] * 16


@pytest.mark.parametrize("seed", [0, 7])
def test_memoryless_policy_matches_the_task_draw(seed):
    env = make_vec_env("MetaTMaze-v0", 16, seed=seed, length=10)
    env.reset()
    goals = np.array([info["task"][0] for info in env.reset_infos])
    per_episode = np.where(goals > 0, 4.0, -3.0)
    result = evaluate_meta(AlwaysUp(), "MetaTMaze-v0", seed=seed, env_kwargs={"length": 10})
    assert result["per_task"] == [[r] * 4 for r in per_episode]
    assert result["meta_episode_return"] == pytest.approx(4 * per_episode.mean())


def test_bad_input():
    with pytest.raises(ValueError, match="n_tasks"):
        evaluate_meta(AlwaysUp(), "MetaTMaze-v0", n_tasks=0)
    with pytest.raises(ValueError, match="predict"):
        evaluate_meta(object(), "MetaTMaze-v0")
