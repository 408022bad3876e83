"""Memory agents for meta-RL as Stable-Baselines3 policies (SplAgger and baselines)."""

from metarl_agents.policies import (
    POLICY_REGISTRY,
    AMRLPolicy,
    CNPPolicy,
    MaxPolicy,
    MetaRecurrentPolicy,
    PEARLPolicy,
    RNNPolicy,
    SplAggerPolicy,
)

__all__ = [
    "POLICY_REGISTRY",
    "AMRLPolicy",
    "CNPPolicy",
    "MaxPolicy",
    "MetaRecurrentPolicy",
    "PEARLPolicy",
    "RNNPolicy",
    "SplAggerPolicy",
]
