"""Memory agents for meta-RL as Stable-Baselines3 policies (SplAgger and baselines).

The package is layered: :mod:`metarl_agents.memory` (sequence primitives, aggregators, encoders, the
memory) -> :mod:`~metarl_agents.heads` -> :mod:`~metarl_agents.policies` -> :mod:`metarl_agents.training`
(run configuration, presets, the VecEnv bridge, MetaPPO, evaluation) -> :mod:`metarl_agents.leaderboard`
(runner, store, report), with :mod:`metarl_agents.cli` as thin command lines over the configuration and
:mod:`metarl_agents.bomrl` beside them. The names below are loaded on first use, so importing the package
(or its leaderboard report) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "POLICY_REGISTRY": "metarl_agents.policies",
    "AMRLPolicy": "metarl_agents.policies",
    "CNPPolicy": "metarl_agents.policies",
    "MaxPolicy": "metarl_agents.policies",
    "MetaRecurrentPolicy": "metarl_agents.policies",
    "PEARLGRUPolicy": "metarl_agents.policies",
    "PEARLPolicy": "metarl_agents.policies",
    "RNNPolicy": "metarl_agents.policies",
    "SplAggerPolicy": "metarl_agents.policies",
    "MetaPPO": "metarl_agents.training.ppo",
    "evaluate_meta": "metarl_agents.training.evaluation",
    "make_vec_env": "metarl_agents.training.vec_env",
    "save_model": "metarl_agents.training.model_file",
    "load_model": "metarl_agents.training.model_file",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'metarl_agents' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
