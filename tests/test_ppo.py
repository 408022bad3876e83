"""MetaPPO: rollout bookkeeping (state carry-over, resets, bootstraps), reward scaling, GAE, save/load."""

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.utils import LinearSchedule
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnvWrapper

from metarl_agents.policies import POLICY_REGISTRY, RNNPolicy, SplAggerPolicy
from metarl_agents.training.evaluation import MetaEvalCallback, evaluate_meta
from metarl_agents.training.ppo import MetaPPO, TrainingDivergedError
from metarl_agents.training.rollout import ReturnNormalizer, SequenceRolloutBuffer, trial_segments
from metarl_agents.training.vec_env import make_vec_env
from metarl_envs.wrappers import TransitionObservation

SMALL = {"encoder_hidden": 32, "head": "mlp", "net_arch": (32,), "head_state_dim": 16}


def small_model(n_steps=25, **kwargs):
    env = make_vec_env("MetaTMaze-v0", 4, seed=0, length=10)
    return MetaPPO(RNNPolicy, env, n_steps=n_steps, n_minibatches=2, policy_kwargs=SMALL, seed=0, device="cpu", **kwargs)


class ChunkRecorder(BaseCallback):
    """Copies of the rollout buffer at every rollout end, and the trial ends seen."""

    def __init__(self):
        super().__init__()
        self.chunks, self.dones = [], []

    def _on_step(self):
        self.dones.append(self.locals["dones"].copy())
        return True

    def _on_rollout_end(self):
        buffer = self.model.rollout_buffer
        self.chunks.append({
            "obs": buffer.observations.copy(), "actions": buffer.actions.copy(), "starts": buffer.episode_starts.copy(),
            "values": buffer.values.copy(), "log_probs": buffer.log_probs.copy(),
            "initial": buffer.initial_states.clone(),
            "last": self.model._last_states,
        })


def test_memory_carries_over_between_chunks_and_resets_only_at_trial_starts():
    model = small_model(n_steps=25)  # trials are 40 steps: chunk edges fall inside trials
    recorder = ChunkRecorder()
    model.learn(4 * 25 * 4, callback=recorder)
    dones = np.array(recorder.dones)  # [steps, envs]
    starts = np.concatenate([c["starts"] for c in recorder.chunks])
    expected = np.concatenate([np.ones((1, 4)), dones[:-1]])
    np.testing.assert_array_equal(starts, expected)  # 1 exactly at trial starts
    assert dones.any() and not starts[25].any()  # a chunk can start mid-trial without a reset

    policy = model.policy
    for previous, chunk in zip(recorder.chunks, recorder.chunks[1:], strict=False):
        assert th.equal(previous["last"], chunk["initial"])  # the next chunk starts where the last one stopped
    chunk = recorder.chunks[1]
    assert chunk["initial"].abs().sum() > 0
    with th.no_grad():
        args = th.from_numpy(chunk["obs"]), th.from_numpy(chunk["actions"]), th.from_numpy(chunk["starts"])
        carried, _, _, _ = policy.evaluate_sequence(*args, chunk["initial"])
        from_zero, _, _, _ = policy.evaluate_sequence(*args, policy.initial_states(4))
    assert not th.allclose(carried[:5], from_zero[:5])  # the carried state matters before the next reset


def test_rollout_values_match_the_sequence_recomputation():
    model = small_model(n_steps=30)
    model.policy.update_obs_norm = False  # the rollout would otherwise move the statistics under it
    recorder = ChunkRecorder()

    class StopAfterRollout(BaseCallback):
        def _on_step(self):
            return True

        def _on_rollout_end(self):
            chunk = recorder.chunks[-1]
            with th.no_grad():
                values, log_prob, _, _ = self.model.policy.evaluate_sequence(
                    th.from_numpy(chunk["obs"]), th.from_numpy(chunk["actions"]), th.from_numpy(chunk["starts"]),
                    chunk["initial"],
                )
            np.testing.assert_allclose(values.numpy(), chunk["values"], rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(log_prob.numpy(), chunk["log_probs"], rtol=1e-4, atol=1e-5)
            self.checked = True

    checker = StopAfterRollout()
    model.learn(4 * 30 * 3, callback=[recorder, checker])
    assert checker.checked


def test_observation_statistics_update_once_per_chunk_so_the_first_ratio_is_one():
    model = small_model(n_steps=25, n_epochs=1, learning_rate=0.0)
    model.n_minibatches = 1  # one minibatch: the whole chunk is scored before any optimizer step
    norm = model.policy.head.state.norm
    model.learn(100)
    assert float(norm.count) == pytest.approx(100 + 1e-4)  # every observation, once
    logged = model.logger.name_to_value
    assert logged["train/clip_fraction"] == 0.0
    assert abs(logged["train/approx_kl"]) < 1e-10  # rollout and update saw the same statistics


def test_trial_segments_give_the_gradients_of_whole_sequences():
    """Training cuts env sequences at trial starts: exact, because the memory is zeroed there."""
    starts = np.zeros((12, 3), np.float32)
    starts[[0, 5], 0] = 1.0
    starts[[3, 4, 9], 2] = 1.0
    time_index, env_index, valid = trial_segments(starts)
    assert env_index.tolist() == [0, 0, 1, 2, 2, 2, 2]
    assert valid.sum(axis=0).tolist() == [5, 7, 12, 3, 1, 5, 3] and valid.shape == (12, 7)
    assert [time_index[0, s] for s in range(7)] == [0, 5, 0, 0, 3, 4, 9]

    model = small_model(n_steps=12)
    model.learn(4 * 12)
    policy, buffer = model.policy, model.rollout_buffer
    buffer.episode_starts[:, :3] = starts  # any reset pattern works, the data need not be consistent
    envs = np.array([2, 0, 1])
    data = {"obs": th.from_numpy(buffer.observations), "actions": th.from_numpy(buffer.actions),
            "starts": th.from_numpy(buffer.episode_starts)}
    states = buffer.initial_states

    def gradients(values):
        policy.zero_grad()
        values.square().sum().backward()
        return [p.grad.clone() for p in policy.parameters() if p.grad is not None]

    full, _, _, _ = policy.evaluate_sequence(data["obs"][:, envs], data["actions"][:, envs], data["starts"][:, envs],
                                             states[envs])
    batch, segment_states, mask = model._minibatch(data, states, envs)
    assert batch["obs"].shape[1] == 7 and batch["obs"].shape[0] == 12
    segmented, _, _, _ = policy.evaluate_sequence(batch["obs"], batch["actions"], batch["starts"], segment_states)
    rows, columns, _ = trial_segments(buffer.episode_starts[:, envs])
    th.testing.assert_close(segmented[mask], full[rows, columns][mask], rtol=1e-5, atol=1e-6)
    for a, b in zip(gradients(full), gradients(segmented[mask]), strict=True):
        th.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_return_normalizer_matches_direct_computation():
    rng = np.random.default_rng(0)
    rewards = rng.normal(1.0, 2.0, size=(60, 4)).astype(np.float32)
    dones = rng.random((60, 4)) < 0.1
    gamma = 0.9
    normalizer = ReturnNormalizer(4, gamma, clip=10.0)
    scaled = np.concatenate([normalizer(rewards[:30], dones[:30]), normalizer(rewards[30:], dones[30:])])
    running, seen = np.zeros(4), []
    for t in range(60):
        running = gamma * running + rewards[t]
        seen.extend(running)
        std = np.std(seen)  # population std of every discounted return so far, no centring of rewards
        np.testing.assert_allclose(scaled[t], np.clip(rewards[t] / std, -10, 10), rtol=2e-3)
        running[dones[t]] = 0.0
    # After a long stream of small rewards a large one is clipped at +-10, keeping its sign.
    rewards = np.concatenate([np.full((1000, 1), 0.01), [[100.0]], [[-1e4]]]).astype(np.float32)
    scaled = ReturnNormalizer(1, gamma)(rewards, np.zeros((1002, 1), bool))
    assert scaled[-2, 0] == 10.0 and scaled[-1, 0] == -10.0


def test_gae_is_cut_only_at_trial_starts():
    rng = np.random.default_rng(1)
    T, N, gamma, lam = 12, 3, 0.9, 0.8
    buffer = SequenceRolloutBuffer(T, N, (2,), (), np.int64)
    buffer.values[:] = rng.normal(size=(T, N))
    buffer.episode_starts[:] = rng.random((T, N)) < 0.2
    rewards = rng.normal(size=(T, N)).astype(np.float32)
    last_values, last_dones = rng.normal(size=N).astype(np.float32), np.array([False, True, False])
    buffer.compute_returns_and_advantage(rewards, last_values, last_dones, gamma, lam)
    values = np.concatenate([buffer.values, last_values[None]])
    ends = np.concatenate([buffer.episode_starts[1:], last_dones[None]]).astype(bool)
    for n in range(N):
        for t in range(T):
            advantage, discount = 0.0, 1.0
            for k in range(t, T):
                delta = rewards[k, n] + gamma * values[k + 1, n] * (not ends[k, n]) - values[k, n]
                advantage += discount * delta
                if ends[k, n]:
                    break
                discount *= gamma * lam
            assert buffer.advantages[t, n] == pytest.approx(advantage, rel=1e-4, abs=1e-5)
    np.testing.assert_allclose(buffer.returns, buffer.advantages + buffer.values)


class Countdown(gym.Env):
    """Observation = steps left; never terminates, so a TimeLimit truncates it."""

    observation_space = spaces.Box(0.0, 10.0, (1,), np.float32)
    action_space = spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.array([5.0], np.float32), {}

    def step(self, action):
        self.t += 1
        return np.array([5.0 - self.t], np.float32), 1.0, False, False, {}


def test_time_limit_truncation_bootstraps_from_the_value():
    env = DummyVecEnv([lambda: Monitor(TransitionObservation(gym.wrappers.TimeLimit(Countdown(), 5))) for _ in range(2)])
    # Learning rate 0 and frozen observation statistics keep the policy that collected the chunk.
    model = MetaPPO(RNNPolicy, env, n_steps=12, n_minibatches=1, policy_kwargs=SMALL, seed=0, device="cpu",
                    normalize_reward=False, learning_rate=0.0)
    model.policy.update_obs_norm = False
    seen = {}

    class Capture(BaseCallback):
        def _on_step(self):
            if self.locals["dones"].any():
                seen.setdefault("terminal", self.locals["infos"][0]["terminal_observation"])
            return True

        def _on_rollout_end(self):
            buffer = self.model.rollout_buffer
            seen["bootstrap"] = buffer.bootstrap.copy()
            seen["obs"], seen["starts"] = buffer.observations.copy(), buffer.episode_starts.copy()
            seen["initial"] = buffer.initial_states

    model.learn(24, callback=Capture())
    truncated_at = np.zeros((12, 2), bool)
    truncated_at[[4, 9]] = True  # steps 0-4 and 5-9 are the first two 5-step trials
    assert (seen["bootstrap"] != 0).tolist() == truncated_at.tolist()
    # gamma * V(terminal observation), with the memory of the trial it ends: append it to the sequence.
    obs = np.concatenate([seen["obs"][:5, :1], seen["terminal"][None, None]]).astype(np.float32)
    starts = np.zeros((6, 1), np.float32)
    starts[0] = 1.0
    with th.no_grad():
        values, _, _, _ = model.policy.evaluate_sequence(
            th.from_numpy(obs), th.zeros(6, 1, dtype=th.long), th.from_numpy(starts), model.policy.initial_states(1)
        )
    assert seen["bootstrap"][4, 0] == pytest.approx(model.gamma * values[-1].item(), rel=1e-4)


def test_eval_callback_curve_and_early_stop():
    model = small_model(n_steps=10)
    callback = MetaEvalCallback("MetaTMaze-v0", eval_freq=80, n_tasks=2, env_kwargs={"length": 10})
    model.learn(200, callback=callback)
    assert [r["frames"] for r in callback.results] == [0, 80, 160, 200]
    assert {r["seed"] for r in callback.results} == {0 + 1_000_003}  # the same held-out tasks at every point
    stopper = MetaEvalCallback("MetaTMaze-v0", eval_freq=80, n_tasks=2, env_kwargs={"length": 10}, stop_at_return=-1e9)
    model.learn(10_000, callback=stopper)
    assert stopper.solved and len(stopper.results) == 1 and model.num_timesteps == 4


@pytest.mark.parametrize("name", sorted(POLICY_REGISTRY))
def test_every_registered_policy_trains(name):
    env = make_vec_env("MetaTMaze-v0", 4, seed=0, length=10)
    model = MetaPPO(name, env, n_steps=10, n_minibatches=2, policy_kwargs=SMALL, seed=0, device="cpu")
    memory, head = model.policy.memory_parameters(), model.policy.head_parameters()
    before = [p.detach().clone() for p in memory + head]
    model.learn(40)
    assert model.num_timesteps == 40
    changed = [not th.equal(a, b) for a, b in zip(before, memory + head, strict=True)]
    assert any(changed[: len(memory)]) and any(changed[len(memory):])  # the memory is trained end to end


def test_continuous_actions_and_cheetah_time_limit():
    """MuJoCo ids go through DummyVecEnv; their 200-step trials are time-limit cuts that bootstrap."""
    env = make_vec_env("MetaCheetahVel-v0", 2, seed=0)
    model = MetaPPO("SplAgger", env, n_steps=210, n_minibatches=2, policy_kwargs=SMALL, device="cpu")
    model.learn(420)
    buffer = model.rollout_buffer
    assert buffer.actions.shape == (210, 2, 6) and buffer.actions.dtype == np.float32
    assert np.argwhere(buffer.bootstrap != 0).tolist() == [[199, 0], [199, 1]]
    assert np.argwhere(buffer.episode_starts).tolist() == [[0, 0], [0, 1], [200, 0], [200, 1]]


class ActionRecorder(VecEnvWrapper):
    """Records the actions the trainer hands to the env."""

    def __init__(self, venv):
        super().__init__(venv)
        self.actions = []

    def step_async(self, actions):
        self.actions.append(np.array(actions))
        self.venv.step_async(actions)

    def reset(self):
        return self.venv.reset()

    def step_wait(self):
        return self.venv.step_wait()


@pytest.mark.parametrize("clip_actions", [True, False])
def test_clip_actions_decides_whether_the_raw_gaussian_sample_reaches_the_env(clip_actions):
    """With clip_actions=False the env gets exactly the sampled actions the buffer keeps (beyond [-1, 1]
    with std e^1); with True (SB3's behaviour, the default) their clipped copies."""
    env = ActionRecorder(make_vec_env("MetaCheetahDir-v0", 2, seed=0))
    model = MetaPPO("RNN", env, n_steps=8, n_minibatches=1, clip_actions=clip_actions, device="cpu",
                    policy_kwargs={**SMALL, "log_std_init": 1.0})
    model.learn(16)
    sent = np.stack(env.actions[-8:])
    sampled = model.rollout_buffer.actions
    assert np.abs(sampled).max() > 1.0
    np.testing.assert_array_equal(sent, sampled if not clip_actions else np.clip(sampled, -1.0, 1.0))
    assert MetaPPO("RNN", make_vec_env("MetaTMaze-v0", 4, seed=0, length=10), policy_kwargs=SMALL).clip_actions
    cheetah = MetaPPO.from_preset("MetaCheetahVel-v0", "RNN", n_envs=4, n_steps=8, policy_kwargs=SMALL)
    assert cheetah.clip_actions is False  # the Cheetah presets step raw samples, as the reference did
    with pytest.raises(ValueError, match="clip_actions must be true or false, got 'no'"):
        MetaPPO("RNN", env, n_minibatches=1, clip_actions="no")


@pytest.mark.filterwarnings("ignore:rich is experimental")
def test_save_load_predict_round_trip(tmp_path):
    model = small_model(n_steps=20)
    model.learn(160, progress_bar=True)
    model.save(tmp_path / "model.zip")
    loaded = MetaPPO.load(tmp_path / "model.zip", device="cpu")
    assert type(loaded.policy) is RNNPolicy and loaded.num_timesteps == model.num_timesteps
    env = make_vec_env("MetaTMaze-v0", 3, seed=9, length=10)
    obs, state, starts = env.reset(), None, np.ones(3, bool)
    state_loaded = None
    for _ in range(50):
        actions, state = model.predict(obs, state, starts, deterministic=True)
        actions_loaded, state_loaded = loaded.predict(obs, state_loaded, starts, deterministic=True)
        np.testing.assert_array_equal(actions, actions_loaded)
        np.testing.assert_array_equal(state[0], state_loaded[0])
        obs, _, starts, _ = env.step(actions)
    # Training goes on from a loaded model with a new env.
    loaded.set_env(make_vec_env("MetaTMaze-v0", 4, seed=1, length=10))
    loaded.learn(80, reset_num_timesteps=False)
    assert loaded.num_timesteps == model.num_timesteps + 80


class NoValues(RNNPolicy):
    values = None  # a policy that does not implement the memory-policy contract's values()


def test_a_policy_without_the_memory_policy_contract_is_refused_naming_what_it_lacks():
    env = make_vec_env("MetaTMaze-v0", 4, seed=0, length=10)
    with pytest.raises(TypeError, match=r"NoValues lacks \['values'\]"):
        MetaPPO(NoValues, env, n_minibatches=2, policy_kwargs=SMALL)
    with pytest.raises(TypeError, match="RecurrentActorCriticPolicy lacks .*'initial_states', 'step', 'values'"):
        MetaPPO(RecurrentActorCriticPolicy, env, n_minibatches=2)


def test_policy_names_presets_and_bad_input():
    env = make_vec_env("MetaTMaze-v0", 4, seed=0, length=10)
    assert type(MetaPPO("RNN", env, n_minibatches=2, policy_kwargs=SMALL).policy) is RNNPolicy
    assert MetaPPO.policy_aliases["PEARL-GRU"] is POLICY_REGISTRY["PEARL-GRU"]  # names resolve as in SB3
    with pytest.raises(ValueError, match="unknown policy 'Nope'"):
        MetaPPO("Nope", env)
    with pytest.raises(ValueError, match="n_minibatches"):
        MetaPPO("RNN", env, n_minibatches=5)
    model = MetaPPO.from_preset("MetaTMaze-v0", "SplAgger", n_envs=4, n_steps=10, lr_anneal=True, adam_eps=1e-7,
                                env_kwargs={"length": 10}, policy_kwargs=SMALL)
    assert type(model.policy) is SplAggerPolicy
    assert model.n_steps == 10 and model.clip_range(1.0) == 0.05 and model.ent_coef == 0.1
    assert isinstance(model.learning_rate, LinearSchedule) and model.lr_schedule(0.5) == pytest.approx(5e-4)
    assert model.policy.optimizer.defaults["eps"] == 1e-7
    with pytest.raises(ValueError, match="unknown setting not_a_setting"):
        MetaPPO.from_preset("MetaTMaze-v0", "SplAgger", n_envs=4, not_a_setting=1)
    with pytest.raises(ValueError, match="MetaPPO takes an SB3 VecEnv"):
        MetaPPO("RNN", "MetaTMaze-v0")
    with pytest.raises(ValueError, match=r"gamma must be a finite number in \[0, 1\], got 2"):
        MetaPPO("RNN", env, n_minibatches=2, gamma=2)


def test_learns_a_short_tmaze():
    """SplAgger (64 wide) solves a 10-cell T-maze far above chance (2.0) in 30k frames (seeds 0-2 reach 16 by ~18k)."""
    width = {"encoder_hidden": 64, "head_state_dim": 64, "net_arch": (64, 64)}
    model = MetaPPO.from_preset("MetaTMaze-v0", "SplAgger", n_envs=16, seed=0, n_steps=80, learning_rate=3e-3,
                                env_kwargs={"length": 10}, policy_kwargs=width, device="cpu")
    model.learn(30_000)
    result = evaluate_meta(model, "MetaTMaze-v0", seed=1000, env_kwargs={"length": 10})
    assert result["meta_episode_return"] >= 10.0, result


@pytest.mark.slow
def test_splagger_solves_tmaze_with_the_paper_preset():
    """The SplAgger paper's T-Maze result: meta-episode return >= 15.5 of 16 within 1.5 M frames (seed 73, lr 1e-3)."""
    model = MetaPPO.from_preset("MetaTMaze-v0", "SplAgger", seed=73, device="cpu")
    callback = MetaEvalCallback("MetaTMaze-v0", eval_freq=50_000, seed=1_000_073, stop_at_return=15.5, verbose=1)
    model.learn(1_500_000, callback=callback)
    curve = [(r["frames"], r["meta_episode_return"]) for r in callback.results]
    assert callback.solved and curve[-1][0] <= 1_500_000, curve


class RewardsBecomeNaN(VecEnvWrapper):
    """A stock SB3 VecEnv wrapper whose rewards turn NaN after ``after`` steps (a broken reward function)."""

    def __init__(self, venv, after):
        super().__init__(venv)
        self.steps, self.after = 0, after

    def reset(self):
        return self.venv.reset()

    def step_wait(self):
        obs, rewards, dones, infos = self.venv.step_wait()
        self.steps += 1
        return obs, rewards * (np.nan if self.steps > self.after else 1.0), dones, infos


def test_divergence_is_reported_with_the_update_and_the_quantity():
    env = RewardsBecomeNaN(make_vec_env("MetaTMaze-v0", 4, seed=0, length=10), after=60)
    model = MetaPPO(RNNPolicy, env, n_steps=25, n_minibatches=2, policy_kwargs=SMALL, seed=0, device="cpu")
    with pytest.raises(TrainingDivergedError, match=r"diverged at update 5 \(after 300 frames\): a loss became "
                                                    r"non-finite \(policy loss, value loss\).*last finite update"):
        model.learn(1000)
    assert all(th.isfinite(p).all() for p in model.policy.parameters())  # the last finite weights are kept

    model = small_model(learning_rate=float("inf"))
    with pytest.raises(TrainingDivergedError, match=r"update 1 .* a parameter became non-finite \(memory\..+\)"):
        model.learn(200)
