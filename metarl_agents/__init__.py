"""Memory agents for meta-RL as Stable-Baselines3 policies (SplAgger and baselines).

The package is layered: :mod:`metarl_agents.memory` (sequence primitives, aggregators, encoders, the
memory) -> :mod:`~metarl_agents.heads` -> :mod:`~metarl_agents.policies` -> :mod:`metarl_agents.training`
(run configuration, presets, the VecEnv bridge, MetaPPO, evaluation) -> :mod:`metarl_agents.leaderboard`
(runner, store, report), with :mod:`metarl_agents.cli` as thin command lines over the configuration and
:mod:`metarl_agents.bomrl` beside them. The names below are loaded on first use, so importing the package
(or its leaderboard report) does not import torch.
"""

from __future__ import annotations

from metarl_agents.lazy import lazy_attributes

_LAZY = {
    "POLICY_REGISTRY": ".policies",
    "AMRLPolicy": ".policies",
    "CNPPolicy": ".policies",
    "MaxPolicy": ".policies",
    "MetaRecurrentPolicy": ".policies",
    "PEARLGRUPolicy": ".policies",
    "PEARLPolicy": ".policies",
    "RNNPolicy": ".policies",
    "SplAggerPolicy": ".policies",
    "MetaPPO": ".training.ppo",
    "evaluate_meta": ".training.evaluation",
    "make_vec_env": ".training.vec_env",
    "save_model": ".training.model_file",
    "load_model": ".training.model_file",
}

__all__ = list(_LAZY)
__getattr__ = lazy_attributes(__name__, _LAZY)


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
