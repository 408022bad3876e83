"""The memory-policy contract: what MetaPPO needs of a policy, as a type the trainer checks with ``isinstance``.

A memory policy carries its memory as one plain ``[batch, state_size]`` tensor, zeros being the empty memory.
The ``(h, c)`` pair sb3-contrib's ``RecurrentPPO`` wants instead is the business of the one adapter that
serves it (:class:`metarl_agents.recurrent_adapter.RecurrentPPOAdapter`), never of the trainer.
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
        """One rollout step from ``state`` (zeroed where a trial starts): actions, values, log-probs, new state."""

    def values(self, obs: th.Tensor, state: th.Tensor, episode_starts: th.Tensor) -> th.Tensor:
        """The values ``[B]`` after one more memory step from ``state``."""

    def evaluate_sequence(self, obs: th.Tensor, actions: th.Tensor, episode_starts: th.Tensor, state: th.Tensor,
                          select: th.Tensor | None = None, sample: bool = True) -> tuple:
        """Whole ``[T, B]`` sequences from ``state``, with gradient: values, log-probs, entropy, aux loss."""

    def update_obs_statistics(self, obs: th.Tensor) -> None:
        """Add observations to the running statistics the policy normalises with."""

    def memory_parameters(self) -> list:
        """The memory's parameters (their gradient is clipped on its own)."""

    def head_parameters(self) -> list:
        """Every other parameter."""


def check_memory_policy(policy: object) -> MemoryPolicy:
    """``policy`` if it implements :class:`MemoryPolicy`, else a TypeError naming the methods it lacks."""
    if isinstance(policy, MemoryPolicy):
        return policy
    missing = [name for name in vars(MemoryPolicy) if not name.startswith("_")
               and not callable(getattr(policy, name, None))]
    raise TypeError(f"MetaPPO needs a memory policy (metarl_agents.training.memory_policy.MemoryPolicy); "
                    f"{type(policy).__name__} lacks {missing} (use a class from metarl_agents.policies)")
