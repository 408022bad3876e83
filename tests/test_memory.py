"""The memory zoo: parallel == step-by-step, exact resets, permutation (in)variance, straight-through."""

import pytest
import torch as th
from gymnasium import spaces

from metarl_agents.memory import Memory
from metarl_agents.memory.aggregators import AGGREGATORS, Aggregator, SumAggregator, make_aggregator
from metarl_agents.memory.sequence import (
    Segments,
    StraightThroughCummax,
    gru_with_resets,
    make_gru,
    segment_cummax,
    segment_cumsum,
    segment_reverse_cumsum,
)
from metarl_agents.policies import POLICY_REGISTRY
from metarl_envs.wrappers import transition_layout, transition_space

LAYOUT = transition_layout(spaces.Box(-1, 1, (3,)), spaces.Discrete(4))
MEMORY_KEYS = ("encoder", "split", "aggregator", "aggregator_kwargs")
MODELS = {name: {k: v for k, v in cls.preset.items() if k in MEMORY_KEYS} for name, cls in POLICY_REGISTRY.items()}


def memory(name: str, hidden: int = 16, seed: int = 0) -> Memory:
    th.manual_seed(seed)
    return Memory(LAYOUT, encoder_hidden=hidden, **MODELS[name]).double()


def transitions(t_count: int, batch: int, seed: int = 1) -> th.Tensor:
    return th.randn(t_count, batch, LAYOUT["dim"], generator=th.Generator().manual_seed(seed), dtype=th.float64)


def starts(t_count: int, batch: int, where: list[tuple[int, int]]) -> th.Tensor:
    s = th.zeros(t_count, batch, dtype=th.float64)
    for t, b in where:
        s[t, b] = 1.0
    return s


@pytest.mark.parametrize("name", sorted(MODELS))
def test_sequence_path_equals_step_by_step(name):
    mem = memory(name)
    t_count, batch = 23, 3
    obs = transitions(t_count, batch)
    episode_starts = starts(t_count, batch, [(0, 0), (5, 1), (17, 1), (9, 2), (10, 2)])
    state = th.rand(batch, mem.state_size, dtype=th.float64)  # a non-empty incoming memory
    latent, final, aux = mem(obs, episode_starts, state, sample=False)
    step_state, outs, auxes = state, [], []
    for t in range(t_count):
        out, step_state, a = mem(obs[t : t + 1], episode_starts[t : t + 1], step_state, sample=False)
        outs.append(out)
        auxes.append(a)
    th.testing.assert_close(latent, th.cat(outs), rtol=1e-9, atol=1e-9)
    th.testing.assert_close(final, step_state, rtol=1e-9, atol=1e-9)
    th.testing.assert_close(aux, th.stack(auxes).mean(), rtol=1e-9, atol=1e-15)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_rollout_step_equals_the_sequence_path(name):
    """Memory.step (block-diagonal embedding, gru_cell, Aggregator.step) is the same function."""
    mem = memory(name)
    t_count, batch = 15, 3
    obs = transitions(t_count, batch)
    episode_starts = starts(t_count, batch, [(4, 0), (9, 1), (10, 1), (14, 2)])
    state = th.rand(batch, mem.state_size, dtype=th.float64)
    latent, final, _ = mem(obs, episode_starts, state, sample=False)
    step_state, outs = state, []
    for t in range(t_count):
        out, step_state = mem.step(obs[t], step_state * (1 - episode_starts[t]).unsqueeze(-1), sample=False)
        outs.append(out)
    th.testing.assert_close(th.stack(outs), latent, rtol=1e-9, atol=1e-9)
    th.testing.assert_close(step_state, final, rtol=1e-9, atol=1e-9)


def test_aggregator_without_a_step_of_its_own_falls_back_to_its_scan():
    class ForwardOnlyMax(Aggregator):  # no name: not registered
        def forward(self, x, state, seg):
            out = segment_cummax(x, state, seg)
            return out, out[-1], x.new_zeros(())

    agg, x = ForwardOnlyMax(4), th.randn(2, 4, dtype=th.float64)
    state = th.randn(2, 4, dtype=th.float64)
    out, new_state = agg.step(x, state)
    th.testing.assert_close(out, th.maximum(x, state), rtol=0, atol=0)
    th.testing.assert_close(new_state, out, rtol=0, atol=0)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_reset_is_exact_and_zero_state_is_empty(name):
    mem = memory(name)
    obs = transitions(12, 2)
    fresh, _, _ = mem(obs[6:], th.zeros(6, 2, dtype=th.float64), th.zeros(2, mem.state_size, dtype=th.float64), False)
    rest, _, _ = mem(obs, starts(12, 2, [(6, 0), (6, 1)]), th.rand(2, mem.state_size, dtype=th.float64), False)
    th.testing.assert_close(rest[6:], fresh, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", sorted(AGGREGATORS))
def test_aggregators_are_permutation_invariant(name):
    agg = make_aggregator(name, 8).double()
    x = th.randn(15, 2, 8, dtype=th.float64)
    seg = Segments.from_starts(starts(15, 2, [(0, 0), (0, 1)]))
    zero = th.zeros(2, agg.state_dim, dtype=th.float64)
    out, _, _ = agg(x, zero, seg)
    shuffled, _, _ = agg(x[th.randperm(15)], zero, seg)
    th.testing.assert_close(out[-1], shuffled[-1], rtol=1e-9, atol=1e-12)
    assert not th.allclose(out[0], out[-1])  # it does aggregate


@pytest.mark.parametrize(("name", "invariant"), [("CNP", True), ("Max", True), ("PEARL", True), ("PEARL-GRU", False), ("RNN", False), ("SplAgger", False)])
def test_memory_output_after_a_trial(name, invariant):
    mem = memory(name)
    obs = transitions(20, 1)
    zero = th.zeros(1, mem.state_size, dtype=th.float64)
    trial = starts(20, 1, [(0, 0)])
    latent, _, _ = mem(obs, trial, zero, False)
    shuffled, _, _ = mem(obs[th.randperm(20, generator=th.Generator().manual_seed(0))], trial, zero, False)
    assert th.allclose(latent[-1], shuffled[-1], atol=1e-10) == invariant


def test_pearl_gru_is_the_reference_baseline():
    """GRU(256) -> Linear(256 -> 24) -> product of Gaussians: 265,752 parameters, state 280, at full size.

    The count is the GRU over the 80-wide transition embedding of discrete-action envs (3 x (80 x 256
    + 256 x 256 + 2 x 256) = 259,584) and the projection (256 x 24 + 24 = 6,168); the per-part
    embedding layers (248 here, a 5-dim T-maze observation with 4 actions) come on top.
    """
    layout = transition_layout(spaces.Box(-1, 1, (5,)), spaces.Discrete(4))
    th.manual_seed(0)
    mem = Memory(layout, **MODELS["PEARL-GRU"]).double()
    embedding = sum(p.numel() for p in mem.embed.parameters())
    assert mem.embed.out_dim == 80 and embedding == (5 * 32 + 32) + (4 * 8 + 8) + (1 * 8 + 8)  # one state layer, shared
    assert sum(p.numel() for p in mem.parameters()) - embedding == 265_752
    assert mem.gru.hidden_size == 256 and (mem.to_gaussian.in_features, mem.to_gaussian.out_features) == (256, 24)
    assert mem.state_size == 280 and mem.output_dim == 12 and mem.variational
    # The rollout's one-step path is the sequence path, across resets and from a non-empty state.
    obs = th.randn(12, 2, layout["dim"], generator=th.Generator().manual_seed(2), dtype=th.float64)
    episode_starts = starts(12, 2, [(0, 0), (5, 1), (9, 0)])
    state = th.rand(2, 280, dtype=th.float64)
    latent, final, _ = mem(obs, episode_starts, state, sample=False)
    step_state, outs = state, []
    for t in range(12):
        out, step_state = mem.step(obs[t], step_state * (1 - episode_starts[t]).unsqueeze(-1), sample=False)
        outs.append(out)
    th.testing.assert_close(th.stack(outs), latent, rtol=1e-9, atol=1e-9)
    th.testing.assert_close(step_state, final, rtol=1e-9, atol=1e-9)
    policy = POLICY_REGISTRY["PEARL-GRU"](transition_space(spaces.Box(-1, 1, (5,), "float32"), spaces.Discrete(4)),
                                          spaces.Discrete(4), lambda _: 1e-3)
    assert policy.memory.state_size == 280 and policy.lstm_actor.hidden_size == 140  # (h, c) halves of the state


def test_splagger_aggregated_half_is_permutation_invariant_given_encodings():
    mem = memory("SplAgger")
    enc = th.randn(20, 1, 16, dtype=th.float64)
    seg = Segments.from_starts(starts(20, 1, [(0, 0)]))
    zero = th.zeros(1, mem.aggregator.state_dim, dtype=th.float64)
    agg, _, _ = mem.aggregator(enc[..., mem.skip_dim :], zero, seg)
    perm_agg, _, _ = mem.aggregator(enc[th.randperm(20)][..., mem.skip_dim :], zero, seg)
    th.testing.assert_close(agg[-1], perm_agg[-1])


def _parameter_gradient_norm(mem: Memory, t_count: int) -> float:
    mem.zero_grad()
    obs = transitions(t_count, 4, seed=t_count)
    latent, _, _ = mem(obs, starts(t_count, 4, [(0, b) for b in range(4)]), th.zeros(4, mem.state_size, dtype=th.float64))
    latent.mean().backward()
    return float(th.sqrt(sum((p.grad**2).sum() for p in mem.parameters() if p.grad is not None)))


def test_straight_through_gradients_grow_with_sequence_length():
    growth = {}
    for name in ("AMRL", "SplAgger"):
        mem = memory(name, hidden=32)
        short, long = _parameter_gradient_norm(mem, 20), _parameter_gradient_norm(mem, 320)
        growth[name] = long / short
    assert growth["AMRL"] > 4.0, growth
    assert growth["SplAgger"] < 2.0, growth


# --- the sequence primitives -------------------------------------------------------------
SEG = Segments.from_starts(starts(9, 2, [(3, 0), (4, 0), (0, 1), (7, 1)]))


def _loop_max(x, init, seg, straight_through: bool):
    m, outs = init, []
    for t in range(x.shape[0]):
        m = m * (~seg.resets[t]).unsqueeze(-1).to(m.dtype)
        m = _st_max(m, x[t]) if straight_through else th.maximum(m, x[t])
        outs.append(m)
    return th.stack(outs)


class _StepST(th.autograd.Function):
    @staticmethod
    def forward(ctx, a, b):
        return th.maximum(a, b)

    @staticmethod
    def backward(ctx, g):
        return g, g


_st_max = _StepST.apply


def test_segment_scans_match_loops_and_finite_differences():
    x = th.randn(9, 2, 3, dtype=th.float64, requires_grad=True)
    init = th.randn(2, 3, dtype=th.float64, requires_grad=True)
    th.testing.assert_close(segment_cummax(x, init, SEG), _loop_max(x, init, SEG, False))
    sums, total = [], init * SEG.continues[0].unsqueeze(-1)
    for t in range(9):
        total = total * (~SEG.resets[t]).unsqueeze(-1) + x[t]
        sums.append(total)
    th.testing.assert_close(segment_cumsum(x, init, SEG), th.stack(sums))
    assert th.autograd.gradcheck(lambda a, b: segment_cumsum(a, b, SEG), (x, init))
    assert th.autograd.gradcheck(lambda a, b: segment_cummax(a, b, SEG), (x, init))


def test_reverse_cumsum_and_straight_through_backward_match_a_loop():
    g = th.randn(9, 2, 3, dtype=th.float64)
    expected = th.zeros_like(g)
    for b in range(2):
        for t in range(9):
            end = t + 1
            while end < 9 and not SEG.resets[end, b]:
                end += 1
            expected[t, b] = g[t:end, b].sum(0)
    th.testing.assert_close(segment_reverse_cumsum(g, SEG), expected)
    x = th.randn(9, 2, 3, dtype=th.float64, requires_grad=True)
    init = th.rand(2, 3, dtype=th.float64, requires_grad=True)
    out = StraightThroughCummax.apply(x, init, SEG)
    grads = th.autograd.grad((out * g).sum(), (x, init))
    loop = _loop_max(x, init, SEG, True)
    th.testing.assert_close(out, loop)
    th.testing.assert_close(grads, th.autograd.grad((loop * g).sum(), (x, init)))


def test_gru_with_resets_matches_loop_and_finite_differences():
    th.manual_seed(0)
    gru = make_gru(3, 4).double()
    x = th.randn(9, 2, 3, dtype=th.float64, requires_grad=True)
    h0 = th.randn(2, 4, dtype=th.float64, requires_grad=True)
    out, h_final = gru_with_resets(gru, x, h0, SEG)
    h, outs = h0.unsqueeze(0), []
    for t in range(9):
        o, h = gru(x[t : t + 1], h * (~SEG.resets[t]).view(1, -1, 1))
        outs.append(o)
    th.testing.assert_close(out, th.cat(outs))
    th.testing.assert_close(h_final, h[0])
    assert th.autograd.gradcheck(lambda a, b: gru_with_resets(gru, a, b, SEG)[0], (x, h0))


def test_gauss_kl_against_closed_form_and_gradients():
    agg = make_aggregator("gauss", 4, kl_weight=1.0).double()
    x = th.randn(3, 1, 4, dtype=th.float64, requires_grad=True)
    seg = Segments.from_starts(starts(3, 1, [(0, 0)]))
    out, _, aux = agg(x, th.zeros(1, 4, dtype=th.float64), seg)
    mean, logvar = out[0, 0].chunk(2)
    kl_first = 0.5 * (logvar.exp() + mean**2 - 1 - logvar).sum()  # KL to N(0, I) at the trial's start
    assert aux > kl_first / 3  # the mean over 3 steps includes it
    assert th.autograd.gradcheck(lambda a: agg(a, th.zeros(1, 4, dtype=th.float64), seg)[2], (x,))


def test_a_new_aggregator_is_one_small_class():
    class RunningSum(SumAggregator):
        name = "test_sum"

        def contributions(self, x):
            return x

        def readout(self, sums):
            return sums

    try:
        mem = Memory(LAYOUT, encoder_hidden=8, aggregator="test_sum").double()
        obs, episode_starts = transitions(6, 2), starts(6, 2, [(3, 1)])
        latent, state, _ = mem(obs, episode_starts, th.zeros(2, mem.state_size, dtype=th.float64))
        assert latent.shape == (6, 2, 24) and state.shape == (2, 8 + 4)
        step_state = th.zeros(2, mem.state_size, dtype=th.float64)
        for t in range(6):
            _, step_state, _ = mem(obs[t : t + 1], episode_starts[t : t + 1], step_state)
        th.testing.assert_close(state, step_state)
    finally:
        AGGREGATORS.pop("test_sum")


def test_bad_configuration_is_rejected():
    with pytest.raises(ValueError, match="unknown aggregator 'median'"):
        Memory(LAYOUT, aggregator="median")
    with pytest.raises(ValueError, match="encoder must be one of"):
        Memory(LAYOUT, encoder="lstm")
    with pytest.raises(ValueError, match="split=True needs an aggregator"):
        Memory(LAYOUT, aggregator=None)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        make_aggregator("softmax", 4, temperature=0.0)
