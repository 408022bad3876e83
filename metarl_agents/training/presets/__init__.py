"""Reference training settings, one TOML file per environment id (``<env_id>.toml``).

The discrete and MuJoCo values are the SplAgger paper's (its appendix); ids the paper did not
run document their choices in their file. A preset holds a run's settings under the names of
:class:`~metarl_agents.training.config.RunConfig` (``eval_freq`` and ``eval_tasks`` are its ``eval_every``
and ``n_eval_tasks``), which checks them, plus the leaderboard's grid: ``lr_grid`` and ``seeds``.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

PRESET_DIR = Path(__file__).parent

#: Keys every preset defines.
REQUIRED_KEYS = (
    "env_id", "frames", "n_envs", "n_steps", "n_epochs", "n_minibatches", "clip_range", "gamma", "gae_lambda",
    "ent_coef", "vf_coef", "max_grad_norm", "adam_eps", "learning_rate", "lr_grid", "lr_anneal",
    "normalize_reward", "reward_clip", "seeds", "eval_freq", "eval_tasks",
)


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
    missing = [k for k in REQUIRED_KEYS if k not in preset]
    if missing:
        raise ValueError(f"preset {path} lacks {missing}")
    return preset
