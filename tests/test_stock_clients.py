"""Stock Gymnasium, Stable-Baselines3 and sb3-contrib code on every registered id, with no glue of ours.

Each learning run is a few trials long: enough for SB3 to log ``rollout/ep_rew_mean``, which is
checked against the trial returns summed independently from the rewards SB3 itself saw.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium.wrappers import RecordEpisodeStatistics
from gymnasium.wrappers.vector import RecordEpisodeStatistics as RecordVectorEpisodeStatistics
from helpers import predict_sequence
from sb3_contrib import RecurrentPPO
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.logger import KVWriter, Logger

import metarl_envs
from metarl_agents import SplAggerPolicy
from metarl_envs.wrappers import TransitionBox, TransitionObservation

ALL_IDS = list(metarl_envs.REGISTERED_IDS)
DISCRETE_IDS = [i for i in ALL_IDS if "Cheetah" not in i]
SMALL_SPLAGGER = {"encoder_hidden": 16, "net_arch": (16, 8), "head_state_dim": 16}


def _trial_steps(env_id: str) -> int:
    """The longest trial of ``env_id`` (the step limit its env's spec reports)."""
    return gym.make(env_id).spec.max_episode_steps


class _Rows(KVWriter):
    """An SB3 logger output that keeps every dumped row."""

    def __init__(self) -> None:
        self.rows: list[dict] = []

    def write(self, key_values, key_excluded, step=0) -> None:
        self.rows.append(dict(key_values))


class _TrialReturns(BaseCallback):
    """Sums the rewards SB3 collects per copy; at each rollout end, the mean of the last 100 trials."""

    def __init__(self) -> None:
        super().__init__()
        self.returns: list[float] = []
        self.lengths: list[int] = []
        self.means: list[tuple[float, float]] = []

    def _on_training_start(self) -> None:
        self._sum = np.zeros(self.training_env.num_envs)
        self._len = np.zeros(self.training_env.num_envs, dtype=int)

    def _on_step(self) -> bool:
        self._sum += self.locals["rewards"]
        self._len += 1
        for i in np.flatnonzero(self.locals["dones"]):
            self.returns.append(float(self._sum[i]))
            self.lengths.append(int(self._len[i]))
            self._sum[i], self._len[i] = 0.0, 0
        return True

    def _on_rollout_end(self) -> None:
        if self.returns:
            self.means.append((float(np.mean(self.returns[-100:])), float(np.mean(self.lengths[-100:]))))


def _learn_and_check_logs(model, total_timesteps: int) -> list[float]:
    """Learn; SB3's logged ``rollout/ep_rew_mean`` / ``ep_len_mean`` must equal the independent sums."""
    rows = _Rows()
    model.set_logger(Logger(folder=None, output_formats=[rows]))
    before = [p.detach().clone() for p in model.policy.parameters()]
    tracker = _TrialReturns()
    model.learn(total_timesteps, callback=tracker)
    assert model.num_timesteps >= total_timesteps
    assert any(not th.equal(a, b) for a, b in zip(before, model.policy.parameters(), strict=True)), "no update"
    logged = [(row["rollout/ep_rew_mean"], row["rollout/ep_len_mean"]) for row in rows.rows if "rollout/ep_rew_mean" in row]
    assert tracker.returns, "the run must finish trials"
    assert len(logged) == len(tracker.means)
    np.testing.assert_allclose(np.array(logged), np.array(tracker.means), rtol=1e-5, atol=1e-5)
    return tracker.returns


def _budget(env_id: str, n_envs: int) -> tuple[int, int]:
    """``(n_steps, total_timesteps)``: one rollout of one longest trial per copy, so every copy ends a trial."""
    n_steps = _trial_steps(env_id)
    return n_steps, n_steps * n_envs


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_ppo_mlp_from_the_id_string(env_id):
    n_steps, total = _budget(env_id, 1)
    model = PPO("MlpPolicy", env_id, n_steps=n_steps, batch_size=n_steps, n_epochs=1, seed=0,
                policy_kwargs={"net_arch": [16]})
    returns = _learn_and_check_logs(model, total)
    assert all(np.isfinite(returns))


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_ppo_mlp_on_sb3_make_vec_env(env_id):
    env = make_vec_env(env_id, n_envs=2, seed=0)
    n_steps, total = _budget(env_id, 2)
    model = PPO("MlpPolicy", env, n_steps=n_steps, batch_size=n_steps, n_epochs=1, seed=0,
                policy_kwargs={"net_arch": [16]})
    _learn_and_check_logs(model, total)


@pytest.mark.parametrize("env_id", DISCRETE_IDS)
def test_recurrent_ppo_mlp_lstm(env_id):
    env = make_vec_env(env_id, n_envs=1, seed=0)
    n_steps, total = _budget(env_id, 1)
    model = RecurrentPPO("MlpLstmPolicy", env, n_steps=n_steps, batch_size=n_steps, n_epochs=1, seed=0,
                         policy_kwargs={"lstm_hidden_size": 8, "net_arch": [8]})
    _learn_and_check_logs(model, total)


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_splagger_on_sb3_make_vec_env_with_transition_wrapper(env_id, tmp_path):
    env = make_vec_env(env_id, n_envs=2, seed=0, wrapper_class=TransitionObservation)
    model = RecurrentPPO(SplAggerPolicy, env, n_steps=16, batch_size=32, n_epochs=1, seed=0,
                         policy_kwargs=SMALL_SPLAGGER)
    before = [p.detach().clone() for p in model.policy.parameters()]
    model.learn(32)
    assert any(not th.equal(a, b) for a, b in zip(before, model.policy.parameters(), strict=True))
    model.save(tmp_path / "model.zip")
    loaded = RecurrentPPO.load(tmp_path / "model.zip", env=env)
    assert isinstance(loaded.observation_space, TransitionBox) and loaded.observation_space == model.observation_space
    np.testing.assert_array_equal(predict_sequence(model, env, 10)[0], predict_sequence(loaded, env, 10)[0])
    returns, lengths = evaluate_policy(loaded, env, n_eval_episodes=2, return_episode_rewards=True)
    assert len(returns) == 2 and all(np.isfinite(returns))
    assert all(1 <= n <= _trial_steps(env_id) for n in lengths)


def _random_trial_returns(env: gym.Env, seed: int) -> tuple[float, int, dict]:
    env.reset(seed=seed)
    env.action_space.seed(seed)
    total, steps, done = 0.0, 0, False
    while not done:
        _, reward, terminated, truncated, info = env.step(env.action_space.sample())
        total += reward
        steps += 1
        done = terminated or truncated
    return total, steps, info


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_gymnasium_record_episode_statistics(env_id):
    env = RecordEpisodeStatistics(gym.make(env_id))
    total, steps, info = _random_trial_returns(env, seed=1)
    assert info["episode"]["r"] == pytest.approx(total, rel=1e-6, abs=1e-6) and info["episode"]["l"] == steps
    assert isinstance(info["inner_episode"], int)


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_gymnasium_vector_record_episode_statistics(env_id):
    """Native batched envs (SAME_STEP) and MuJoCo ids' SyncVectorEnv (NEXT_STEP) alike."""
    n = 2
    envs = RecordVectorEpisodeStatistics(gym.make_vec(env_id, num_envs=n))
    envs.reset(seed=3)
    envs.action_space.seed(3)
    sums, lengths = np.zeros(n), np.zeros(n, dtype=int)
    next_step = envs.metadata["autoreset_mode"] == gym.vector.AutoresetMode.NEXT_STEP
    skip = np.zeros(n, dtype=bool)  # NEXT_STEP: the step after a trial end is a reset step
    reported = 0
    while reported < n:
        _, reward, terminated, truncated, info = envs.step(envs.action_space.sample())
        sums[~skip] += reward[~skip]
        lengths[~skip] += 1
        done = terminated | truncated
        if done.any():
            assert np.array_equal(info["_episode"], done)
            for i in np.flatnonzero(done):
                assert info["episode"]["r"][i] == pytest.approx(sums[i], rel=1e-5, abs=1e-5)
                assert info["episode"]["l"][i] == lengths[i]
                sums[i], lengths[i] = 0.0, 0
                reported += 1
        skip = done if next_step else np.zeros(n, dtype=bool)
    envs.close()
