"""Names a package exports from its modules without importing them until first use (PEP 562).

The package's front door, the leaderboard and BO-MRL export classes from modules that import torch;
importing the packages themselves (or writing a leaderboard report) stays light.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_attributes(package: str, modules: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: ``name`` is imported from ``modules[name]`` (a module name,
    relative to the package where it starts with a dot) on first use and kept in the package's namespace;
    any other name is an AttributeError."""

    def __getattr__(name: str) -> Any:
        if name not in modules:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(modules[name], package), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
