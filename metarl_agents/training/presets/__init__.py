"""Reference training settings, one TOML file per environment id (``<env_id>.toml``).

The discrete and MuJoCo values are the SplAgger paper's (its appendix); ids the paper did not
run document their choices in their file. A preset holds a run's settings under the field names of
:class:`~metarl_agents.training.config.RunConfig`, which checks them (and that every preset sets the same
ones), plus the leaderboard's grid: ``lr_grid`` and ``seeds``.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

PRESET_DIR = Path(__file__).parent

#: The leaderboard's keys, which every preset defines besides a run's settings: its id, the learning rates a
#: sweep tries and its seeds.
GRID_KEYS = ("env_id", "lr_grid", "seeds")


def available_presets() -> list[str]:
    """The env ids that ship a preset."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.toml"))


def load_preset(env_id: str) -> dict[str, Any]:
    """The preset of ``env_id`` as a fresh dict (callers may change it)."""
    path = PRESET_DIR / f"{env_id}.toml"
    if not path.is_file():
        raise ValueError(f"no preset for env id {env_id!r}; available: {available_presets()}")
    with path.open("rb") as f:
        preset = tomllib.load(f)
    missing = [k for k in GRID_KEYS if k not in preset]
    if missing:
        raise ValueError(f"preset {path} lacks {missing}")
    return preset
