"""One configurable memory ("sequence model") for all the agents: SplAgger, RNN, AMRL, CNP, Max, PEARL.

Pipeline::

    transition -> per-part embeddings -> encoder -> (split) -> aggregator -> concat(skip, agg) -> Linear -> latent

* embeddings: Linear+ReLU per part, the state one shared by ``s_prev`` and ``s``.
* encoder: ``"gru"`` (a GRU, orthogonal weights, zero biases, zero initial state), ``"linear"`` (the SplAgger paper's
  "no encoder": per-step ``tanh(Linear)``, no memory of its own), or a linear recurrence trained with a parallel scan
  (``"mingru"``, ``"lru"``, ``"ffm"``, ``"s6"``, ``"gla"``: :mod:`metarl_agents.memory.encoders`), configured by
  ``encoder_kwargs``.
* split: the first half of the encoding skips the aggregator, the second half is aggregated.
* aggregator: any name in :data:`metarl_agents.memory.aggregators.AGGREGATORS`, or ``None``.
* variational aggregators (``"gauss"``): the encoding is projected to ``latent_dim`` (means and
  precisions), the aggregate is read as ``(mean, log-variance)`` and the latent is a sample
  (``latent_dim / 2`` wide); the KL term comes back as the auxiliary loss.

The state is one flat vector per copy, ``[encoder state | aggregator state]``, zeros meaning empty, so a
reset is exact. ``forward`` takes whole sequences ``[T, B, ...]``; ``step`` is the rollout's one-step
update, the same numbers as ``forward`` at ``T = 1`` at a fraction of its overhead.
"""

from __future__ import annotations

from typing import Any

import torch as th
import torch.nn.functional as F
from torch import nn

from metarl_agents.derived import derived
from metarl_agents.memory.aggregators import aggregator_class, make_aggregator
from metarl_agents.memory.encoders import SCAN_ENCODERS, make_scan_encoder
from metarl_agents.memory.sequence import Segments, gru_step, gru_with_resets, make_gru

ENCODERS = ("gru", "linear", *SCAN_ENCODERS)


class TransitionEmbedding(nn.Module):
    """Per-part Linear+ReLU embeddings of the flat transition, concatenated."""

    def __init__(self, layout: dict[str, Any], state_dim: int, action_dim: int, reward_dim: int) -> None:
        super().__init__()
        self.slices = layout["slices"]
        self.state = nn.Sequential(nn.Linear(layout["obs_dim"], state_dim), nn.ReLU())
        self.action = nn.Sequential(nn.Linear(layout["act_dim"], action_dim), nn.ReLU())
        self.reward = nn.Sequential(nn.Linear(1, reward_dim), nn.ReLU())
        self.out_dim = 2 * state_dim + action_dim + reward_dim

    def forward(self, obs: th.Tensor) -> th.Tensor:
        s = self.slices
        return th.cat(
            [
                self.state(obs[..., s["s_prev"]]),
                self.action(obs[..., s["a_prev"]]),
                self.reward(obs[..., s["r_prev"]]),
                self.state(obs[..., s["s"]]),
            ],
            dim=-1,
        )

    def step(self, obs: th.Tensor) -> th.Tensor:
        """:meth:`forward` for one batch ``[B, dim]`` as a single block-diagonal layer.

        The layout's parts lie in the order of the output blocks, so one small matrix product
        replaces four (the per-call overhead is what a rollout step pays for); over whole sequences
        :meth:`forward` is cheaper, as it multiplies no zero blocks.
        """
        weight, bias = self._block_layer()
        return F.linear(obs, weight, bias).relu_()

    def _block_layer(self) -> tuple[th.Tensor, th.Tensor]:
        """The block-diagonal ``(weight, bias)``, kept between rollout steps (:func:`derived`)."""
        return derived(self, "block_layer", list(self.parameters()), self._build_block_layer)

    def _build_block_layer(self) -> tuple[th.Tensor, th.Tensor]:
        state, action, reward = self.state[0], self.action[0], self.reward[0]
        weight = th.block_diag(state.weight, action.weight, reward.weight, state.weight)
        bias = th.cat([state.bias, action.bias, reward.bias, state.bias])
        return weight, bias


def _positive(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


class Memory(nn.Module):
    """The configurable memory; see the module docstring. ``state_size`` is the flat state width."""

    def __init__(
        self,
        layout: dict[str, Any],
        *,
        encoder: str = "gru",
        encoder_hidden: int = 256,
        encoder_kwargs: dict[str, Any] | None = None,
        split: bool = True,
        aggregator: str | None = "max",
        aggregator_kwargs: dict[str, Any] | None = None,
        latent_dim: int = 24,
        state_embed: int = 32,
        action_embed: int = 8,
        reward_embed: int = 8,
        prior_at_start: bool = False,
    ) -> None:
        super().__init__()
        self.prior_at_start = bool(prior_at_start)
        if encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {ENCODERS}, got {encoder!r}")
        if split and aggregator is None:
            raise ValueError("split=True needs an aggregator (the split half is what gets aggregated)")
        hidden = _positive("encoder_hidden", encoder_hidden)
        self.latent_dim = _positive("latent_dim", latent_dim)
        self.embed = TransitionEmbedding(
            layout, _positive("state_embed", state_embed), _positive("action_embed", action_embed),
            _positive("reward_embed", reward_embed),
        )
        if encoder_kwargs and encoder not in SCAN_ENCODERS:
            raise ValueError(f"encoder_kwargs are for the scan encoders {sorted(SCAN_ENCODERS)}, not {encoder!r}")
        self.gru = make_gru(self.embed.out_dim, hidden) if encoder == "gru" else None
        self.per_step = nn.Sequential(nn.Linear(self.embed.out_dim, hidden), nn.Tanh()) if encoder == "linear" else None
        self.scan = (
            make_scan_encoder(encoder, self.embed.out_dim, hidden, **(encoder_kwargs or {}))
            if encoder in SCAN_ENCODERS else None
        )
        self.skip_dim = hidden - hidden // 2 if split else 0
        agg_in = hidden - self.skip_dim
        self.to_gaussian: nn.Module | None = None
        self.aggregator = None
        if aggregator is not None:
            if aggregator_class(aggregator).variational:
                if self.latent_dim % 2:
                    raise ValueError(f"a variational memory needs an even latent_dim (mean, log-variance), got {latent_dim}")
                self.to_gaussian = nn.Linear(agg_in, self.latent_dim)
                agg_in = self.latent_dim
            self.aggregator = make_aggregator(aggregator, agg_in, **(aggregator_kwargs or {}))
        self.variational = self.to_gaussian is not None
        features = self.skip_dim + (self.aggregator.out_dim if self.aggregator is not None else hidden)
        self.to_latent = None if self.variational else nn.Linear(features, self.latent_dim)
        self.output_dim = self.latent_dim // 2 if self.variational else self.latent_dim
        self.encoder_state_size = self.scan.state_size if self.scan is not None else hidden if self.gru is not None else 0
        self.state_size = self.encoder_state_size + (self.aggregator.state_dim if self.aggregator is not None else 0)

    def forward(
        self, obs: th.Tensor, episode_starts: th.Tensor, state: th.Tensor, sample: bool = True,
        ended: tuple[th.Tensor, th.Tensor] | None = None,
    ) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        """Process ``obs [T, B, obs_dim]`` from ``state [B, state_size]``; reset where ``episode_starts [T, B]``.

        Returns ``(latent [T, B, output_dim], final state [B, state_size], auxiliary loss)``. ``sample``
        only matters for variational memories (``False``: the posterior mean). ``ended``: ``(transitions
        [T, B, obs_dim], mask [T, B])``; with ``prior_at_start``, a start step in ``mask`` is no prior: the
        reset memory reads that step's row of ``transitions`` (the ended trial's final transition) instead of
        its own observation, and the state advances.
        """
        x = self.embed(obs)
        resets = episode_starts
        if self.prior_at_start:
            prior = episode_starts
            if ended is not None:
                encoded = ended[1].to(x.dtype).unsqueeze(-1)
                x = x * (1.0 - encoded) + self.embed(ended[0]) * encoded
                prior = episode_starts * (1.0 - ended[1].to(episode_starts.dtype))
            x, resets = self._prior_steps(x, prior)
            resets = resets | episode_starts.bool()
            episode_starts = prior
        seg = Segments.from_starts(resets)
        enc_state, agg_state = state[:, : self.encoder_state_size], state[:, self.encoder_state_size :]
        if self.gru is not None:
            x, enc_state = gru_with_resets(self.gru, x, enc_state, seg)
        elif self.scan is not None:
            x, enc_state = self.scan(x, enc_state, seg)
        else:
            x = self.per_step(x)
        latent, new_state, aux = self._read_out(x, enc_state, agg_state, lambda h, s: self.aggregator(h, s, seg), sample)
        if self.prior_at_start:  # a prior step leaves the memory empty, the last one included
            new_state = new_state * (1.0 - episode_starts[-1].to(new_state.dtype)).unsqueeze(-1)
        return latent, new_state, aux

    @staticmethod
    def _prior_steps(x: th.Tensor, starts: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """Zero embeddings at start steps, and resets both at them and right after them: a start step
        reads the prior out of the empty state, and the next step builds on the empty state again."""
        prior = starts.bool()
        resets = prior.clone()
        resets[1:] |= prior[:-1]
        return x.masked_fill(prior.unsqueeze(-1), 0.0), resets

    def step(self, obs: th.Tensor, state: th.Tensor, sample: bool = True,
             starts: th.Tensor | None = None,
             ended: tuple[th.Tensor, th.Tensor] | None = None) -> tuple[th.Tensor, th.Tensor]:
        """One step for a batch: ``obs [B, obs_dim]``, ``state [B, state_size]`` (already zeroed where
        a trial starts) -> ``(latent [B, output_dim], new state)``. No auxiliary loss: this is the
        rollout's path; training runs :meth:`forward`. ``starts [B]`` marks start steps (only
        ``prior_at_start`` needs it: there the latent is the prior and the state stays empty).
        ``ended``: ``(transitions [B, obs_dim], mask [B])`` as in :meth:`forward`."""
        keep = None
        x = self.embed.step(obs)
        if self.prior_at_start and starts is not None:
            prior = starts.reshape(-1, 1).to(obs.dtype)
            if ended is not None:
                encoded = ended[1].reshape(-1, 1).to(obs.dtype)
                x = x * (1.0 - encoded) + self.embed.step(ended[0].reshape(obs.shape).to(obs.dtype)) * encoded
                prior = prior * (1.0 - encoded)
            keep = 1.0 - prior
        if keep is not None:
            x = x * keep
        latent, new_state = self._step_encoded(x, state, sample)
        return latent, (new_state if keep is None else new_state * keep)

    def _step_encoded(self, x: th.Tensor, state: th.Tensor, sample: bool) -> tuple[th.Tensor, th.Tensor]:
        enc_state, agg_state = state[:, : self.encoder_state_size], state[:, self.encoder_state_size :]
        if self.gru is not None:
            x = enc_state = gru_step(self.gru, x, enc_state)
        elif self.scan is not None:
            x, enc_state = self.scan.step(x, enc_state)
        else:
            x = self.per_step(x)
        if self.aggregator is None:
            return self.to_latent(x), enc_state
        latent, new_state, _ = self._read_out(
            x, enc_state, agg_state, lambda h, s: (*self.aggregator.step(h, s), None), sample
        )
        return latent, new_state

    def _read_out(self, x, enc_state, agg_state, aggregate, sample):
        """Encoded ``x`` (any leading shape) -> ``(latent, new state, aux)``; ``aggregate(x, state)``
        returns ``(aggregate, new aggregator state, aux)``."""
        if self.aggregator is None:
            return self.to_latent(x), enc_state, x.new_zeros(())
        skip, x = x[..., : self.skip_dim], x[..., self.skip_dim :]
        if self.variational:
            x = self.to_gaussian(x)
        agg, agg_state, aux = aggregate(x, agg_state)
        new_state = th.cat([enc_state, agg_state], dim=-1)
        if self.variational:
            mean, logvar = agg.chunk(2, dim=-1)
            latent = mean + th.exp(0.5 * logvar) * th.randn_like(mean) if sample else mean
            return latent, new_state, aux
        return self.to_latent(th.cat([skip, agg], dim=-1)), new_state, aux
