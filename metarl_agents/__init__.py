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
import importlib.abc
import importlib.machinery
import sys
from typing import Any

#: Modules that moved, old name -> new name; the old import paths keep working (also for pickles).
MOVED_MODULES = {
    "metarl_agents.aggregators": "metarl_agents.memory.aggregators",
    "metarl_agents.encoders": "metarl_agents.memory.encoders",
    "metarl_agents.sequence": "metarl_agents.memory.sequence",
    "metarl_agents.ppo": "metarl_agents.training.ppo",
    "metarl_agents.rollout": "metarl_agents.training.rollout",
    "metarl_agents.vec_env": "metarl_agents.training.vec_env",
    "metarl_agents.evaluation": "metarl_agents.training.evaluation",
    "metarl_agents.presets": "metarl_agents.training.presets",
    "metarl_agents.leaderboard.cli": "metarl_agents.cli.bench",
}


class _MovedModuleLoader(importlib.abc.Loader):
    """Answers an old module name with the module at its new place (one module object, two names)."""

    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> Any:
        return importlib.import_module(self.target)

    def exec_module(self, module: Any) -> None:
        pass  # already executed under its new name


class _MovedModuleFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        new = MOVED_MODULES.get(fullname)
        return None if new is None else importlib.machinery.ModuleSpec(fullname, _MovedModuleLoader(new))


if not any(isinstance(finder, _MovedModuleFinder) for finder in sys.meta_path):
    sys.meta_path.insert(0, _MovedModuleFinder())  # before any finder that still sees an old file

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
