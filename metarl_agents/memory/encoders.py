"""Encoders trained with a parallel scan: minGRU, LRU, FFM, S6 and gated linear attention.

Each is the permutation-variant ``encoder`` of :class:`metarl_agents.memory.Memory`, beside the GRU.
All five are *linear* recurrences in their state, ``h_t = a_t ⊙ h_{t-1} + b_t``, where the decay
``a_t`` and the input ``b_t`` depend on the input ``x_t`` only (never on ``h``). That makes the
recurrence associative -- ``(a, b) ∘ (a', b') = (a a', a' b + b')`` -- so a whole sequence is
computed by :func:`linear_scan` in ``O(log T)`` vectorised steps (no Python loop over time), and a
reset at a trial start is exact: the carry-in decay ``a_t`` is set to zero there. (GLA runs whole
sequences in the equivalent chunked form, :func:`chunked_gated_attention`, whose work is matrix
products; its rollout step is the recurrence.)

=========  ====================================================  ==================================
encoder    recurrence (per state element)                         state size (floats per copy)
=========  ====================================================  ==================================
minGRU     ``h = (1 - z) h + z h~``, ``z = σ(W x)``, ``h~ = V x``     ``hidden``
LRU        ``h = λ h + γ (B x)``, ``λ = exp(-e^ν + i e^θ)`` complex  ``2 * state_dim`` (re, im)
FFM        ``S = exp(-|α| + i ω) S + x~ 1ᵀ`` complex, m x c         ``2 * memory_size * context_size``
S6         ``h = exp(Δ A) h + Δ B u``, Δ, B from ``x``, D x N          ``hidden * state_dim``
GLA        ``S = diag(α) S + k vᵀ``, α, k, v from ``x``, per head      ``heads * key_dim * (hidden / heads)``
=========  ====================================================  ==================================

Every encoder's output passes a ``tanh``, so encodings lie in ``(-1, 1)`` like the GRU's (the
aggregators' conventions -- a zero initial max, the softmax shift by ``2 / T`` -- assume that).
Complex states are stored as ``(re, im)`` pairs and matrix states flattened, so the memory state
stays one flat real vector per copy, zeros meaning empty.

Adding an encoder is one class: subclass :class:`ScanEncoder`, give it a ``name`` and implement
:meth:`~ScanEncoder.coefficients` and :meth:`~ScanEncoder.readout`.
"""

from __future__ import annotations

import inspect
import math
from typing import Any, ClassVar

import torch as th
import torch.nn.functional as F
from torch import nn

from metarl_agents.memory.sequence import Segments

SCAN_ENCODERS: dict[str, type[ScanEncoder]] = {}


# --- the scan ------------------------------------------------------------------------------------


def _scan(a: th.Tensor, b: th.Tensor, out: th.Tensor, h0: th.Tensor | None = None, reverse: bool = False) -> th.Tensor:
    """Write ``h_t = a_t h_{t-1} + b_t`` along dim 0 into ``out``, from ``h_{-1} = h0`` (zeros when
    ``None``); ``reverse`` runs time backwards (``h_t = a_t h_{t+1} + b_t``). ``a`` broadcasts against ``b``.

    Recursive doubling: combine the pairs of consecutive steps into one step each, scan that
    half-length sequence straight into the later steps' slots of ``out`` (the same ``h0`` enters its
    first step), then fill in each remaining step from its predecessor. ``O(T)`` work in
    ``log2(T)`` levels of a few vectorised tensor operations; slices are views, so nothing is copied
    beyond the level's own products.
    """
    t_count = b.shape[0]
    half = t_count // 2
    if reverse:  # storage order is the reverse of time order
        first, early, late = t_count - 1, slice(t_count - 2 * half + 1, t_count, 2), slice(t_count - 2 * half, t_count - 1, 2)
        rest, rest_prev = slice((t_count - 1) % 2, t_count - 1, 2), slice((t_count - 1) % 2 + 1, t_count, 2)
    else:
        first, early, late = 0, slice(0, 2 * half, 2), slice(1, 2 * half, 2)
        rest, rest_prev = slice(2, t_count, 2), slice(1, t_count - 1, 2)
    if half:
        a_late = a[late]
        _scan(a_late * a[early], th.addcmul(b[late], a_late, b[early]), out[late], h0, reverse)
        th.addcmul(b[rest], a[rest], out[rest_prev], out=out[rest])
    out[first] = b[first] if h0 is None else th.addcmul(b[first], a[first], h0)
    return out


def _reduce_to(grad: th.Tensor, shape: th.Size) -> th.Tensor:
    return grad.sum_to_size(shape) if grad.shape != shape else grad


class LinearScan(th.autograd.Function):
    """:func:`linear_scan` with its backward as a second scan, run in reverse time.

    With ``G_t = ∂L/∂b_t`` (the gradient reaching ``h_t`` from all later steps),
    ``G_t = g_t + conj(a_{t+1}) G_{t+1}``, ``∂L/∂a_t = G_t conj(h_{t-1})`` and
    ``∂L/∂h_{-1} = conj(a_0) G_0`` (PyTorch's conjugate convention, a no-op for real tensors).
    Autograd through the forward scan's levels would store every level; this stores ``h`` only.
    """

    @staticmethod
    def forward(ctx, a: th.Tensor, b: th.Tensor, h0: th.Tensor) -> th.Tensor:  # type: ignore[override]
        h = _scan(a, b, th.empty_like(b), h0)
        ctx.save_for_backward(a, h0, h)
        return h

    @staticmethod
    def backward(ctx, grad: th.Tensor):  # type: ignore[override]
        a, h0, h = ctx.saved_tensors
        g = th.empty_like(grad)
        g[-1] = grad[-1]
        if grad.shape[0] > 1:
            _scan(a[1:].conj(), grad[:-1], g[:-1], grad[-1], reverse=True)
        grad_a = grad_h0 = None
        if ctx.needs_input_grad[0]:
            grad_a = th.empty_like(g)
            th.mul(g[1:], h[:-1].conj(), out=grad_a[1:])
            grad_a[0] = g[0] * h0.conj()
            grad_a = _reduce_to(grad_a, a.shape)
        if ctx.needs_input_grad[2]:
            grad_h0 = _reduce_to(g[0] * a[0].conj(), h0.shape)
        return grad_a, g, grad_h0


def linear_scan(a: th.Tensor, b: th.Tensor, h0: th.Tensor) -> th.Tensor:
    """All states ``h [T, B, ...]`` of ``h_t = a_t ⊙ h_{t-1} + b_t`` from ``h_{-1} = h0 [B, ...]``.

    ``a`` broadcasts against ``b`` (e.g. a decay shared by the columns of a matrix state); real or
    complex. Products of decays are formed directly, never divided out, so a zero decay (a reset) is
    exact and nothing overflows: in float32 the result matches a step-by-step loop to rounding.
    """
    if b.dtype != h0.dtype:
        h0 = h0.to(b.dtype)
    return LinearScan.apply(a, b, h0)


# --- the encoders ------------------------------------------------------------------------------


class ScanEncoder(nn.Module):
    """Base class: a linear recurrence ``h_t = a_t ⊙ h_{t-1} + b_t`` and a read-out ``y_t = f(h_t, x_t)``.

    Subclasses set ``name`` (which registers them), ``state_shape`` and ``complex_state`` in
    ``__init__`` and implement :meth:`coefficients` and :meth:`readout`; the scan, the resets, the
    one-step update and the flat state packing come from here.
    """

    name: ClassVar[str]
    state_shape: tuple[int, ...]
    complex_state: bool = False
    #: elements of the states of one block of time (``block x B x state_size``), see :meth:`forward`
    max_block_elements: ClassVar[int] = 2**22

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            SCAN_ENCODERS[cls.name] = cls

    def __init__(self, in_dim: int, hidden: int) -> None:
        super().__init__()
        self.in_dim = in_dim
        self.out_dim = hidden

    @property
    def state_size(self) -> int:
        """Width of the flat real state (complex elements count twice)."""
        return math.prod(self.state_shape) * (2 if self.complex_state else 1)

    def coefficients(self, x: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """``x [..., in_dim]`` -> ``(a, b)``: ``b [..., *state_shape]``, ``a`` broadcastable to it."""
        raise NotImplementedError

    def readout(self, h: th.Tensor, x: th.Tensor) -> th.Tensor:
        """States ``h [..., *state_shape]`` and inputs ``x [..., in_dim]`` -> output ``[..., out_dim]``."""
        raise NotImplementedError

    def unpack(self, state: th.Tensor) -> th.Tensor:
        """Flat real ``[B, state_size]`` -> ``[B, *state_shape]`` (complex where the state is)."""
        if self.complex_state:
            return th.view_as_complex(state.reshape(*state.shape[:-1], *self.state_shape, 2).contiguous())
        return state.reshape(*state.shape[:-1], *self.state_shape)

    def pack(self, h: th.Tensor) -> th.Tensor:
        """Inverse of :meth:`unpack`."""
        n = len(self.state_shape)
        if self.complex_state:
            return th.view_as_real(h).flatten(-n - 1)
        return h.flatten(-n)

    def forward(self, x: th.Tensor, state: th.Tensor, seg: Segments) -> tuple[th.Tensor, th.Tensor]:
        """``x [T, B, in_dim]`` from ``state [B, state_size]``, zero state where ``seg.resets``:
        ``(out [T, B, out_dim], final state [B, state_size])``.

        Long sequences of large states run in blocks of time, each one parallel scan entered with
        the previous block's last state (a few blocks at most: S6 at its default size takes 128
        steps x 16 copies per block). The result is the same; the blocks' tensors stay small enough
        to be recycled by the allocator instead of mapped and faulted in afresh, which made one
        700-step pass of S6 about 2.5x slower than blocks of 50.
        """
        block = max(1, self.max_block_elements // (x.shape[1] * self.state_size))
        keep = (~seg.resets).to(x.dtype)
        h, outs = self.unpack(state), []
        for begin in range(0, x.shape[0], block):
            xb = x[begin : begin + block]
            a, b = self.coefficients(xb)
            kb = keep[begin : begin + block]
            hs = linear_scan(a * kb.view(*kb.shape, *([1] * (b.dim() - 2))), b, h)
            outs.append(self.readout(hs, xb))
            h = hs[-1]
        return (outs[0] if len(outs) == 1 else th.cat(outs)), self.pack(h)

    def step(self, x: th.Tensor, state: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """The one-step update of a rollout: ``x [B, in_dim]``, ``state [B, state_size]`` (already
        zeroed where a trial starts) -> ``(out [B, out_dim], new state)``."""
        a, b = self.coefficients(x)
        h = a * self.unpack(state).to(b.dtype) + b
        return self.readout(h, x), self.pack(h)


class MinGRU(ScanEncoder):
    """minGRU (Feng et al. 2024): the GRU without the hidden state in its gates or candidate.

    ``z_t = σ(W_z x_t)``, ``h~_t = W_h x_t``, ``h_t = (1 - z_t) h_{t-1} + z_t h~_t``; out ``tanh(h_t)``.
    State: ``hidden`` floats.
    """

    name = "mingru"

    def __init__(self, in_dim: int, hidden: int) -> None:
        super().__init__(in_dim, hidden)
        self.state_shape = (hidden,)
        self.gate_and_candidate = nn.Linear(in_dim, 2 * hidden)

    def coefficients(self, x):
        gate, candidate = self.gate_and_candidate(x).chunk(2, dim=-1)
        return th.sigmoid(-gate), th.sigmoid(gate) * candidate  # 1 - σ(g) = σ(-g), exactly

    def readout(self, h, x):
        return th.tanh(h)


class LRU(ScanEncoder):
    """Linear Recurrent Unit (Orvieto et al. 2023): a diagonal complex recurrence, stable by design.

    ``λ = exp(-exp(ν) + i exp(θ))`` (so ``|λ| < 1`` for any ``ν``), ``h_t = λ ⊙ h_{t-1} + γ ⊙ (B x_t)``
    with the normalisation ``γ = sqrt(1 - |λ|²)`` (learned as ``log γ``, initialised there), and out
    ``tanh(Re(C h_t) + D x_t)``. ``|λ|`` starts uniform on the ring ``[r_min, r_max]``, the phase on
    ``[0, max_phase]``; ``B`` and ``C`` complex Gaussian (variances ``1/(2 in_dim)``, ``1/state_dim``).
    State: ``2 * state_dim`` floats (default ``state_dim = hidden / 2``).
    """

    name = "lru"
    complex_state = True

    def __init__(self, in_dim: int, hidden: int, state_dim: int | None = None, r_min: float = 0.9,
                 r_max: float = 0.999, max_phase: float = 2 * math.pi) -> None:
        super().__init__(in_dim, hidden)
        n = max(1, hidden // 2) if state_dim is None else state_dim
        if not 0 <= r_min < r_max <= 1:
            raise ValueError(f"LRU needs 0 <= r_min < r_max <= 1, got r_min={r_min!r}, r_max={r_max!r}")
        self.state_shape = (n,)
        u1, u2 = th.rand(n), th.rand(n)
        nu_log = th.log(-0.5 * th.log(u1 * (r_max**2 - r_min**2) + r_min**2))
        theta_log = th.log(max_phase * u2.clamp_min(1e-6))
        self.nu_log = nn.Parameter(nu_log)
        self.theta_log = nn.Parameter(theta_log)
        self.gamma_log = nn.Parameter(0.5 * th.log(-th.expm1(-2 * th.exp(nu_log))))  # log sqrt(1 - |λ|²)
        self.B = nn.Parameter(th.randn(2, n, in_dim) / math.sqrt(2 * in_dim))  # (re, im)
        self.C = nn.Parameter(th.randn(2, hidden, n) / math.sqrt(n))
        self.D = nn.Linear(in_dim, hidden, bias=False)

    def coefficients(self, x):
        lam = th.exp(th.complex(-th.exp(self.nu_log), th.exp(self.theta_log)))
        n = self.state_shape[0]
        # γ ⊙ (B x) as (diag(γ) B) x, the rows interleaved (re_0, im_0, re_1, ...) to read as complex
        weight = (self.B * th.exp(self.gamma_log).unsqueeze(-1)).permute(1, 0, 2).reshape(2 * n, -1)
        bx = th.view_as_complex(F.linear(x, weight).unflatten(-1, (n, 2)))
        return lam.to(bx.dtype), bx

    def readout(self, h, x):
        # Re(C h) = C_re h_re - C_im h_im, as one product over the interleaved (re, im) pairs of h
        c = th.stack([self.C[0], -self.C[1]], dim=-1).flatten(-2)
        return th.tanh(F.linear(th.view_as_real(h).flatten(-2), c) + self.D(x))


class FFM(ScanEncoder):
    """Fast and Forgetful Memory (Morad et al. 2023): a decaying, oscillating sum of gated inputs.

    ``x~_t = W_pre x_t ⊙ σ(W_in x_t)`` (``memory_size`` traces), ``S_t = γ ⊙ S_{t-1} + x~_t 1ᵀ`` with
    ``γ_jk = exp(-|α_j| + i ω_k)`` (``memory_size x context_size``, complex), ``z_t = W_mix [Re S, Im S]``,
    ``g_t = σ(W_out x_t)``, out ``tanh(LayerNorm(z_t ⊙ g_t) + W_skip x_t ⊙ (1 - g_t))``. Decay rates
    start evenly spaced in ``[1e-6, e]``, periods ``2π / ω`` in ``[min_period, max_period]``.
    State: ``2 * memory_size * context_size`` floats (default 32 x 4: 256).
    """

    name = "ffm"
    complex_state = True

    def __init__(self, in_dim: int, hidden: int, memory_size: int = 32, context_size: int = 4,
                 min_period: float = 1.0, max_period: float = 1024.0) -> None:
        super().__init__(in_dim, hidden)
        self.state_shape = (memory_size, context_size)
        self.pre_and_gate = nn.Linear(in_dim, 2 * memory_size)  # W_pre and W_in
        self.decay = nn.Parameter(th.linspace(1e-6, math.e, memory_size))
        self.frequency = nn.Parameter(2 * math.pi / th.linspace(min_period, max_period, context_size))
        self.mix = nn.Linear(2 * memory_size * context_size, hidden)
        self.gate_and_skip = nn.Linear(in_dim, 2 * hidden)  # W_out and W_skip

    def coefficients(self, x):
        gamma = th.exp(th.complex(-self.decay.abs().unsqueeze(1) - 1e-6, self.frequency.expand(len(self.decay), -1)))
        pre, gate = self.pre_and_gate(x).chunk(2, dim=-1)
        traces = pre * th.sigmoid(gate)
        b = th.complex(traces, th.zeros_like(traces)).unsqueeze(-1).expand(*traces.shape, self.state_shape[1])
        return gamma.to(b.dtype), b

    def readout(self, h, x):
        z = self.mix(th.view_as_real(h).flatten(-3))  # (re, im) pairs, contiguous
        gate, skip = self.gate_and_skip(x).chunk(2, dim=-1)
        gate = th.sigmoid(gate)
        return th.tanh(F.layer_norm(z * gate, z.shape[-1:]) + skip * (1 - gate))


class S6(ScanEncoder):
    """S6, Mamba's selective scan (Gu & Dao 2023), diagonal, with Mamba's gated block around it.

    ``u_t = SiLU(W_u x_t)``, per channel ``d`` and state ``n``:
    ``h_t = exp(Δ_t A) ⊙ h_{t-1} + Δ_t B_t u_t`` with input-dependent ``Δ_t = softplus(W_Δ u_t)`` (low
    rank, ``ceil(channels / 16)``), ``B_t = W_B u_t``, ``C_t = W_C u_t`` and ``A = -exp(A_log) < 0``
    (S4D-real init ``A_dn = -(n + 1)``, ``Δ`` starting in ``[1e-3, 0.1]``); ``y_t = C_t h_t + D ⊙ u_t``,
    gated ``y_t ⊙ SiLU(W_z x_t)``, out ``tanh(W_out y)``. (Mamba's short convolution is left out: it
    would add a window of past inputs to the state.) State: ``hidden * state_dim`` floats.
    """

    name = "s6"

    def __init__(self, in_dim: int, hidden: int, state_dim: int = 8, dt_min: float = 1e-3,
                 dt_max: float = 0.1) -> None:
        super().__init__(in_dim, hidden)
        channels, rank = hidden, math.ceil(hidden / 16)
        self.state_shape = (channels, state_dim)
        self.in_proj = nn.Linear(in_dim, 2 * channels)
        self.dt_down = nn.Linear(channels, rank, bias=False)
        self.dt_up = nn.Linear(rank, channels)
        dt = th.exp(th.rand(channels) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        with th.no_grad():
            self.dt_up.bias.copy_(dt + th.log(-th.expm1(-dt)))  # softplus⁻¹(dt)
        self.bc = nn.Linear(channels, 2 * state_dim, bias=False)
        self.A_log = nn.Parameter(th.log(th.arange(1, state_dim + 1, dtype=th.float32)).repeat(channels, 1))
        self.D = nn.Parameter(th.ones(channels))
        self.out_proj = nn.Linear(channels, hidden)

    def _inputs(self, x):
        u, z = self.in_proj(x).chunk(2, dim=-1)
        return F.silu(u), z

    def coefficients(self, x):
        u, _ = self._inputs(x)
        dt = F.softplus(self.dt_up(self.dt_down(u))).unsqueeze(-1)
        b_in, _ = self.bc(u).chunk(2, dim=-1)
        return th.exp(-dt * th.exp(self.A_log)), dt * u.unsqueeze(-1) * b_in.unsqueeze(-2)

    def readout(self, h, x):
        u, z = self._inputs(x)
        _, c_out = self.bc(u).chunk(2, dim=-1)
        y = (h @ c_out.unsqueeze(-1)).squeeze(-1) + self.D * u
        return th.tanh(self.out_proj(y * F.silu(z)))


def chunked_gated_attention(
    q: th.Tensor, k: th.Tensor, v: th.Tensor, log_decay: th.Tensor, resets: th.Tensor, h0: th.Tensor, chunk: int
) -> tuple[th.Tensor, th.Tensor]:
    """Outputs ``o_t = q_t S_t`` of ``S_t = diag(exp(log_decay_t)) S_{t-1} + k_tᵀ v_t``, chunk by chunk.

    ``q, k, log_decay [T, B, H, dk]`` (``log_decay <= 0``), ``v [T, B, H, dv]``, ``resets [T, B]``,
    ``h0 [B, H, dk, dv]`` -> ``(o [T, B, H, dv], S_{T-1} [B, H, dk, dv])``. Inside a chunk the outputs
    are an attention ``o_t = Σ_{s <= t} (q_t · (k_s ⊙ exp(Λ_t - Λ_s))) v_s`` over the cumulative
    log-decays ``Λ`` (every factor ``exp(·) <= 1``, so nothing overflows; pairs split by a reset are
    masked out); the states at chunk ends come from :func:`linear_scan` over chunks. This never
    forms the ``dk x dv`` state of every step, which is what makes it fast: the work is matrix products.
    """
    t_count, batch, heads, dk = k.shape
    n_chunks = -(-t_count // chunk)
    pad = n_chunks * chunk - t_count  # padded steps add nothing and keep the state (k = v = 0, decay 1)

    def chunks(y):  # [T, B, ...] -> [n, B, H, C, ...]
        y = F.pad(y, (0, 0) * (y.dim() - 2) + (0, 0, 0, pad)) if pad else y
        y = y.reshape(n_chunks, chunk, *y.shape[1:])
        return y.permute(0, 2, 3, 1, *range(4, y.dim())) if y.dim() > 3 else y.transpose(1, 2)

    q, k, v, log_decay = chunks(q), chunks(k), chunks(v), chunks(log_decay)
    segment = th.cumsum(chunks(resets.long()), dim=-1).unsqueeze(2)  # [n, B, 1, C]: resets so far in the chunk
    cum = th.cumsum(log_decay, dim=3)  # Λ, [n, B, H, C, dk]
    steps = th.arange(chunk, device=q.device)
    same = (segment.unsqueeze(-1) == segment.unsqueeze(-2)) & (steps.unsqueeze(1) >= steps)  # [n, B, 1, C(t), C(s)]
    gaps = th.where(same.unsqueeze(-1), cum.unsqueeze(4) - cum.unsqueeze(3), -math.inf)  # Λ_t - Λ_s
    scores = (q.unsqueeze(4) * k.unsqueeze(3) * gaps.exp()).sum(-1)  # [n, B, H, C, C]
    intra = scores @ v
    untouched = (segment == 0).unsqueeze(-1)  # no reset yet in the chunk: the incoming state still counts
    last = cum[:, :, :, -1:]
    to_end = th.where(segment[..., -1:].unsqueeze(-1) == segment.unsqueeze(-1), (last - cum).exp(), 0.0)
    local = (k * to_end).transpose(-1, -2) @ v  # [n, B, H, dk, dv]: the chunk's own contribution to its end state
    carry = th.where(untouched[:, :, :, -1], last[:, :, :, 0].exp(), 0.0)  # decay of the incoming state over the chunk
    ends = linear_scan(carry.unsqueeze(-1), local, h0)
    incoming = th.cat([h0.unsqueeze(0), ends[:-1]], dim=0)
    inter = (q * th.where(untouched, cum.exp(), 0.0)) @ incoming
    o = (intra + inter).permute(0, 3, 1, 2, 4).reshape(n_chunks * chunk, batch, heads, -1)
    return o[:t_count], ends[-1]


class GatedLinearAttention(ScanEncoder):
    """Gated linear attention (Yang et al. 2024; RetNet's decaying outer-product memory with a
    data-dependent decay), per head: ``S_t = diag(α_t) S_{t-1} + k_tᵀ v_t``, ``o_t = q_t S_t``.

    ``α_t = σ(W_α x_t)^{1/τ}`` (low-rank ``W_α``, ``τ = 16``: decays near 1 at init), computed in log
    space; ``q, k, v`` linear in ``x`` (``k`` scaled by ``key_dim^-1/2``); out
    ``tanh(W_o (GroupNorm(o) ⊙ SiLU(W_r x)))``. Sequences run in the chunked form
    (:func:`chunked_gated_attention`, ``chunk`` steps per chunk), the rollout step as the recurrence.
    State: ``heads * key_dim * (hidden / heads)`` floats (default 4 x 8 x 64: 2048).
    """

    name = "gla"

    def __init__(self, in_dim: int, hidden: int, heads: int = 4, key_dim: int = 8, gate_rank: int = 16,
                 temperature: float = 16.0, chunk: int = 16) -> None:
        super().__init__(in_dim, hidden)
        if hidden % heads:
            raise ValueError(f"gla: hidden ({hidden}) must be divisible by heads ({heads})")
        self.heads, self.key_dim, self.value_dim = heads, key_dim, hidden // heads
        self.temperature = float(temperature)
        self.chunk = chunk
        self.state_shape = (heads, key_dim, self.value_dim)
        self.qk = nn.Linear(in_dim, 2 * heads * key_dim, bias=False)
        self.v = nn.Linear(in_dim, hidden, bias=False)
        self.gate = nn.Sequential(nn.Linear(in_dim, gate_rank, bias=False), nn.Linear(gate_rank, heads * key_dim))
        self.r = nn.Linear(in_dim, hidden)
        self.o = nn.Linear(hidden, hidden)

    def _projections(self, x):
        q, k = self.qk(x).reshape(*x.shape[:-1], self.heads, 2 * self.key_dim).chunk(2, dim=-1)
        v = self.v(x).reshape(*x.shape[:-1], self.heads, self.value_dim)
        log_alpha = F.logsigmoid(self.gate(x).reshape(*x.shape[:-1], self.heads, self.key_dim)) / self.temperature
        return q, k * self.key_dim**-0.5, v, log_alpha

    def _output(self, o, x):
        o = F.layer_norm(o, o.shape[-1:]).flatten(-2)  # group norm: one group per head
        return th.tanh(self.o(o * F.silu(self.r(x))))

    def coefficients(self, x):
        _, k, v, log_alpha = self._projections(x)
        return th.exp(log_alpha).unsqueeze(-1), k.unsqueeze(-1) * v.unsqueeze(-2)

    def readout(self, h, x):
        q = self._projections(x)[0]
        return self._output((q.unsqueeze(-2) @ h).squeeze(-2), x)

    def forward(self, x, state, seg):
        q, k, v, log_alpha = self._projections(x)
        o, final = chunked_gated_attention(q, k, v, log_alpha, seg.resets, self.unpack(state), self.chunk)
        return self._output(o, x), self.pack(final)


def make_scan_encoder(name: str, in_dim: int, hidden: int, **kwargs: Any) -> ScanEncoder:
    """The scan encoder registered as ``name`` (see :data:`SCAN_ENCODERS`)."""
    if name not in SCAN_ENCODERS:
        raise ValueError(f"unknown scan encoder {name!r}; allowed: {sorted(SCAN_ENCODERS)}")
    defaults = inspect.signature(SCAN_ENCODERS[name]).parameters
    for key, value in kwargs.items():
        if key in defaults and (isinstance(defaults[key].default, int) or key == "state_dim") and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise ValueError(f"encoder {name!r}: {key} must be a positive integer, got {value!r}")
    try:
        return SCAN_ENCODERS[name](in_dim, hidden, **kwargs)
    except TypeError as err:
        raise ValueError(f"encoder {name!r}: bad encoder_kwargs {kwargs!r} ({err})") from None
