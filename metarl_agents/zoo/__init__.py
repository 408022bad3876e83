"""Hyperparameter files for RL Baselines3 Zoo (``python -m rl_zoo3.train --conf-file ...``).

Two files ship as package data, each with entries for ``MetaTMaze-v0`` and ``MetaPlanningGame-v0``
and both for the zoo's ``ppo_lstm`` algorithm (sb3-contrib's ``RecurrentPPO``):

* ``ppo_lstm.yml``: the plain ``MlpLstmPolicy`` on the families' own observations;
* ``splagger.yml``: :class:`metarl_agents.SplAggerPolicy` on
  :class:`metarl_envs.wrappers.TransitionObservation` observations (the zoo's ``env_wrapper``).

The zoo reads ``--conf-file`` as a YAML path or as the name of a Python module with a
``hyperparams`` dict; the modules ``metarl_agents.zoo.ppo_lstm`` and ``metarl_agents.zoo.splagger``
are that dict, read from the YAML, so no path needs to be known::

    python -m rl_zoo3.train --algo ppo_lstm --env MetaTMaze-v0 --gym-packages metarl_envs \\
        --conf-file metarl_agents.zoo.splagger

:func:`config_path` gives the YAML path for copying and editing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

CONFIGS = ("ppo_lstm", "splagger")


def config_path(name: str) -> Path:
    """The shipped YAML file ``name`` (one of :data:`CONFIGS`)."""
    if name not in CONFIGS:
        raise ValueError(f"unknown zoo config {name!r}; shipped: {list(CONFIGS)}")
    return Path(__file__).with_name(f"{name}.yml")


def load_config(name: str) -> dict[str, Any]:
    """The hyperparameters of ``name`` as the zoo reads them (``{env_id: {key: value}}``)."""
    import yaml  # a dependency of rl_zoo3 (the ``zoo`` extra)

    return yaml.safe_load(config_path(name).read_text())
