"""The fast rollout path gives the numbers of the plain one, bit for bit.

``ReferenceMetaPPO`` is MetaPPO's rollout as it was before the per-step overhead was cut: packed
``RNNStates`` through every step, the keep mask applied every step, the block-diagonal embedding and
the observation statistics' float32 moments rebuilt every step, the head called as modules, a fresh
noise tensor for the Gumbel-max sample. Same seed, same envs: after a few updates the parameters,
statistics and buffers must be identical.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch as th
import torch.nn.functional as F
from gymnasium import spaces
from sb3_contrib.common.recurrent.type_aliases import RNNStates
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv

from metarl_agents.memory.sequence import gru_step
from metarl_agents.policies import RNNPolicy
from metarl_agents.training.ppo import MetaPPO
from metarl_agents.training.vec_env import make_vec_env
from metarl_envs.wrappers import TransitionObservation


def reference_step(policy, obs: th.Tensor, lstm_states: RNNStates, episode_starts: th.Tensor):
    """The rollout step as it was: every operator of every step, nothing kept between steps."""
    memory, head = policy.memory, policy.head
    obs = obs.reshape(obs.shape[0], -1).to(th.float32)
    keep = 1.0 - episode_starts.reshape(-1, 1).to(th.float32)
    state = th.cat([lstm_states.pi[0][0], lstm_states.pi[1][0]], dim=-1)[:, : memory.state_size] * keep
    embed = memory.embed
    weight = th.block_diag(embed.state[0].weight, embed.action[0].weight, embed.reward[0].weight, embed.state[0].weight)
    bias = th.cat([embed.state[0].bias, embed.action[0].bias, embed.reward[0].bias, embed.state[0].bias])
    x = F.relu(F.linear(obs, weight, bias))
    enc_state, agg_state = state[:, : memory.encoder_state_size], state[:, memory.encoder_state_size :]
    if memory.gru is not None:
        x = enc_state = gru_step(memory.gru, x, enc_state)
    elif memory.scan is not None:
        x, enc_state = memory.scan.step(x, enc_state)
    else:
        x = memory.per_step(x)
    latent, state, _ = memory._read_out(x, enc_state, agg_state, lambda h, s: (*memory.aggregator.step(h, s), None),
                                        True)
    norm = head.state.norm
    mean, std = norm.mean.to(th.float32), th.sqrt(norm.var + norm.eps).to(th.float32)
    s = obs[:, policy.layout["slices"]["s"]]
    h = th.tanh(head.state.linear(((s - mean) / std).clamp(-norm.clip, norm.clip)))
    if hasattr(head, "hyper_input"):
        e = th.tanh(head.hyper_input(latent))
        e1 = th.cat([e, th.ones_like(e[:, :1])], dim=-1)
        action_out, values = head._run(head.actor, h, e1), head._run(head.critic, h, e1).squeeze(-1)
    else:
        x = th.cat([h, latent], dim=-1)
        action_out, values = head.actor(x), head.critic(x).squeeze(-1)
    if isinstance(policy.action_space, spaces.Discrete):
        log_probs = th.log_softmax(action_out, dim=-1)
        actions = (log_probs - th.empty_like(log_probs).exponential_().log()).argmax(-1)
        log_prob = log_probs.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
    else:
        distribution = policy._distribution(action_out)
        actions = distribution.get_actions()
        log_prob = distribution.log_prob(actions)
    padded = F.pad(state, (0, 2 * policy.hidden_size - state.shape[-1]))
    packed = tuple(part.contiguous() for part in padded.unsqueeze(0).chunk(2, dim=-1))
    return actions.reshape((-1, *policy.action_space.shape)), values.reshape(-1, 1), log_prob, RNNStates(packed, packed)


class ReferenceMetaPPO(MetaPPO):
    """MetaPPO whose rollout loop carries packed states and calls :func:`reference_step` (the trainer's own
    state, ``_last_states`` and the buffer's, is the flat memory state the packed one holds)."""

    def collect_rollouts(self, env, callback, rollout_buffer, n_rollout_steps):
        policy, device = self.policy, self.device
        policy.set_training_mode(False)
        if self._last_states is None:
            self._last_states = policy.initial_states(env.num_envs)
        rollout_buffer.reset(self._last_states)
        callback.on_rollout_start()
        obs, episode_starts = self._last_obs, self._last_episode_starts
        states = RNNStates(policy._pack(self._last_states), policy._pack(self._last_states))
        for _ in range(n_rollout_steps):
            with th.inference_mode():
                starts = th.as_tensor(episode_starts, dtype=th.float32, device=device)
                actions, values, log_probs, states = reference_step(policy, th.as_tensor(obs), states, starts)
            actions = actions.cpu().numpy()
            env_actions = np.clip(actions, self.action_space.low, self.action_space.high) \
                if isinstance(self.action_space, spaces.Box) else actions
            new_obs, rewards, dones, infos = env.step(env_actions)
            self.num_timesteps += env.num_envs
            callback.update_locals(locals())
            callback.on_step()
            if dones.any():
                self._update_info_buffer(infos, dones)
                self._store_truncation_bootstrap(rollout_buffer, infos, dones, policy._unpack(states.pi))
            rollout_buffer.add(obs, actions, rewards, episode_starts, values.numpy().ravel(), log_probs.numpy())
            obs, episode_starts = new_obs, dones
            self._last_obs, self._last_episode_starts = obs, episode_starts
            self._last_states = policy._unpack(states.pi)
        last_values = self._values(obs, self._last_states, episode_starts)
        scaled = self.reward_normalizer(rollout_buffer.rewards, rollout_buffer.trial_ends(episode_starts))
        rollout_buffer.compute_returns_and_advantage(scaled + rollout_buffer.bootstrap, last_values, episode_starts,
                                                     self.gamma, self.gae_lambda)
        callback.on_rollout_end()
        return True


def time_limited_tmaze(n_envs: int, seed: int) -> DummyVecEnv:
    """Short T-maze trials cut by a 15-step time limit, so the rollout bootstraps from the packed state."""
    env = DummyVecEnv([lambda: Monitor(TransitionObservation(gym.make("MetaTMaze-v0", length=10, max_episode_steps=15)))
                       for _ in range(n_envs)])
    env.seed(seed)
    return env


SMALL = {"encoder_hidden": 32, "net_arch": (32, 16), "head_state_dim": 16}
CASES = {
    # (policy, env factory, policy kwargs); 35-step chunks cut the trials
    "RNN, plain head": ("RNN", lambda n, seed: make_vec_env("MetaTMaze-v0", n, seed, length=10), {**SMALL, "head": "mlp"}),
    "SplAgger, hypernetwork head": ("SplAgger", lambda n, seed: make_vec_env("MetaTMaze-v0", n, seed, length=10), SMALL),
    "PEARL (sampled latent)": ("PEARL", lambda n, seed: make_vec_env("MetaFrozenLake-v0", n, seed), {**SMALL, "head": "mlp"}),
    "SplAgger-LRU (scan encoder)": ("SplAgger-LRU", lambda n, seed: make_vec_env("MetaPlanningGame-v0", n, seed),
                                    {**SMALL, "head": "mlp"}),
    "time-limit bootstrap": ("SplAgger", time_limited_tmaze, {**SMALL, "head": "mlp"}),
}


def build(cls, policy, make_env, policy_kwargs, n_steps=35):
    # the seed is set here, on torch's global generator: build each model right before it learns
    return cls(policy, make_env(4, 5), n_steps=n_steps, n_minibatches=2, policy_kwargs=policy_kwargs, seed=5,
               device="cpu")


def assert_same_states(a: th.Tensor, b: th.Tensor) -> None:
    assert a.shape == b.shape and th.equal(a, b)


@pytest.mark.parametrize("case", list(CASES))
def test_fast_rollout_reproduces_the_reference_rollout_bit_for_bit(case):
    fast = build(MetaPPO, *CASES[case]).learn(3 * 4 * 35)
    reference = build(ReferenceMetaPPO, *CASES[case]).learn(3 * 4 * 35)
    assert reference.rollout_buffer.episode_starts[1:].any()  # trials started inside a chunk
    if case == "time-limit bootstrap":
        assert reference.rollout_buffer.bootstrap.any()
    for (name, a), (_, b) in zip(fast.policy.state_dict().items(), reference.policy.state_dict().items(), strict=True):
        assert th.equal(a, b), name  # parameters and observation statistics
    for key in ("observations", "actions", "values", "log_probs", "advantages", "bootstrap"):
        np.testing.assert_array_equal(getattr(fast.rollout_buffer, key), getattr(reference.rollout_buffer, key))
    assert_same_states(fast._last_states, reference._last_states)


def test_a_stopped_rollout_keeps_the_state_before_its_unfinished_step():
    class StopAtStep7(BaseCallback):
        def _on_step(self):
            return self.n_calls < 7

    fast = build(MetaPPO, *CASES["RNN, plain head"]).learn(4 * 35, callback=StopAtStep7())
    reference = build(ReferenceMetaPPO, *CASES["RNN, plain head"])
    reference.n_steps = 6  # the reference loop cannot stop; it runs the 6 steps the fast one finished
    reference.learn(4 * 6)
    assert_same_states(fast._last_states, reference._last_states)
    np.testing.assert_array_equal(fast._last_obs, reference._last_obs)


def test_kept_derived_tensors_follow_parameter_and_statistics_changes():
    env = make_vec_env("MetaTMaze-v0", 1, length=10)
    policy = RNNPolicy(env.observation_space, env.action_space, lambda _: 1e-3, **SMALL, head="mlp")
    obs = th.randn(3, env.observation_space.shape[0])
    s, latent = obs[:, policy.layout["slices"]["s"]], th.randn(3, policy.memory.output_dim)

    def check():
        with th.no_grad():
            embed, (logits, values) = policy.memory.embed(obs), policy.head(s, latent)
        with th.inference_mode():
            embed_kept, (logits_kept, values_kept) = policy.memory.embed.step(obs), policy.head.step(s, latent)
        th.testing.assert_close(embed_kept, embed, rtol=0, atol=1e-6)  # one block-diagonal product vs four
        assert th.equal(logits_kept, logits) and th.equal(values_kept, values)

    check()
    with th.no_grad():
        policy.memory.embed.state[0].weight.add_(0.5)  # as an optimizer step: in place
    policy.update_obs_statistics(3 * th.randn(10, env.observation_space.shape[0]) + 1)
    check()
    policy.load_state_dict({k: v + 0.1 if v.is_floating_point() else v for k, v in policy.state_dict().items()})
    check()
    # with grad the block-diagonal layer is built afresh, so gradients reach the four layers
    policy.memory.embed.step(obs).sum().backward()
    assert all(p.grad is not None for p in policy.memory.embed.parameters())


class MaskedMetaPPO(MetaPPO):
    """MetaPPO that selects the valid steps through a mask even where none is padding."""

    def _minibatch(self, data, initial_states, envs):
        batch, states, valid = super()._minibatch(data, initial_states, envs)
        if valid is None:
            valid = th.ones(batch["starts"].shape, dtype=th.bool)
        return batch, states, valid


def test_trials_aligned_with_the_chunk_train_without_a_mask_to_the_same_numbers():
    planning = ("RNN", lambda n, seed: make_vec_env("MetaPlanningGame-v0", n, seed), {**SMALL, "head": "mlp"})
    fast = build(MetaPPO, *planning, n_steps=100).learn(2 * 4 * 100)  # 100-step trials: nothing is padding
    starts = {"starts": th.from_numpy(fast.rollout_buffer.episode_starts)}
    assert fast._minibatch(starts, fast._last_states, np.arange(2))[2] is None
    masked = build(MaskedMetaPPO, *planning, n_steps=100).learn(2 * 4 * 100)
    for (name, a), (_, b) in zip(fast.policy.state_dict().items(), masked.policy.state_dict().items(), strict=True):
        assert th.equal(a, b), name
