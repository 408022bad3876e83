"""Actor-critic heads over (state, latent): the hypernetwork head with Bias-HyperInit, and a plain MLP.

Both take the current state ``s`` (normalised by running statistics, then ``tanh(Linear(obs → 256))``)
and the memory's latent, and return ``(action output, value)``: logits for a Discrete action space,
the Gaussian mean for a Box one.

Hypernetwork (the SplAgger paper's): ``e = tanh(Linear(latent → 25))``; every weight and bias of the
actor and critic base networks ``256 → 256 → 128 → out`` is a linear function of ``e``. A generated
layer computes ``W(e) h + b(e)`` with ``W(e) = Σ_k e_k A_k + C`` as ``Σ_k e_k (A_k h) + C h``: one matrix
product of ``h`` with the stacked ``[A_1 … A_K, C]``, then a contraction with ``(e, 1)`` -- no per-sample
weight matrix is ever built. Bias-HyperInit: ``A = 0``, ``C`` = the base layer's standard
initialisation, bias heads zero, so at initialisation the generated networks are ordinary MLPs that
do not depend on the latent.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch as th
import torch.nn.functional as F
from torch import nn

from metarl_agents.derived import derived

#: tanh gain: hidden rows are initialised to this norm
TANH_GAIN = 5.0 / 3.0


class RunningNorm(nn.Module):
    """Running mean/std normalisation (buffers, so saved with the policy), clipped to ``±clip``.

    Statistics change only through :meth:`update`; the policies call it on their rollout path only.
    """

    def __init__(self, dim: int, clip: float = 10.0, eps: float = 1e-8) -> None:
        super().__init__()
        self.register_buffer("mean", th.zeros(dim, dtype=th.float64))
        self.register_buffer("var", th.ones(dim, dtype=th.float64))
        self.register_buffer("count", th.tensor(1e-4, dtype=th.float64))
        self.clip, self.eps = clip, eps

    @th.no_grad()
    def update(self, x: th.Tensor) -> None:
        x = x.reshape(-1, x.shape[-1]).double()
        n = x.shape[0]
        batch_mean, batch_var = x.mean(0), x.var(0, unbiased=False)
        delta = batch_mean - self.mean
        total = self.count + n
        self.mean += delta * n / total
        self.var.copy_((self.var * self.count + batch_var * n + delta**2 * self.count * n / total) / total)
        self.count.copy_(total)

    def forward(self, x: th.Tensor) -> th.Tensor:
        mean, std = self._moments(x.dtype)
        return ((x - mean) / std).clamp(-self.clip, self.clip)

    def _moments(self, dtype: th.dtype) -> tuple[th.Tensor, th.Tensor]:
        """``(mean, std)`` in ``dtype``, kept between rollout steps while the statistics stay (:func:`derived`)."""
        return derived(self, f"moments_{dtype}", (self.mean, self.var),
                       lambda: (self.mean.to(dtype), th.sqrt(self.var + self.eps).to(dtype)))


def normc(out_features: int, in_features: int, norm: float) -> th.Tensor:
    """Gaussian weights with every row rescaled to the given norm."""
    w = th.randn(out_features, in_features)
    return w * (norm / w.norm(dim=1, keepdim=True))


def reference_critic_output(fan_in: int) -> tuple[th.Tensor, th.Tensor]:
    """The SplAgger reference's hypernetwork critic output layer: ``kaiming_uniform_`` with ``a = 0`` (bound
    ``√(6 / fan_in)``, 0.217 at 128) and a bias from ``U(−1, 1)`` (the reference took the bias's fan-in from a
    ``(fan_in, 1)`` tensor, i.e. 1)."""
    weight = nn.init.kaiming_uniform_(th.empty(1, fan_in), a=0.0)
    bias = th.empty(1).uniform_(-1.0, 1.0)
    return weight, bias


def base_initialisation(sizes: Sequence[int], role: str, discrete: bool,
                        critic_init: str = "torch") -> list[tuple[th.Tensor, th.Tensor]]:
    """Standard ``(weight, bias)`` of a base net ``sizes[0] → … → sizes[-1]`` for ``role`` actor/critic.

    Hidden layers: rows of norm 5/3, zero bias. Actor output: orthogonal with gain 0.01 (discrete) or
    rows of norm 1 (Gaussian), zero bias. Critic output: Kaiming-uniform weight, ``U(±1/√fan_in)`` bias
    (``critic_init="torch"``, nn.Linear's default) or :func:`reference_critic_output` (``"reference"``).
    """
    layers = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        bias = th.zeros(fan_out)
        if i < len(sizes) - 2:
            weight = normc(fan_out, fan_in, TANH_GAIN)
        elif role == "critic" and critic_init == "reference" and fan_out == 1:
            weight, bias = reference_critic_output(fan_in)
        elif role == "critic":  # nn.Linear's own initialisation
            weight, bias = (t.detach().clone() for t in nn.Linear(fan_in, fan_out).parameters())
        elif discrete:
            weight = nn.init.orthogonal_(th.empty(fan_out, fan_in), gain=0.01)
        else:
            weight = normc(fan_out, fan_in, 1.0)
        layers.append((weight, bias))
    return layers


class HyperLinear(nn.Module):
    """A linear layer whose weight and bias are linear functions of a conditioning vector ``e``.

    ``matrices[k]`` is ``A_k`` for ``k < e_dim`` and ``C`` (the weight-generating head's bias) for
    ``k = e_dim``; likewise ``bias[k]``. The parameter ``weight`` holds them input-major,
    ``[in, k, out]``, so that ``h @ weight`` is a plain GEMM with a contiguous right operand: at a
    rollout's batch of 16 that runs 1.7x faster than the same product against the transposed
    ``[k * out, in]`` layout, and as fast at training sizes.
    """

    def __init__(self, e_dim: int, base_weight: th.Tensor, base_bias: th.Tensor) -> None:
        super().__init__()
        out_features, in_features = base_weight.shape
        self.in_features, self.out_features, self.k = in_features, out_features, e_dim + 1
        weight = th.zeros(in_features, self.k, out_features)
        weight[:, e_dim] = base_weight.t()
        bias = th.zeros(self.k, out_features)
        bias[e_dim] = base_bias
        self.weight = nn.Parameter(weight)
        self.bias = nn.Parameter(bias)

    @property
    def matrices(self) -> th.Tensor:
        """``[A_1 ... A_K, C]`` as ``[K + 1, out, in]`` (a view of ``weight``)."""
        return self.weight.permute(1, 2, 0)

    def forward(self, h: th.Tensor, e1: th.Tensor) -> th.Tensor:
        """``h [N, in]``, ``e1 [N, e_dim + 1]`` (``e`` with a trailing 1) → ``[N, out]``."""
        z = (h @ self.weight.view(self.in_features, self.k * self.out_features)).view(-1, self.k, self.out_features)
        return th.bmm(e1.unsqueeze(1), z).squeeze(1) + e1 @ self.bias


class StateEmbedding(nn.Module):
    """Running-normalised state, then ``tanh(Linear(obs → dim))``."""

    def __init__(self, obs_dim: int, dim: int, clip: float) -> None:
        super().__init__()
        self.norm = RunningNorm(obs_dim, clip)
        self.linear = nn.Linear(obs_dim, dim)

    def forward(self, s: th.Tensor) -> th.Tensor:
        return th.tanh(self.linear(self.norm(s)))


class HyperHead(nn.Module):
    """Hypernetwork actor-critic head (see the module docstring)."""

    def __init__(
        self, obs_dim: int, latent_dim: int, action_dim: int, discrete: bool, *,
        state_dim: int = 256, hyper_dim: int = 25, hidden: Sequence[int] = (256, 128), obs_clip: float = 10.0,
        autocast_bf16: bool = False, critic_init: str = "torch",
    ) -> None:
        super().__init__()
        # Opt-in bfloat16 autocast of the head's products (parameters, gradients and outputs stay float32).
        # Only worth it where the CPU has bf16 instructions (AVX512-BF16/AMX); elsewhere it is much slower.
        self.autocast_bf16 = autocast_bf16
        self.state = StateEmbedding(obs_dim, state_dim, obs_clip)
        self.hyper_input = nn.Linear(latent_dim, hyper_dim)
        sizes = [state_dim, *hidden]
        self.actor = nn.ModuleList(HyperLinear(hyper_dim, w, b)
                                   for w, b in base_initialisation([*sizes, action_dim], "actor", discrete))
        self.critic = nn.ModuleList(HyperLinear(hyper_dim, w, b)
                                    for w, b in base_initialisation([*sizes, 1], "critic", discrete, critic_init))

    @staticmethod
    def _run(layers: nn.ModuleList, h: th.Tensor, e1: th.Tensor) -> th.Tensor:
        for i, layer in enumerate(layers):
            h = layer(h, e1)
            if i < len(layers) - 1:
                h = th.tanh(h)
        return h

    def forward(self, s: th.Tensor, latent: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        h = self.state(s)
        with th.autocast(h.device.type, dtype=th.bfloat16, enabled=self.autocast_bf16):
            e = th.tanh(self.hyper_input(latent))
            e1 = th.cat([e, th.ones_like(e[:, :1])], dim=-1)
            actor, critic = self._run(self.actor, h, e1), self._run(self.critic, h, e1).squeeze(-1)
        return actor.float(), critic.float()

    def step(self, s: th.Tensor, latent: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """A rollout step: :meth:`forward` (its arithmetic, not its call overhead, is what costs)."""
        return self(s, latent)


def _mlp(sizes: Sequence[int], role: str, discrete: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (weight, bias) in enumerate(base_initialisation(sizes, role, discrete)):
        linear = nn.Linear(weight.shape[1], weight.shape[0])
        with th.no_grad():
            linear.weight.copy_(weight)
            linear.bias.copy_(bias)
        layers.append(linear)
        if i < len(sizes) - 2:
            layers.append(nn.Tanh())
    return nn.Sequential(*layers)


class MlpHead(nn.Module):
    """Plain actor and critic MLPs (tanh) over ``concat(state embedding, latent)``, same initialisation."""

    def __init__(
        self, obs_dim: int, latent_dim: int, action_dim: int, discrete: bool, *,
        state_dim: int = 256, net_arch: Sequence[int] = (256, 128), obs_clip: float = 10.0,
    ) -> None:
        super().__init__()
        self.state = StateEmbedding(obs_dim, state_dim, obs_clip)
        sizes = [state_dim + latent_dim, *net_arch]
        self.actor = _mlp([*sizes, action_dim], "actor", discrete)
        self.critic = _mlp([*sizes, 1], "critic", discrete)

    def forward(self, s: th.Tensor, latent: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        x = th.cat([self.state(s), latent], dim=-1)
        return self.actor(x), self.critic(x).squeeze(-1)

    def step(self, s: th.Tensor, latent: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """:meth:`forward` for a rollout step without grad: the same operators on the layers' tensors
        directly, in place where nothing else holds the result (a rollout step at batch 16 is
        dominated by per-call overhead)."""
        norm, linear = self.state.norm, self.state.linear
        mean, std = norm._moments(s.dtype)
        h = th.sub(s, mean).div_(std).clamp_(-norm.clip, norm.clip)
        x = th.cat([F.linear(h, linear.weight, linear.bias).tanh_(), latent], dim=-1)
        return _mlp_step(self.actor, x), _mlp_step(self.critic, x).squeeze(-1)


def _mlp_step(layers: nn.Sequential, x: th.Tensor) -> th.Tensor:
    """``layers(x)`` for a :func:`_mlp` stack (Linear, Tanh, ..., Linear), without module calls."""
    modules = list(layers)
    for i in range(0, len(modules), 2):
        x = F.linear(x, modules[i].weight, modules[i].bias)
        if i + 1 < len(modules):
            x = x.tanh_()
    return x

