"""Running aggregators over a memory's encoded transitions, elementwise and with zero initial state.

Each aggregator turns ``x [T, B, in_dim]`` into ``out [T, B, out_dim]`` given its state at ``t = 0``
and the reset positions, over the whole sequence at once (segmented cumulative max / sum along
time), and returns its final state. Zero is every aggregator's empty state, so resetting a memory
is multiplying its state by zero. :meth:`Aggregator.step` is the one-step update of the rollout
(the scan at ``T = 1`` without building segments); it gives the same numbers.

Adding an aggregator is one small class: subclass :class:`Aggregator` (or :class:`SumAggregator`,
for the "running sums, then a read-out" kind, which gets the parallel scan, resets and state for
free) and give it a ``name``; it is then available as ``MetaRecurrentPolicy(aggregator=name)``::

    class RunningSum(SumAggregator):
        name = "sum"

        def contributions(self, x):  # what each step adds to the running sums
            return x

        def readout(self, sums):  # the aggregate, from the sums (zeros = empty)
            return sums
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch as th
import torch.nn.functional as F
from torch import nn

from metarl_agents.memory.sequence import Segments, StraightThroughCummax, segment_cummax, segment_cumsum

AGGREGATORS: dict[str, type[Aggregator]] = {}


class Aggregator(nn.Module):
    """Base class; subclasses set ``name`` (registers them), ``out_dim`` and ``state_dim``."""

    name: ClassVar[str]
    #: Variational aggregators output ``(mean, log-variance)`` from which the latent is sampled.
    variational: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            AGGREGATORS[cls.name] = cls

    def __init__(self, in_dim: int) -> None:
        super().__init__()
        self.in_dim = in_dim
        self.out_dim = in_dim
        self.state_dim = in_dim

    def forward(self, x: th.Tensor, state: th.Tensor, seg: Segments) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        """Return ``(out [T, B, out_dim], final state [B, state_dim], auxiliary loss (scalar))``."""
        raise NotImplementedError

    def step(self, x: th.Tensor, state: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """One step without resets: ``x [B, in_dim]``, ``state [B, state_dim]`` -> ``(out, new state)``.

        Rollouts use it, training differentiates :meth:`forward` (so a straight-through backward
        needs no counterpart here). Subclasses override it with their direct update; this fallback
        runs :meth:`forward` at ``T = 1``.
        """
        no_reset = Segments.from_starts(x.new_zeros(1, x.shape[0]))
        out, new_state, _ = self(x.unsqueeze(0), state, no_reset)
        return out[0], new_state


class MaxAggregator(Aggregator):
    """``m_t = max(m_{t-1}, x_t)``, ``m = 0`` initially (not ``-inf``), ordinary max gradients."""

    name = "max"

    def forward(self, x, state, seg):
        out = segment_cummax(x, state, seg)
        return out, out[-1], x.new_zeros(())

    def step(self, x, state):
        out = th.maximum(state, x)
        return out, out


class StraightThroughMaxAggregator(MaxAggregator):
    """AMRL's max: same forward; the backward passes the gradient to both arguments unchanged."""

    name = "max_st"

    def forward(self, x, state, seg):
        out = StraightThroughCummax.apply(x, state, seg)
        return out, out[-1], x.new_zeros(())


class SumAggregator(Aggregator):
    """Aggregators whose state is running sums of per-step contributions (plus a step count)."""

    def __init__(self, in_dim: int) -> None:
        super().__init__(in_dim)
        self.out_dim = self.output_dim(in_dim)
        self.state_dim = self.contributions(th.zeros(1, 1, in_dim)).shape[-1]

    def output_dim(self, in_dim: int) -> int:
        return in_dim

    def contributions(self, x: th.Tensor) -> th.Tensor:
        """What step ``x`` adds to the running sums: ``[T, B, state_dim]``."""
        raise NotImplementedError

    def readout(self, sums: th.Tensor) -> th.Tensor:
        """The aggregate from the running sums."""
        raise NotImplementedError

    def forward(self, x, state, seg):
        sums = segment_cumsum(self.contributions(x), state, seg)
        return self.readout(sums), sums[-1], self.auxiliary_loss(sums, state, seg)

    def step(self, x, state):
        sums = state + self.contributions(x)
        return self.readout(sums), sums

    def auxiliary_loss(self, sums: th.Tensor, state: th.Tensor, seg: Segments) -> th.Tensor:
        return sums.new_zeros(())


class MeanAggregator(SumAggregator):
    """CNP's mean: state ``(Σx, n)``; out ``Σx / n``."""

    name = "mean"

    def contributions(self, x):
        return th.cat([x, th.ones_like(x[..., :1])], dim=-1)

    def readout(self, sums):
        return sums[..., :-1] / sums[..., -1:].clamp_min(1.0)


class SoftmaxAggregator(SumAggregator):
    """Softmax-weighted mean: ``w = exp(x/T − 2/T)``; out ``Σxw / max(Σw, exp(−3/T))``.

    The shift by ``2/T`` and the floor ``exp(−3/T)`` keep the weights finite and make the empty
    state (all zeros) read out as zero.
    """

    name = "softmax"

    def __init__(self, in_dim: int, temperature: float = 0.1) -> None:
        if not temperature > 0:
            raise ValueError(f"softmax temperature must be > 0, got {temperature!r}")
        self.temperature = float(temperature)
        super().__init__(in_dim)

    def weights(self, w: th.Tensor) -> th.Tensor:
        return th.exp((w - 2.0) / self.temperature)

    def contributions(self, x):
        w = self.weights(x)
        return th.cat([x * w, w], dim=-1)

    def readout(self, sums):
        weighted, weight = sums.chunk(2, dim=-1)
        return weighted / weight.clamp_min(math.exp(-3.0 / self.temperature))


class WeightedSoftmaxAggregator(SoftmaxAggregator):
    """Like softmax, but ``x`` is split into values ``v`` and weight logits: out ``Σvw / max(Σw, ·)``."""

    name = "wsoftmax"

    def output_dim(self, in_dim):
        if in_dim % 2:
            raise ValueError(f"wsoftmax needs an even input size (values and weights), got {in_dim}")
        return in_dim // 2

    def contributions(self, x):
        values, logits = x.chunk(2, dim=-1)
        w = self.weights(logits)
        return th.cat([values * w, w], dim=-1)


class GaussAggregator(SumAggregator):
    """PEARL's product of Gaussians: ``x = (μ, ρ)``, ``ρ = softplus(ρ)``; state ``(Σμρ, Σρ)``.

    Out ``(Σμρ / max(Σρ, 0.1), log(1 / max(Σρ, 0.1)))`` is read as ``(mean, log-variance)``. The
    auxiliary loss is ``kl_weight`` times the mean over steps of ``KL(posterior_t ‖ posterior_{t−1})``
    (summed over latent dimensions), with ``N(0, I)`` as the previous posterior at a trial's start
    (recognised by ``Σρ = 0``: ``ρ > 0`` after any transition).
    """

    name = "gauss"
    variational = True

    def __init__(self, in_dim: int, kl_weight: float = 1e-6, min_precision: float = 0.1) -> None:
        self.kl_weight = float(kl_weight)
        self.min_precision = float(min_precision)
        super().__init__(in_dim)

    def output_dim(self, in_dim):
        if in_dim % 2:
            raise ValueError(f"gauss needs an even input size (means and precisions), got {in_dim}")
        return in_dim  # (mean, log-variance)

    def contributions(self, x):
        mu, rho = x.chunk(2, dim=-1)
        rho = F.softplus(rho)
        return th.cat([mu * rho, rho], dim=-1)

    def readout(self, sums):
        weighted, precision = sums.chunk(2, dim=-1)
        precision = precision.clamp_min(self.min_precision)
        return th.cat([weighted / precision, -th.log(precision)], dim=-1)

    def posterior(self, sums: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """(mean, log-variance), with the prior ``N(0, I)`` where nothing has been aggregated."""
        mean, logvar = self.readout(sums).chunk(2, dim=-1)
        empty = (sums.chunk(2, dim=-1)[1] == 0).all(dim=-1, keepdim=True)
        return th.where(empty, th.zeros_like(mean), mean), th.where(empty, th.zeros_like(logvar), logvar)

    def auxiliary_loss(self, sums, state, seg):
        start = th.where(seg.continues[0].unsqueeze(-1), state, th.zeros_like(state)).unsqueeze(0)
        previous = th.cat([start, sums[:-1]], dim=0)
        previous = th.where(seg.resets.unsqueeze(-1), th.zeros_like(previous), previous)
        mean, logvar = self.posterior(sums)
        prev_mean, prev_logvar = self.posterior(previous)
        kl = 0.5 * (prev_logvar - logvar + (logvar.exp() + (mean - prev_mean) ** 2) / prev_logvar.exp() - 1.0)
        return self.kl_weight * kl.sum(-1).mean()


def aggregator_class(name: str) -> type[Aggregator]:
    """The aggregator class registered as ``name``."""
    if name not in AGGREGATORS:
        raise ValueError(f"unknown aggregator {name!r}; allowed: {sorted(AGGREGATORS)}")
    return AGGREGATORS[name]


def make_aggregator(name: str, in_dim: int, **kwargs: Any) -> Aggregator:
    """The aggregator registered as ``name`` over ``in_dim`` inputs."""
    return aggregator_class(name)(in_dim, **kwargs)
