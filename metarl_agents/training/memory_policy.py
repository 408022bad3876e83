"""The memory-policy contract: what MetaPPO needs of a policy, as a type the trainer checks with ``isinstance``.

A memory policy carries its memory as one plain ``[batch, state_size]`` tensor; zeros are the empty memory.
How sb3-contrib's ``RecurrentPPO`` wants that state (an LSTM's ``(h, c)`` pair) is the business of the one
adapter that serves it (:class:`metarl_agents.recurrent_adapter.RecurrentPPOAdapter`), not of the trainer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    import torch as th


@runtime_checkable
class MemoryPolicy(Protocol):
    """A policy MetaPPO can train: flat memory states in, flat memory states out."""

    def initial_states(self, n_envs: int) -> th.Tensor:
        """The empty memory of ``n_envs`` copies, ``[n_envs, state_size]``."""

    def step(self, obs: th.Tensor, state: th.Tensor, deterministic: bool = False,
             starts: th.Tensor | None = None) -> tuple[th.Tensor, th.Tensor, th.Tensor, th.Tensor]:
        """One rollout step from ``state`` (already zeroed where a trial starts): actions, values, log-probs,
        new state; leaves the observation statistics alone."""

    def values(self, obs: th.Tensor, state: th.Tensor, episode_starts: th.Tensor) -> th.Tensor:
        """The values ``[B]`` after one more memory step from ``state``."""

    def evaluate_sequence(self, obs: th.Tensor, actions: th.Tensor, episode_starts: th.Tensor, state: th.Tensor,
                          select: th.Tensor | None = None, sample: bool = True) -> tuple:
        """Whole ``[T, B]`` sequences from ``state`` with gradient: values, log-probs, entropy, auxiliary loss."""

    def update_obs_statistics(self, obs: th.Tensor) -> None:
        """Add observations to the running statistics the policy normalises with."""

    def memory_parameters(self) -> list:
        """The memory's parameters (their gradient is clipped on its own)."""

    def head_parameters(self) -> list:
        """Every other parameter."""


#: The methods of the contract, in the order a refusal names them.
MEMORY_POLICY_METHODS = tuple(name for name in MemoryPolicy.__dict__ if not name.startswith("_"))


def check_memory_policy(policy: object) -> MemoryPolicy:
    """``policy`` if it implements :class:`MemoryPolicy`, else a TypeError naming the methods it lacks."""
    if isinstance(policy, MemoryPolicy):
        return policy
    missing = [name for name in MEMORY_POLICY_METHODS if not callable(getattr(policy, name, None))]
    raise TypeError(f"MetaPPO needs a memory policy (metarl_agents.training.memory_policy.MemoryPolicy); "
                    f"{type(policy).__name__} lacks {missing} (use a class from metarl_agents.policies)")
