"""Memory agents for meta-RL as Stable-Baselines3 policies (SplAgger and baselines)."""

from metarl_agents.evaluation import evaluate_meta
from metarl_agents.policies import (
    POLICY_REGISTRY,
    AMRLPolicy,
    CNPPolicy,
    MaxPolicy,
    MetaRecurrentPolicy,
    PEARLGRUPolicy,
    PEARLPolicy,
    RNNPolicy,
    SplAggerPolicy,
)
from metarl_agents.ppo import MetaPPO
from metarl_agents.vec_env import make_vec_env

__all__ = [
    "POLICY_REGISTRY",
    "AMRLPolicy",
    "CNPPolicy",
    "MaxPolicy",
    "MetaRecurrentPolicy",
    "PEARLGRUPolicy",
    "PEARLPolicy",
    "RNNPolicy",
    "SplAggerPolicy",
    "MetaPPO",
    "evaluate_meta",
    "make_vec_env",
]
