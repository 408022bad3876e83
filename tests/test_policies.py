"""The SB3 policies: RecurrentPPO unchanged (learn, save/load, predict, evaluate_policy) and the MetaPPO API."""

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from helpers import predict_sequence
from sb3_contrib import RecurrentPPO
from sb3_contrib.common.recurrent.type_aliases import RNNStates
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv

import metarl_envs  # noqa: F401  (registers the ids)
from metarl_agents import POLICY_REGISTRY, MetaRecurrentPolicy, PEARLPolicy, SplAggerPolicy
from metarl_agents.training.memory_policy import MemoryPolicy
from metarl_envs.wrappers import TransitionObservation, TransitionObservationVector, transition_space

SMALL = {"encoder_hidden": 16, "net_arch": (16, 8), "head_state_dim": 16}


def sb3_env(env_id: str = "MetaTMaze-v0", n_envs: int = 2, **kwargs) -> DummyVecEnv:
    def make():
        return Monitor(TransitionObservation(gym.make(env_id, **kwargs)))

    env = DummyVecEnv([make] * n_envs)
    env.seed(0)
    return env


@pytest.mark.parametrize("name", sorted(POLICY_REGISTRY))
def test_recurrent_ppo_learns_saves_loads_and_evaluates(name, tmp_path):
    env = sb3_env(length=4, episodes_per_trial=2)
    model = RecurrentPPO(POLICY_REGISTRY[name], env, n_steps=16, batch_size=16, n_epochs=1, seed=0, policy_kwargs=SMALL)
    before = [p.detach().clone() for p in model.policy.parameters()]
    model.learn(64)
    assert model.num_timesteps == 64
    assert any(not th.equal(a, b) for a, b in zip(before, model.policy.parameters(), strict=True))
    model.save(tmp_path / "model.zip")
    loaded = RecurrentPPO.load(tmp_path / "model.zip", env=env)
    actions, state = predict_sequence(model, env, 12)
    loaded_actions, loaded_state = predict_sequence(loaded, env, 12)
    np.testing.assert_array_equal(actions, loaded_actions)
    np.testing.assert_array_equal(state[0], loaded_state[0])
    mean, std = evaluate_policy(loaded, env, n_eval_episodes=2)
    assert np.isfinite(mean) and -6.0 <= mean <= 8.0  # within the trial returns (2 episodes of +4 / -3)


def test_default_sized_splagger_trains():
    model = RecurrentPPO(SplAggerPolicy, sb3_env(length=5), n_steps=16, batch_size=32, n_epochs=1, seed=0)
    assert model.policy.lstm_actor.hidden_size == (256 + 128) // 2
    model.learn(32)
    assert model.num_timesteps == 32


@pytest.mark.parametrize("name", ["SplAgger", "PEARL"])
def test_box_actions_with_pendulum(name, tmp_path):
    env = sb3_env("Pendulum-v1")
    model = RecurrentPPO(POLICY_REGISTRY[name], env, n_steps=16, batch_size=32, n_epochs=1, seed=0, policy_kwargs=SMALL)
    assert model.policy.log_std.shape == (1,) and th.all(model.policy.log_std == 0)
    assert model.policy.memory.embed.action[0].out_features == 16  # Box actions: 16-wide embeddings
    model.learn(32)
    model.save(tmp_path / "pendulum.zip")
    loaded = RecurrentPPO.load(tmp_path / "pendulum.zip")
    actions, _ = predict_sequence(loaded, env, steps=5)
    assert actions.shape == (5, 2, 1) and np.all(np.abs(actions) <= 2.0)


def _rollout(policy, n_envs=3, steps=25, deterministic=False):
    """Step-by-step rollout through policy.forward on the native vector env (trials of 3 x 3 steps)."""
    env = TransitionObservationVector(gym.make_vec("MetaTMaze-v0", num_envs=n_envs, length=3, episodes_per_trial=3))
    obs, _ = env.reset(seed=0)
    states, start = packed(policy, policy.initial_states(n_envs)), th.ones(n_envs)
    record = {k: [] for k in ("obs", "actions", "starts", "values", "log_prob")}
    for _ in range(steps):
        obs_t = th.as_tensor(obs)
        with th.no_grad():
            actions, values, log_prob, states = policy(obs_t, states, start, deterministic=deterministic)
        for key, value in zip(record, (obs_t, actions, start, values.flatten(), log_prob), strict=True):
            record[key].append(value)
        obs, _, terminated, truncated, _ = env.step(actions.numpy())
        start = th.as_tensor(terminated | truncated, dtype=th.float32)
    return {k: th.stack(v) for k, v in record.items()}, states


def packed(policy: MetaRecurrentPolicy, state: th.Tensor) -> RNNStates:
    """A flat memory state as RecurrentPPO hands it to the policy."""
    return RNNStates(policy._pack(state), policy._pack(state))


def _policy(name: str, **kwargs) -> MetaRecurrentPolicy:
    th.manual_seed(0)
    space = transition_space(spaces.Box(-1, 1, (5,), np.float32), spaces.Discrete(4))  # T-maze + trial flag
    return POLICY_REGISTRY[name](space, spaces.Discrete(4), lambda _: 3e-4, **{**SMALL, **kwargs})


@pytest.mark.parametrize("name", ["SplAgger", "RNN", "AMRL", "CNP", "Max", "SplAgger-softmax"])
@pytest.mark.parametrize("head", ["hyper", "mlp"])
def test_evaluate_sequence_reproduces_the_rollout(name, head):
    policy = _policy(name, head=head)
    policy.update_obs_norm = False  # the rollout and the evaluation must see the same statistics
    with th.no_grad():  # non-trivial statistics
        policy.head.state.norm.mean.fill_(0.3)
    rec, final_states = _rollout(policy)
    assert rec["starts"][1:].sum() > 0  # trials ended inside the sequence
    states = policy.initial_states(3)
    values, log_prob, entropy, aux = policy.evaluate_sequence(rec["obs"], rec["actions"], rec["starts"], states)
    th.testing.assert_close(values, rec["values"], rtol=1e-5, atol=1e-5)
    th.testing.assert_close(log_prob, rec["log_prob"], rtol=1e-5, atol=1e-5)
    assert entropy.shape == (25, 3) and float(aux) == 0.0
    # SB3's flat, batch-major layout (what RecurrentPPO passes) gives the same numbers
    flat = lambda x: x.transpose(0, 1).reshape(-1, *x.shape[2:])  # noqa: E731
    sb3_values, sb3_log_prob, _ = policy.evaluate_actions(flat(rec["obs"]), flat(rec["actions"]), packed(policy, states),
                                                          flat(rec["starts"]))
    th.testing.assert_close(sb3_values.flatten(), flat(values), rtol=1e-5, atol=1e-5)
    th.testing.assert_close(sb3_log_prob, flat(log_prob), rtol=1e-5, atol=1e-5)
    with th.no_grad():
        th.testing.assert_close(
            policy.predict_values(flat(rec["obs"]), packed(policy, states).vf, flat(rec["starts"])).flatten(), flat(values), rtol=1e-5, atol=1e-5
        )


def test_rollout_step_samples_the_policy_distribution():
    policy = _policy("RNN", head="mlp")
    probs = th.tensor([0.1, 0.2, 0.3, 0.4])
    with th.no_grad():  # logits independent of the input
        policy.head.actor[-1].weight.zero_()
        policy.head.actor[-1].bias.copy_(probs.log())
    n = 40_000
    obs = th.zeros(n, policy.layout["dim"])
    th.manual_seed(0)
    with th.no_grad():
        actions, _, log_prob, _ = policy.step(obs, policy.initial_states(n), starts=th.ones(n))
        greedy, _, _, _ = policy.step(obs[:3], policy.initial_states(3), deterministic=True, starts=th.ones(3))
    frequencies = th.bincount(actions, minlength=4) / n
    assert th.allclose(frequencies, probs, atol=0.01), frequencies  # 4 standard errors at most
    th.testing.assert_close(log_prob, probs.log()[actions])
    assert greedy.tolist() == [3, 3, 3]


def test_evaluate_sequence_backpropagates_and_pearl_has_a_kl_term():
    policy = _policy("PEARL")
    rec, _ = _rollout(policy, steps=10)
    values, log_prob, entropy, aux = policy.evaluate_sequence(rec["obs"], rec["actions"], rec["starts"], policy.initial_states(3))
    assert 0.0 < aux.item() < 1e-3  # weight 1e-6 times a KL of order one
    (values.sum() + log_prob.sum() + entropy.sum() + aux).backward()
    assert all(p.grad is not None for p in policy.memory_parameters())


def test_api_states_and_parameter_groups():
    policy = _policy("SplAgger")
    assert isinstance(policy, MemoryPolicy)
    states = policy.initial_states(5)
    assert states.shape == (5, policy.memory.state_size) and not states.any()
    memory, head = policy.memory_parameters(), policy.head_parameters()
    ids = [id(p) for p in memory + head]
    assert len(ids) == len(set(ids)) == len(list(policy.parameters()))
    optimised = {id(p) for group in policy.optimizer.param_groups for p in group["params"]}
    assert optimised == set(ids)  # the optimizer was rebuilt over the final modules


@pytest.mark.parametrize("name", ["SplAgger", "PEARL-GRU", "SplAgger-LRU"])
def test_recurrent_ppo_adapter_packs_the_flat_state_as_an_lstm_pair_and_back(name):
    policy = _policy(name)
    policy.update_obs_norm = False
    size = policy.memory.state_size
    state = th.randn(3, size)
    h, c = policy._pack(state)
    # RecurrentPPO's buffers: (h, c) of (1, B, hidden), sized from lstm_actor; the state zero-padded into them
    assert h.shape == c.shape == (1, 3, policy.lstm_actor.hidden_size) == (1, 3, -(-size // 2))
    assert th.equal(th.cat([h[0], c[0]], -1)[:, size:], th.zeros(3, 2 * policy.hidden_size - size))
    assert th.equal(policy._unpack((h, c)), state)
    # RecurrentPPO's step through the adapter gives the numbers of the contract's flat step, state repacked
    obs, starts = th.randn(3, policy.layout["dim"]), th.tensor([0.0, 1.0, 0.0])
    th.manual_seed(1)
    with th.no_grad():
        actions, values, log_prob, new_states = policy(obs, packed(policy, state), starts)
    th.manual_seed(1)
    with th.no_grad():
        flat = policy.step(obs, state * (1 - starts)[:, None], starts=starts)
    assert th.equal(actions, flat[0]) and th.equal(values.flatten(), flat[1]) and th.equal(log_prob, flat[2])
    assert all(th.equal(packed_part, part) for packed_part, part in zip(new_states.pi, policy._pack(flat[3]), strict=True))
    assert all(th.equal(a, b) for a, b in zip(new_states.pi, new_states.vf, strict=True))


def test_observation_statistics_update_only_in_forward():
    policy = _policy("SplAgger")
    rec, _ = _rollout(policy, steps=5)
    count = float(policy.head.state.norm.count)
    assert count == pytest.approx(15 + 1e-4)  # 5 steps x 3 copies
    policy.evaluate_sequence(rec["obs"], rec["actions"], rec["starts"], policy.initial_states(3))
    policy.predict(rec["obs"][0].numpy())
    policy.predict_values(rec["obs"][0], packed(policy, policy.initial_states(3)).vf, rec["starts"][0])
    with th.no_grad():
        policy.step(rec["obs"][0], policy.initial_states(3), starts=rec["starts"][0])  # MetaPPO's rollout step
    assert float(policy.head.state.norm.count) == count


def test_policy_save_and_load_round_trip(tmp_path):
    policy = _policy("CNP", aggregator_kwargs=None, head="mlp")
    policy.save(tmp_path / "policy.pt")
    loaded = type(policy).load(tmp_path / "policy.pt")
    assert loaded.config == policy.config
    obs = np.random.default_rng(0).normal(size=(4, policy.observation_space.shape[0])).astype(np.float32)
    np.testing.assert_array_equal(policy.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])


def test_bad_arguments_are_rejected():
    space = transition_space(spaces.Box(-1, 1, (4,), np.float32), spaces.Discrete(4))
    with pytest.raises(ValueError, match="unknown kwargs \\['lstm_hidden_size'\\]"):
        SplAggerPolicy(space, spaces.Discrete(4), lambda _: 1e-3, lstm_hidden_size=8)
    with pytest.raises(ValueError, match="net_arch must be a list"):
        SplAggerPolicy(space, spaces.Discrete(4), lambda _: 1e-3, net_arch={"pi": [8], "vf": [8]})
    with pytest.raises(ValueError, match="head must be one of"):
        SplAggerPolicy(space, spaces.Discrete(4), lambda _: 1e-3, head="transformer")
    with pytest.raises(ValueError, match="MultiDiscrete"):
        SplAggerPolicy(space, spaces.MultiDiscrete([2, 2]), lambda _: 1e-3)
    with pytest.raises(ValueError, match="TransitionObservation"):
        PEARLPolicy(spaces.Box(-1, 1, (4,), np.float32), spaces.Discrete(4), lambda _: 1e-3)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["SplAgger", "Max"])
def test_recurrent_ppo_learns_the_short_tmaze(name):
    """Plain RecurrentPPO with a default-sized policy solves a short T-maze (optimal 16, guessing 2)."""
    env = sb3_env(length=4, n_envs=8)
    model = RecurrentPPO(
        POLICY_REGISTRY[name], env, n_steps=64, batch_size=128, n_epochs=4, learning_rate=1e-3, gamma=0.95,
        ent_coef=0.01, seed=0, policy_kwargs={"optimizer_kwargs": {"eps": 1e-5}},
    )
    model.learn(40_000)
    mean, _ = evaluate_policy(model, env, n_eval_episodes=16)
    assert mean > 12.0, mean


@pytest.mark.parametrize("name", sorted(POLICY_REGISTRY))
def test_unwrapped_box_envs_of_a_fitting_size_are_refused(name):
    """Acrobot-v1's 6 observations could be a 1-state transition for 3 actions; only the marked space passes."""
    env = gym.make("Acrobot-v1")
    assert env.observation_space.shape == (2 * 1 + 3 + 1,)
    with pytest.raises(ValueError, match="metarl_envs.wrappers.TransitionObservation"):
        RecurrentPPO(POLICY_REGISTRY[name], env, n_steps=16, batch_size=16, policy_kwargs=SMALL)
    RecurrentPPO(POLICY_REGISTRY[name], TransitionObservation(env), n_steps=16, batch_size=16, policy_kwargs=SMALL)
