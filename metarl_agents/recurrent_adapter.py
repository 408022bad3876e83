"""The one place a memory policy's flat state is dressed up as an LSTM's, for sb3-contrib's ``RecurrentPPO``.

``RecurrentPPO`` sizes its state buffers from ``policy.lstm_actor`` and hands the policy ``RNNStates``: an
``(h, c)`` pair of shape ``(1, B, hidden_size)`` for the actor and another for the critic. A memory policy's
state is one ``[B, state_size]`` tensor (:class:`metarl_agents.training.memory_policy.MemoryPolicy`); here it
is zero-padded to ``2 * hidden_size`` and split into that pair, and ``vf`` holds the same pair as ``pi`` (actor
and critic share one memory). Zeros are the empty memory, exactly as RecurrentPPO initialises and resets it.
MetaPPO never sees this packing.
"""

from __future__ import annotations

import math

import torch as th
from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy
from sb3_contrib.common.recurrent.type_aliases import RNNStates
from stable_baselines3.common.distributions import Distribution
from torch import nn


class PackedStateShape(nn.Module):
    """What RecurrentPPO reads from ``policy.lstm_actor`` to size its state buffers (no parameters)."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.num_layers = 1
        self.hidden_size = hidden_size


def _to_time_major(x: th.Tensor, n_seq: int) -> th.Tensor:
    """SB3's flat ``[n_seq * T, ...]`` (sequences one after another) -> ``[T, n_seq, ...]``."""
    return x.reshape(n_seq, -1, *x.shape[1:]).transpose(0, 1)


def _to_batch_major(x: th.Tensor) -> th.Tensor:
    """``[T, n_seq, ...]`` -> SB3's flat ``[n_seq * T, ...]``."""
    return x.transpose(0, 1).reshape(-1, *x.shape[2:])


class RecurrentPPOAdapter(RecurrentActorCriticPolicy):
    """sb3-contrib's recurrent-policy API over a memory policy's flat state: a subclass provides the contract's
    ``step`` and ``update_obs_statistics``, ``memory.state_size``, ``_distribution`` and ``_run(obs [T, B, D],
    starts [T, B], state, sample) -> (action output, values [T, B], new state, aux loss)``, and calls
    :meth:`_replace_lstm` once its memory exists."""

    def _replace_lstm(self) -> None:
        """Replace the base class's LSTM by a description of the packed state (no parameters)."""
        hidden = max(1, math.ceil(self.memory.state_size / 2))
        self.lstm_actor = PackedStateShape(hidden)
        self.lstm_critic = None
        self.critic = None
        self.lstm_hidden_state_shape = (1, 1, hidden)

    @property
    def hidden_size(self) -> int:
        return self.lstm_actor.hidden_size

    def _unpack(self, states: tuple[th.Tensor, ...]) -> th.Tensor:
        return th.cat([states[0][0], states[1][0]], dim=-1)[:, : self.memory.state_size]

    def _pack(self, state: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        padded = nn.functional.pad(state, (0, 2 * self.hidden_size - state.shape[-1]))
        h, c = padded.unsqueeze(0).chunk(2, dim=-1)
        return h.contiguous(), c.contiguous()

    def _sequence(self, obs: th.Tensor, episode_starts: th.Tensor, states: tuple[th.Tensor, ...], sample: bool):
        """SB3's flat batch-major layout in and out (as ``RecurrentActorCriticPolicy._process_sequence``)."""
        n_seq = states[0].shape[1]
        obs = obs.reshape(obs.shape[0], -1)
        action_out, values, new_state, _ = self._run(
            _to_time_major(obs, n_seq), _to_time_major(episode_starts, n_seq), self._unpack(states), sample
        )
        return _to_batch_major(action_out), _to_batch_major(values), self._pack(new_state)

    def forward(self, obs: th.Tensor, lstm_states: RNNStates, episode_starts: th.Tensor,
                deterministic: bool = False) -> tuple[th.Tensor, th.Tensor, th.Tensor, RNNStates]:
        """One rollout step of RecurrentPPO: updates the observation statistics, then the contract's ``step``."""
        self.update_obs_statistics(obs)
        keep = 1.0 - episode_starts.reshape(-1, 1).to(th.float32)
        actions, values, log_prob, state = self.step(obs, self._unpack(lstm_states.pi) * keep, deterministic,
                                                     starts=episode_starts)
        packed = self._pack(state)
        return actions, values.reshape(-1, 1), log_prob, RNNStates(packed, packed)

    def get_distribution(self, obs: th.Tensor, lstm_states: tuple[th.Tensor, ...],
                         episode_starts: th.Tensor) -> tuple[Distribution, tuple[th.Tensor, ...]]:
        action_out, _, new_states = self._sequence(obs, episode_starts, lstm_states, sample=True)
        return self._distribution(action_out), new_states

    def _predict(self, observation: th.Tensor, lstm_states: tuple[th.Tensor, ...], episode_starts: th.Tensor,
                 deterministic: bool = False) -> tuple[th.Tensor, tuple[th.Tensor, ...]]:
        # deterministic also means the posterior mean for variational memories
        action_out, _, new_states = self._sequence(observation, episode_starts, lstm_states, sample=not deterministic)
        return self._distribution(action_out).get_actions(deterministic=deterministic), new_states

    def predict_values(self, obs: th.Tensor, lstm_states: tuple[th.Tensor, ...], episode_starts: th.Tensor) -> th.Tensor:
        _, values, _ = self._sequence(obs, episode_starts, lstm_states, sample=True)
        return values.reshape(-1, 1)

    def evaluate_actions(self, obs: th.Tensor, actions: th.Tensor, lstm_states: RNNStates,
                         episode_starts: th.Tensor) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        action_out, values, _ = self._sequence(obs, episode_starts, lstm_states.pi, sample=True)
        distribution = self._distribution(action_out)
        return values.reshape(-1, 1), distribution.log_prob(actions), distribution.entropy()
