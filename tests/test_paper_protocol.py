"""The "paper" training protocol: each way it trains as the SplAgger reference did, checked against a number
taken from the reference (an effective value weight, an init distribution, a state reset at a chunk
boundary, a minibatch composition, normaliser statistics on a scripted reward stream)."""

import math

import numpy as np
import pytest
import torch as th
from stable_baselines3.common.callbacks import BaseCallback

from metarl_agents.heads import HyperHead, reference_critic_output
from metarl_agents.policies import POLICY_REGISTRY
from metarl_agents.training.ppo import MetaPPO, paper_policy_kwargs
from metarl_agents.training.rollout import ReturnNormalizer, SequenceRolloutBuffer
from metarl_agents.training.vec_env import make_vec_env

SMALL = {"encoder_hidden": 32, "net_arch": (32,), "head_state_dim": 16}


def small_model(agent="SplAgger", protocol="paper", n_steps=25, policy_kwargs=SMALL, **kwargs):
    env = make_vec_env("MetaTMaze-v0", 4, seed=0, length=10)  # 40-step trials: chunk edges fall inside trials
    return MetaPPO(agent, env, n_steps=n_steps, n_minibatches=2, policy_kwargs=policy_kwargs, seed=0, device="cpu",
                   protocol=protocol, **kwargs)


class ChunkStarts(BaseCallback):
    """The memory state each chunk started from, and whether the previous chunk ended mid-trial."""

    def __init__(self):
        super().__init__()
        self.initial, self.mid_trial = [], []

    def _on_rollout_start(self):
        self.mid_trial.append(not np.asarray(self.model._last_episode_starts).all())

    def _on_step(self):
        return True

    def _on_rollout_end(self):
        self.initial.append(self.model.rollout_buffer.initial_states.clone())


@pytest.mark.parametrize(("agent", "protocol", "restarts"), [
    ("SplAgger", "paper", True), ("CNP", "paper", True), ("SplAgger", "metarl", False), ("PEARL-GRU", "paper", False),
])
def test_memory_restarts_at_each_chunk_under_the_paper_protocol_except_pearl(agent, protocol, restarts):
    """Reference: every memory but PEARL restarts from its prior at the start of each update chunk."""
    model = small_model(agent, protocol)
    recorder = ChunkStarts()
    model.learn(3 * 25 * 4, callback=recorder)
    assert recorder.mid_trial[1] and recorder.mid_trial[2]  # chunks 2 and 3 begin inside a trial
    later = th.stack(recorder.initial[1:])
    assert bool((later == 0).all()) == restarts


@pytest.mark.parametrize("agent", ["SplAgger", "RNN", "CNP", "SplAgger-LRU"])
def test_rollout_and_update_see_the_same_memory_at_chunk_edges_and_trial_starts(agent):
    """The update re-runs the memory exactly as the rollout ran it: the prior at a chunk's first step (the state
    not advanced there) and, at a trial start inside the chunk, the reset memory encoding the ended trial's
    final transition (log-probabilities agree to float precision)."""
    # (the MLP head reads the latent from the start; the hypernetwork head ignores it at initialisation)
    model = small_model(agent, "paper", learning_rate=0.0, policy_kwargs={**SMALL, "head": "mlp"})
    model.policy.update_obs_norm = False  # the rollout's statistics, for the comparison below
    model.learn(2 * 25 * 4)  # the second chunk starts mid-trial
    buffer, policy = model.rollout_buffer, model.policy
    starts = buffer.episode_starts.copy()
    assert starts[1:].any() and not starts[0].any()

    mid_chunk = th.from_numpy(starts.copy())  # (row 0 holds no trial start here)

    def log_probs(starts, ended=True):
        with th.no_grad():
            return policy.evaluate_sequence(th.from_numpy(buffer.observations), th.from_numpy(buffer.actions),
                                            th.from_numpy(starts), buffer.initial_states,
                                            ended=(th.from_numpy(buffer.ended), mid_chunk) if ended else None)[1].numpy()

    assert np.abs(log_probs(starts) - buffer.log_probs).max() > 1e-4  # not the same without the chunk's prior
    starts[0] = 1.0
    np.testing.assert_allclose(log_probs(starts), buffer.log_probs, atol=2e-5)
    trial_starts = starts.astype(bool)
    trial_starts[0] = False
    # the prior at a mid-chunk trial start (instead of the ended transition) changes them
    assert np.abs(log_probs(starts, ended=False) - buffer.log_probs)[trial_starts].max() > 1e-4
    policy.memory.prior_at_start = False  # encoding the trial's own first observation changes them too
    assert np.abs(log_probs(starts) - buffer.log_probs)[trial_starts].max() > 1e-4


def test_a_trial_starting_inside_a_chunk_encodes_the_ended_trials_final_transition():
    """Reference rollout order: when a trial ends, the memory is reset and then reads that trial's final
    transition (the observation before the env's reset); the new trial's first latent is that read-out and
    the state has advanced by one step from empty. The prior is only at the chunk's first step."""
    model = small_model("SplAgger", "paper", learning_rate=0.0, policy_kwargs={**SMALL, "head": "mlp"})
    model.policy.update_obs_norm = False
    model.learn(2 * 25 * 4)  # trials of 40 steps: the second chunk (steps 25..49) holds a trial start at 15
    buffer, memory = model.rollout_buffer, model.policy.memory
    starts = buffer.episode_starts.astype(bool)
    t = 15
    assert starts[t].all() and starts.sum() == 4 and not buffer.ended[starts == 0].any()
    layout = model.policy.layout["slices"]
    ended = th.from_numpy(buffer.ended[t])
    before = th.from_numpy(buffer.observations[t - 1])
    # the ended transition is (s, a, r, s') of the previous step: its s is the previous observation's s
    np.testing.assert_array_equal(ended[:, layout["s_prev"]].numpy(), before[:, layout["s"]].numpy())
    np.testing.assert_array_equal(ended[:, layout["r_prev"]].numpy().ravel(), buffer.rewards[t - 1])
    with th.no_grad():
        zeros = model.policy.initial_states(4)
        memory.prior_at_start = False
        read_out, state = memory.step(ended, zeros, sample=False)  # one step on it from the empty memory
        expected_next, _ = memory.step(th.from_numpy(buffer.observations[t + 1]), state, sample=False)
        memory.prior_at_start = True
        prior_read_out, _ = memory.step(ended, zeros, sample=False, starts=th.ones(4))  # the prior (zero embedding)
        sequence = th.from_numpy(buffer.observations)
        chunk_starts = th.from_numpy(buffer.episode_starts.copy())
        chunk_starts[0] = 1.0
        latents, _, _ = memory(sequence, chunk_starts, buffer.initial_states, sample=False,
                               ended=(th.from_numpy(buffer.ended), th.from_numpy(buffer.episode_starts)))
        step_latent, step_state = memory.step(th.from_numpy(buffer.observations[t]), zeros, sample=False,
                                              starts=th.ones(4), ended=(ended, th.ones(4)))
    np.testing.assert_allclose(latents[t].numpy(), read_out.numpy(), atol=1e-6)
    np.testing.assert_allclose(latents[t + 1].numpy(), expected_next.numpy(), atol=1e-6)
    np.testing.assert_allclose(step_latent.numpy(), read_out.numpy(), atol=1e-6)
    np.testing.assert_allclose(step_state.numpy(), state.numpy(), atol=1e-6)
    assert np.abs(latents[t].numpy() - prior_read_out.numpy()).max() > 1e-3  # not the prior
    np.testing.assert_allclose(latents[0].numpy(), prior_read_out.numpy(), atol=1e-6)  # the chunk's first: prior


def test_first_latent_of_a_trial_is_the_prior_and_the_state_is_not_advanced():
    """Reference prior: the aggregator on a zero embedding from the empty state (GRU, split, max here)."""
    env = make_vec_env("MetaTMaze-v0", 3, seed=0, length=10)
    policy = POLICY_REGISTRY["SplAgger"](env.observation_space, env.action_space, lambda _: 1e-3,
                                         **SMALL, start_latent="prior")
    memory = policy.memory
    with th.no_grad():
        for p in memory.parameters():  # GRU biases are zero at init; make the prior depend on them
            p.add_(0.1 * th.randn_like(p))
        gru = memory.gru
        h = th.gru_cell(th.zeros(1, gru.input_size), th.zeros(1, gru.hidden_size), gru.weight_ih_l0, gru.weight_hh_l0,
                        gru.bias_ih_l0, gru.bias_hh_l0)
        skip, agg = h[:, : memory.skip_dim], th.clamp_min(h[:, memory.skip_dim:], 0.0)
        prior = memory.to_latent(th.cat([skip, agg], dim=-1))

        obs = th.randn(6, 3, env.observation_space.shape[0])
        starts = th.zeros(6, 3)
        starts[0] = 1.0
        starts[3, 1] = 1.0
        latent, state, _ = memory(obs, starts, th.randn(3, memory.state_size))
        np.testing.assert_allclose(latent[0].numpy(), prior.expand(3, -1).numpy(), atol=1e-6)
        np.testing.assert_allclose(latent[3, 1].numpy(), prior[0].numpy(), atol=1e-6)
        # the step after the prior builds on the empty state, as the very first one did
        memory.prior_at_start = False
        unadvanced, _, _ = memory(obs[1:2], th.ones(1, 3), th.zeros(3, memory.state_size))
        np.testing.assert_allclose(latent[1].numpy(), unadvanced[0].numpy(), atol=1e-6)
        memory.prior_at_start = True
        # rollouts' one-step path: the prior, and the state stays empty
        step_latent, step_state = memory.step(obs[0], th.zeros(3, memory.state_size), starts=th.ones(3))
        np.testing.assert_allclose(step_latent.numpy(), prior.expand(3, -1).numpy(), atol=1e-6)
        assert (step_state == 0).all()
        # a start on a chunk's last step leaves the memory empty for the next chunk
        last = th.zeros(2, 3)
        last[1, 2] = 1.0
        _, state, _ = memory(obs[:2], last, th.zeros(3, memory.state_size))
        assert (state[2] == 0).all() and (state[0] != 0).any()


def _loss_parts(protocol):
    model = small_model("SplAgger", protocol, learning_rate=0.0, n_epochs=1, ent_coef=0.1, vf_coef=0.5)
    model.n_minibatches = 1
    model.learn(25 * 4)
    logged = model.logger.name_to_value
    return logged["train/loss"], logged["train/policy_gradient_loss"], logged["train/value_loss"], \
        logged["train/entropy_loss"], logged["train/aux_loss"]


@pytest.mark.parametrize(("protocol", "weight"), [("paper", 0.25), ("metarl", 0.5)])
def test_effective_value_loss_weight(protocol, weight):
    """Reference: 0.5 * max(Huber), times value_loss_coef 0.5: an effective 0.25 (ours: vf_coef = 0.5)."""
    loss, policy_loss, value_loss, entropy_loss, aux = _loss_parts(protocol)
    assert value_loss > 1e-4
    assert (loss - policy_loss - 0.1 * entropy_loss - aux) / value_loss == pytest.approx(weight, rel=1e-4)


def test_reference_critic_output_initialisation_distribution():
    """Reference: kaiming_uniform_(a=0) on the (1, 128) critic weight (bound sqrt(6/128) = 0.2165) and a bias
    from U(-1, 1) (its fan-in taken from a (128, 1) tensor); ours by default: U(+-1/sqrt(128)) = +-0.088."""
    th.manual_seed(0)
    weights, biases = zip(*(reference_critic_output(128) for _ in range(400)), strict=True)
    weights, biases = th.cat(weights).flatten(), th.cat(biases)
    bound = math.sqrt(6 / 128)
    assert bound == pytest.approx(0.2165, abs=1e-4)
    assert weights.abs().max() <= bound and weights.abs().max() > 0.99 * bound
    assert weights.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.02)
    assert biases.abs().max() <= 1.0 and biases.abs().max() > 0.99
    assert biases.std().item() == pytest.approx(1 / math.sqrt(3), rel=0.1)
    # In the hypernetwork head the critic output's generated weight and bias start at exactly these.
    head = HyperHead(5, 24, 3, True, critic_init="reference")
    last = head.critic[-1]
    assert last.weight[:, -1].abs().max() <= bound and last.weight[:, -1].abs().max() > 0.15
    default = HyperHead(5, 24, 3, True)
    assert default.critic[-1].weight[:, -1].abs().max() <= 1 / math.sqrt(128)
    assert paper_policy_kwargs(POLICY_REGISTRY["RNN"], {})["critic_init"] == "reference"


class EvaluateRecorder:
    """Wraps ``policy.evaluate_sequence`` to record what each minibatch evaluated."""

    def __init__(self, policy):
        self.calls, self.inner = [], policy.evaluate_sequence
        policy.evaluate_sequence = self

    def __call__(self, obs, actions, starts, states, select=None, sample=True, ended=None):
        self.calls.append({"sequences": obs.shape[1], "steps": obs.shape[0], "select": select, "sample": sample,
                           "starts": starts.clone()})
        return self.inner(obs, actions, starts, states, select=select, sample=sample, ended=ended)


def test_paper_minibatches_are_random_quarters_of_all_transitions_with_every_sequence_re_encoded():
    """Reference: BatchSampler(SubsetRandomSampler(T * N), T * N / 4, drop_last) per epoch, all 16 sequences
    re-encoded after every optimiser step. Ours (metarl): 4 whole env sequences per minibatch."""
    model = small_model("SplAgger", "paper", n_steps=25)
    model.n_minibatches = 4
    recorder = EvaluateRecorder(model.policy)
    model.learn(25 * 4)
    assert len(recorder.calls) == 2 * 4  # 2 epochs x 4 minibatches, each a full re-encoding
    n = 25 * 4
    for epoch in (recorder.calls[:4], recorder.calls[4:]):
        chosen = [call["select"] for call in epoch]
        assert all(len(c) == n // 4 for c in chosen)
        union = th.cat(chosen)
        assert len(th.unique(union)) == n  # disjoint, covering every transition once
        for call in epoch:  # every env's every step is re-encoded (the layout holds all T * N)
            assert call["sample"] is False
    layout_sizes = {call["steps"] * call["sequences"] for call in recorder.calls}
    assert min(layout_sizes) >= n
    # The drawn sets mix envs and times: not whole sequences.
    first = recorder.calls[0]["select"]
    assert len(first) == 25 and len(th.unique(first % recorder.calls[0]["sequences"])) > 1

    model = small_model("SplAgger", "metarl", n_steps=25)
    recorder = EvaluateRecorder(model.policy)
    model.learn(25 * 4)
    assert [call["select"] for call in recorder.calls] == [None] * 4  # 2 epochs x 2 sets of 2 whole envs


def test_reward_normaliser_on_a_scripted_stream_matches_the_reference_arithmetic():
    """Reference (its VecNormalize): ret = ret * gamma + r; ret[done] = 0; stats.update(ret); r / std; and any
    trial's end zeroes every accumulator. Two envs, gamma 0.5, env 0's trial ends at step 1."""
    rewards = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    dones = np.array([[False, False], [True, False], [False, False]])
    # hand-computed: returns seen {1, 0}, {0, 2} (env 0 zeroed first), {1, 1} (both restarted)
    var = [np.var([1, 0]), np.var([1, 0, 0, 2]), np.var([1, 0, 0, 2, 1, 1])]
    assert var == pytest.approx([0.25, 0.6875, 17 / 36])
    expected = rewards / np.sqrt(np.array(var))[:, None]
    out = ReturnNormalizer(2, gamma=0.5, reset_all_on_done=True)(rewards, dones)
    np.testing.assert_allclose(out, expected, rtol=1e-3)  # (the statistics start from a 1e-4 pseudo-count)
    # metarl: returns {1, 0}, {0.5, 2} (zeroed after the update), {1, 2} (env 1 goes on)
    var = [np.var([1, 0]), np.var([1, 0, 0.5, 2]), np.var([1, 0, 0.5, 2, 1, 2])]
    out = ReturnNormalizer(2, gamma=0.5)(rewards, dones)
    np.testing.assert_allclose(out, rewards / np.sqrt(np.array(var))[:, None], rtol=1e-3)


def test_time_limit_step_gets_no_advantage_under_the_paper_protocol():
    """Reference (use_proper_time_limits): gae *= bad_mask, so the time-limit step's advantage is 0, its
    return its value, and earlier steps bootstrap from that step's value."""
    buffer = SequenceRolloutBuffer(3, 1, (1,), (), np.int64)
    buffer.values[:, 0] = [1.0, 2.0, 3.0]
    buffer.episode_starts[:, 0] = [1.0, 0.0, 0.0]
    buffer.truncated[2, 0] = True
    rewards = np.array([[1.0], [1.0], [1.0]], dtype=np.float32)
    gamma, lam = 0.5, 0.5
    buffer.compute_returns_and_advantage(rewards, np.array([9.0]), np.array([True]), gamma, lam, zero_truncated=True)
    delta1 = 1.0 + gamma * 3.0 - 2.0
    delta0 = 1.0 + gamma * 2.0 - 1.0
    np.testing.assert_allclose(buffer.advantages[:, 0], [delta0 + gamma * lam * delta1, delta1, 0.0], rtol=1e-6)
    np.testing.assert_allclose(buffer.returns[2, 0], 3.0)


def test_paper_policy_settings_wsoftmax_width_memory_adam_eps_and_statistics_order():
    """Reference: SplAgger-wsoftmax's GRU is 512 wide (skip 256 + aggregate 128 read out); the memory's Adam
    has eps 1e-8; the observation statistics are updated before the update; PEARL's update uses the mean."""
    wide = paper_policy_kwargs(POLICY_REGISTRY["SplAgger-wsoftmax"], {})
    assert wide["encoder_hidden"] == 512 and "encoder_hidden" not in paper_policy_kwargs(POLICY_REGISTRY["SplAgger"], {})
    assert paper_policy_kwargs(POLICY_REGISTRY["SplAgger-wsoftmax"], {"encoder_hidden": 64})["encoder_hidden"] == 64
    env = make_vec_env("MetaTMaze-v0", 2, seed=0, length=10)
    policy = POLICY_REGISTRY["SplAgger-wsoftmax"](env.observation_space, env.action_space, lambda _: 1e-3,
                                                  **{**wide, "head": "mlp", "net_arch": (8,)})
    assert policy.memory.gru.hidden_size == 512 and policy.memory.to_latent.in_features == 256 + 128

    model = small_model("PEARL-GRU", "paper")
    groups = model.policy.optimizer.param_groups
    memory_ids = {id(p) for p in model.policy.memory.parameters()}
    (memory_group,) = [g for g in groups if {id(p) for p in g["params"]} == memory_ids]
    assert memory_group["eps"] == 1e-8 and len(groups) == 2
    events = []
    statistics = model.policy.update_obs_statistics
    model.policy.update_obs_statistics = lambda obs: (events.append("statistics"), statistics(obs))[1]
    recorder = EvaluateRecorder(model.policy)
    inner = recorder.inner
    recorder.inner = lambda *args, **kwargs: (events.append("update"), inner(*args, **kwargs))[1]
    model.learn(25 * 4)
    assert events[0] == "statistics" and events.count("statistics") == 1 and "statistics" not in events[1:]
    assert {call["sample"] for call in recorder.calls} == {False}
    with th.no_grad():  # the mean latent: the same numbers twice
        buffer = model.rollout_buffer
        args = (th.from_numpy(buffer.observations), th.from_numpy(buffer.actions), th.from_numpy(buffer.episode_starts),
                buffer.initial_states)
        a = inner(*args, sample=False)[1]
        b = inner(*args, sample=False)[1]
        sampled = inner(*args, sample=True)[1]
    assert th.equal(a, b) and not th.equal(a, sampled)


def test_report_ranks_the_protocols_in_separate_groups_and_labels_them(tmp_path):
    """The difference between the protocols is itself a result: never one group, each says which it is."""
    from metarl_agents.leaderboard.grid import RunSpec
    from metarl_agents.leaderboard.report import write_report
    from metarl_agents.leaderboard.store import ResultStore

    db = tmp_path / "r.db"
    with ResultStore(db) as store:
        for protocol, value in (("metarl", 1.0), ("paper", 3.0)):
            for seed in (1, 2):
                run = RunSpec(env_id="MetaTMaze-v0", agent="SplAgger", seed=seed, learning_rate=1e-3, frames=1000,
                              paper_frames=1_500_000, preset_name="MetaTMaze-v0", preset_hash="abc", eval_every=500,
                              protocol=protocol)
                record = store.register_run(run.store_fields())
                for i, frames in enumerate((500, 1000)):
                    store.record_evaluation(record.id, frames, value, [value], 1.0, None, finished=i == 1)
    text = write_report(db, tmp_path / "out").read_text()
    assert text.count("- Training protocol: ` metarl `") == 1 and text.count("- Training protocol: ` paper `") == 1
    assert text.count("— paper protocol") >= 1
