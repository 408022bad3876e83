"""Training callbacks that compose: our evaluation callback with SB3's children, and our stop rule under SB3's
EvalCallback; the patience rule; the evaluation schedule the leaderboard documents."""

import math

import numpy as np
import pytest
from stable_baselines3.common.callbacks import (
    CallbackList,
    EvalCallback,
    StopTrainingOnNoModelImprovement,
    StopTrainingOnRewardThreshold,
)

from metarl_agents.leaderboard.grid import evaluation_frames
from metarl_agents.policies import RNNPolicy
from metarl_agents.training.callbacks import EvaluationCallback, OnRolloutEnd, StopTrainingOnReturn
from metarl_agents.training.evaluation import MetaEvalCallback
from metarl_agents.training.ppo import MetaPPO
from metarl_agents.training.vec_env import make_vec_env

SMALL = {"encoder_hidden": 16, "head": "mlp", "net_arch": (16,), "head_state_dim": 8}
N_ENVS, N_STEPS = 4, 10
ROLLOUT = N_ENVS * N_STEPS  # frames per update


def small_model(**kwargs):
    env = make_vec_env("MetaTMaze-v0", N_ENVS, seed=0, length=10)
    return MetaPPO(RNNPolicy, env, n_steps=N_STEPS, n_minibatches=2, policy_kwargs=SMALL, seed=0, device="cpu",
                   **kwargs)


def scripted(returns):
    """An evaluation that returns the given meta-episode returns in turn (and records the frames it saw)."""
    seen = []

    def evaluate(model):
        seen.append(int(model.num_timesteps))
        return {"meta_episode_return": returns[len(seen) - 1]}

    evaluate.seen = seen
    return evaluate


def no_improvement_stop(returns, max_no_improvement_evals):
    """The index of the evaluation at which SB3's StopTrainingOnNoModelImprovement stops, from its documentation:
    more than ``max_no_improvement_evals`` evaluations in a row without a new best."""
    best, without = -math.inf, 0
    for index, value in enumerate(returns):
        best, without = (value, 0) if value > best else (best, without + 1)
        if without > max_no_improvement_evals:
            return index
    return None


def test_sb3_no_model_improvement_in_a_callback_list_stops_at_the_expected_evaluation():
    """Learning rate 0: the weights stay, so the return of the same held-out tasks soon stops improving (only
    the head's running normaliser moves) and SB3's own rule ends ``learn`` right after the evaluation that
    meets it, long before the budget."""
    model = small_model(learning_rate=0.0)
    evaluation = MetaEvalCallback("MetaTMaze-v0", eval_freq=ROLLOUT, n_tasks=2, env_kwargs={"length": 10},
                                  callback_after_eval=StopTrainingOnNoModelImprovement(max_no_improvement_evals=1))
    rollouts = []
    model.learn(100 * ROLLOUT, callback=CallbackList([evaluation, OnRolloutEnd(lambda m: rollouts.append(1))]))
    returns = [r["meta_episode_return"] for r in evaluation.results]
    last = no_improvement_stop(returns, 1)
    assert last == len(returns) - 1 >= 2  # stopped at the first evaluation meeting the rule, not before or after
    assert [r["frames"] for r in evaluation.results] == [k * ROLLOUT for k in range(last + 1)]
    assert model.num_timesteps == last * ROLLOUT + N_ENVS  # the first step after that evaluation
    assert len(rollouts) == last and not evaluation.continue_training
    assert evaluation.best_mean_reward == max(returns)


def test_sb3_reward_threshold_as_callback_on_new_best_stops_at_the_first_best_above_it():
    model = small_model()
    evaluate = scripted([1.0, 3.0, 2.0, 5.0, 9.0, 9.0])
    evaluation = EvaluationCallback(evaluate, eval_freq=2 * ROLLOUT,
                                    callback_on_new_best=StopTrainingOnRewardThreshold(reward_threshold=4.0))
    model.learn(100 * ROLLOUT, callback=evaluation)
    assert evaluate.seen == [0, 2 * ROLLOUT, 4 * ROLLOUT, 6 * ROLLOUT]  # 5.0 is the first best >= 4
    assert evaluation.best_mean_reward == 5.0 and evaluation.last_mean_reward == 5.0


@pytest.mark.parametrize("patience", [1, 2, 3])
def test_patience_rule_stops_after_exactly_patience_consecutive_hits(patience):
    # Threshold 4: hits at evaluations 1, 2 (streak 2), a miss at 3, then hits from 4 on.
    returns = [5.0, 4.0, 3.9, 4.5, 6.0, 7.0, 8.0, 9.0]
    expected_last = {1: 0, 2: 1, 3: 5}[patience]  # index of the evaluation that meets the rule
    model = small_model()
    evaluate = scripted(returns)
    rule = StopTrainingOnReturn(4.0, patience=patience)
    evaluation = EvaluationCallback(evaluate, eval_freq=ROLLOUT, callback_after_eval=rule)
    model.learn(100 * ROLLOUT, callback=evaluation)
    assert evaluate.seen == [k * ROLLOUT for k in range(expected_last + 1)]
    assert rule.met and rule.streak == patience
    assert model.num_timesteps == expected_last * ROLLOUT + N_ENVS


def test_patience_rule_counts_a_resumed_streak_and_resets_on_a_miss():
    rule = StopTrainingOnReturn(2.5, patience=3)
    assert [rule.observe(r) for r in (3.0, 2.5, 2.4999, 3.0, 2.5)] == [False, False, False, False, False]
    assert rule.streak == 2 and rule.observe(10.0) and rule.met
    assert rule.observe(math.nan) is False and rule.streak == 0  # a NaN return is a miss


def test_our_stop_rule_under_sb3_eval_callback():
    model = small_model()
    eval_env = make_vec_env("MetaTMaze-v0", 1, seed=1_000_003, length=10)
    callback = EvalCallback(eval_env, callback_after_eval=StopTrainingOnReturn(-1e9), n_eval_episodes=1,
                            eval_freq=2, verbose=0)
    model.learn(100 * ROLLOUT, callback=callback)
    assert callback.n_calls == 2 and model.num_timesteps == 2 * N_ENVS  # stopped at SB3's first evaluation


def test_schedule_is_the_leaderboards_documented_one():
    """eval_freq not a multiple of the rollout: the first rollout start at or past each multiple, then the end."""
    model = small_model()
    every, frames = 70, 7 * ROLLOUT
    evaluate = scripted([0.0] * 20)
    model.learn(frames, callback=EvaluationCallback(evaluate, every, eval_at_start=False))
    assert evaluate.seen == evaluation_frames(frames, every, ROLLOUT) == [80, 160, 240, 280]
    # A second learn continuing the count: the schedule goes on from the multiples, not from the restart.
    evaluate = scripted([0.0] * 20)
    model.learn(3 * ROLLOUT, callback=EvaluationCallback(evaluate, every, eval_at_end=False), reset_num_timesteps=False)
    assert evaluate.seen == [280, 360]


def test_children_run_at_every_evaluation_in_order_and_a_stop_skips_the_end_evaluation():
    model = small_model()
    events = []
    evaluate = scripted([1.0, 0.5, 2.0, 2.0])

    class Child(StopTrainingOnReturn):
        def _on_step(self):
            events.append((self.name, self.parent.last_mean_reward))
            return super()._on_step()

    best, after = Child(1.5), Child(2.0, patience=2)
    best.name, after.name = "best", "after"
    evaluation = EvaluationCallback(evaluate, ROLLOUT, callback_on_new_best=best, callback_after_eval=after,
                                    on_result=lambda result: events.append(("result", result["meta_episode_return"])))
    model.learn(100 * ROLLOUT, callback=evaluation)
    assert events == [("result", 1.0), ("best", 1.0), ("after", 1.0), ("result", 0.5), ("after", 0.5),
                      ("result", 2.0), ("best", 2.0), ("after", 2.0)]
    # "best" asked to stop at the third evaluation, yet "after" ran; the stop holds, and no end evaluation follows.
    assert len(evaluation.results) == 3 and model.num_timesteps == 2 * ROLLOUT + N_ENVS


def test_bad_settings_are_refused_with_the_value():
    for threshold in (math.nan, math.inf, "15"):
        with pytest.raises(ValueError, match="threshold must be a finite number"):
            StopTrainingOnReturn(threshold)
    for patience in (0, 1.5, True):
        with pytest.raises(ValueError, match=f"patience must be an integer >= 1, got {patience!r}"):
            StopTrainingOnReturn(1.0, patience=patience)
    with pytest.raises(ValueError, match="eval_freq"):
        EvaluationCallback(scripted([]), 0)
    with pytest.raises(ValueError, match="stop_at_return is short for callback_after_eval"):
        MetaEvalCallback("MetaTMaze-v0", 10, stop_at_return=1.0, callback_after_eval=StopTrainingOnReturn(2.0))
    with pytest.raises(RuntimeError, match="callback_after_eval"):
        rule = StopTrainingOnReturn(1.0)
        rule.init_callback(small_model())
        rule.on_step()


def test_meta_eval_callback_results_carry_frames_and_the_held_out_seed():
    model = small_model()
    callback = MetaEvalCallback("MetaTMaze-v0", eval_freq=2 * ROLLOUT, n_tasks=2, env_kwargs={"length": 10}, seed=5)
    model.learn(3 * ROLLOUT, callback=callback)
    assert [(r["frames"], r["seed"]) for r in callback.results] == [(0, 5), (2 * ROLLOUT, 5), (3 * ROLLOUT, 5)]
    assert all(np.isfinite(r["meta_episode_return"]) and r["wall_time_s"] >= 0 for r in callback.results)
