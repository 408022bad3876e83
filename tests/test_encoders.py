"""The scan encoders: the parallel scan against a loop and finite differences, the rollout step against the
sequence path in float32 with resets mid-sequence, exact resets, and bad configurations.

(Every registered model, the new ones included, also runs through the float64 equivalence tests of
test_memory.py, RecurrentPPO's learn/save/load/predict round trip in test_policies.py and MetaPPO in
test_ppo.py.)
"""

import pytest
import torch as th
from gymnasium import spaces
from torch.func import functional_call

from metarl_agents.memory import Memory
from metarl_agents.memory.encoders import SCAN_ENCODERS, _scan, linear_scan, make_scan_encoder
from metarl_agents.memory.sequence import Segments
from metarl_agents.policies import POLICY_REGISTRY, SCAN_MODEL_NAMES
from metarl_envs.wrappers import transition_layout

LAYOUT = transition_layout(spaces.Box(-1, 1, (3,)), spaces.Discrete(4))
MODELS = [f"{prefix}{label}" for label in SCAN_MODEL_NAMES.values() for prefix in ("", "SplAgger-")]
TINY = {  # the smallest sizes that exercise every shape: several heads, states, channels
    "mingru": {}, "lru": {"state_dim": 3}, "ffm": {"memory_size": 2, "context_size": 2},
    "s6": {"state_dim": 2}, "gla": {"heads": 2, "key_dim": 2, "gate_rank": 2, "chunk": 4},
}


def _loop(a, b, h0):
    h, out = h0, []
    for t in range(b.shape[0]):
        h = a[t] * h + b[t]
        out.append(h)
    return th.stack(out)


@pytest.mark.parametrize("dtype", [th.float64, th.complex128])
def test_linear_scan_matches_a_loop_and_finite_differences(dtype):
    gen = th.Generator().manual_seed(0)
    for t_count in (1, 2, 3, 6, 9):
        a, b = (th.randn(t_count, 2, 3, dtype=dtype, generator=gen) for _ in range(2))
        h0 = th.randn(2, 3, dtype=dtype, generator=gen)
        th.testing.assert_close(linear_scan(a, b, h0), _loop(a, b, h0), rtol=1e-12, atol=1e-12)
        backwards = _scan(a, b, th.empty_like(b), h0, reverse=True)
        th.testing.assert_close(backwards, _loop(a.flip(0), b.flip(0), h0).flip(0), rtol=1e-12, atol=1e-12)
    # a decay shared by a matrix state's columns (GLA), gradients to all three inputs
    a = th.randn(7, 2, 3, 1, dtype=dtype, generator=gen).requires_grad_()
    b = th.randn(7, 2, 3, 4, dtype=dtype, generator=gen).requires_grad_()
    h0 = th.randn(2, 3, 4, dtype=dtype, generator=gen).requires_grad_()
    assert th.autograd.gradcheck(linear_scan, (a, b, h0))


def test_linear_scan_is_sound_in_float32_over_long_sequences():
    gen = th.Generator().manual_seed(1)
    a = th.rand(700, 4, 8, generator=gen) ** 0.01  # decays near 1: products over hundreds of steps
    b = th.randn(700, 4, 8, generator=gen)
    a[350] = 0.0  # a reset
    h0 = th.randn(4, 8, generator=gen)
    exact = _loop(a.double(), b.double(), h0.double())
    assert (linear_scan(a, b, h0).double() - exact).abs().max() < 1e-4
    th.testing.assert_close(linear_scan(a, b, h0)[350], b[350])


@pytest.mark.parametrize("name", sorted(SCAN_ENCODERS))
def test_encoder_gradients_match_finite_differences(name):
    th.manual_seed(0)
    enc = make_scan_encoder(name, 3, 4, **TINY[name]).double()
    x = th.randn(6, 2, 3, dtype=th.float64, requires_grad=True)
    state = (0.5 * th.randn(2, enc.state_size, dtype=th.float64)).requires_grad_()
    resets = th.zeros(6, 2, dtype=th.bool)
    resets[3, 1] = True
    seg = Segments.from_starts(resets)
    names, params = zip(*enc.named_parameters(), strict=True)

    def run(x, state, *params):
        out, final = functional_call(enc, dict(zip(names, params, strict=True)), (x, state, seg))
        return out, final

    assert th.autograd.gradcheck(run, (x, state, *params))


@pytest.mark.parametrize("name", MODELS)
def test_rollout_step_equals_the_sequence_path_in_float32(name):
    th.manual_seed(0)
    preset = POLICY_REGISTRY[name].preset
    mem = Memory(LAYOUT, encoder_hidden=32, **preset)
    t_count, batch = 41, 3
    obs = th.randn(t_count, batch, LAYOUT["dim"], generator=th.Generator().manual_seed(1))
    starts = th.zeros(t_count, batch)
    starts[0, 0] = starts[7, 1] = starts[30, 1] = starts[19, 2] = starts[20, 2] = 1.0
    with th.no_grad():
        _, state, _ = mem(obs, th.zeros(t_count, batch), th.zeros(batch, mem.state_size))  # a non-empty memory
        latent, final, _ = mem(obs, starts, state)
        stepped = []
        for t in range(t_count):
            out, state = mem.step(obs[t], state * (1 - starts[t]).unsqueeze(-1))
            stepped.append(out)
    assert (th.stack(stepped) - latent).abs().max() <= 1e-5
    assert (state - final).abs().max() <= 1e-5


@pytest.mark.parametrize("name", sorted(SCAN_ENCODERS))
def test_encoders_remember_and_reset_exactly(name):
    th.manual_seed(0)
    enc = make_scan_encoder(name, 3, 8)
    x = th.randn(10, 1, 3)
    zero = th.zeros(1, enc.state_size)
    fresh, _ = enc(x[5:], zero, Segments.from_starts(th.zeros(5, 1)))
    after_reset, _ = enc(x, th.randn(1, enc.state_size), Segments.from_starts(th.tensor([[0.0]] * 5 + [[1.0]] * 1 + [[0.0]] * 4)))
    th.testing.assert_close(after_reset[5:], fresh, rtol=0, atol=1e-6)  # (the scan's tree of sums differs)
    continued, _ = enc(x, zero, Segments.from_starts(th.zeros(10, 1)))
    assert not th.allclose(continued[5:], fresh)  # without the reset, the past matters


def test_bad_encoder_configuration_is_rejected():
    with pytest.raises(ValueError, match="encoder must be one of .*'lru'.*got 'lstm'"):
        Memory(LAYOUT, encoder="lstm")
    with pytest.raises(ValueError, match="encoder 'lru': bad encoder_kwargs \\{'size': 3\\}"):
        Memory(LAYOUT, encoder="lru", encoder_kwargs={"size": 3})
    with pytest.raises(ValueError, match="encoder_kwargs are for the scan encoders"):
        Memory(LAYOUT, encoder="gru", encoder_kwargs={"state_dim": 3})
    with pytest.raises(ValueError, match="encoder 's6': state_dim must be a positive integer, got 0"):
        Memory(LAYOUT, encoder="s6", encoder_kwargs={"state_dim": 0})
    with pytest.raises(ValueError, match="encoder 'gla': chunk must be a positive integer, got 2.5"):
        make_scan_encoder("gla", 3, 4, chunk=2.5)
    with pytest.raises(ValueError, match="r_min < r_max"):
        make_scan_encoder("lru", 3, 4, r_min=0.9, r_max=0.5)
    with pytest.raises(ValueError, match="divisible by heads"):
        make_scan_encoder("gla", 3, 6, heads=4)


@pytest.mark.parametrize("name", ["lru", "s6"])
def test_blocks_of_time_give_the_same_values_and_gradients(name, monkeypatch):
    th.manual_seed(0)
    enc = make_scan_encoder(name, 3, 4, **TINY[name]).double()
    x = th.randn(11, 2, 3, dtype=th.float64, requires_grad=True)
    state = th.randn(2, enc.state_size, dtype=th.float64)
    resets = th.zeros(11, 2, dtype=th.bool)
    resets[4, 0] = resets[6, 1] = True
    seg = Segments.from_starts(resets)
    whole, whole_final = enc(x, state, seg)
    (grad_whole,) = th.autograd.grad(whole.sum() + whole_final.sum(), x)
    monkeypatch.setattr(type(enc), "max_block_elements", 3 * 2 * enc.state_size)  # blocks of 3 steps
    blocks, blocks_final = enc(x, state, seg)
    (grad_blocks,) = th.autograd.grad(blocks.sum() + blocks_final.sum(), x)
    th.testing.assert_close(blocks, whole, rtol=1e-12, atol=1e-12)
    th.testing.assert_close(blocks_final, whole_final, rtol=1e-12, atol=1e-12)
    th.testing.assert_close(grad_blocks, grad_whole, rtol=1e-12, atol=1e-12)
