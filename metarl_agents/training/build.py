"""Turning a run configuration into the things a run uses: its training envs and its model.

Kept apart from :mod:`metarl_agents.training.config` so the configuration stays a torch-free description
that the trainer and the policies can import without importing what builds them.
"""

from __future__ import annotations

from typing import Any

from stable_baselines3.common.utils import ConstantSchedule

from metarl_agents.policies import POLICY_REGISTRY
from metarl_agents.training.config import RunConfig
from metarl_agents.training.ppo import MetaPPO
from metarl_agents.training.vec_env import make_vec_env


def check_buildable(config: RunConfig) -> None:
    """Build one env and the policy of ``config`` (not the trainer), so that a bad env or policy kwarg is a
    ``ValueError`` before a run starts rather than a failed run."""
    try:
        env = build_env(config, n_envs=1)
    except TypeError as exc:  # an unknown kwarg
        raise ValueError(f"env_kwargs {config.env_kwargs} do not fit {config.env_id}: {exc}") from None
    try:
        POLICY_REGISTRY[config.agent](env.observation_space, env.action_space, ConstantSchedule(1e-3),
                                      **config.policy_kwargs)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"policy_kwargs {config.policy_kwargs} do not fit {config.agent}: {exc}") from None
    finally:
        env.close()


def build_env(config: RunConfig, n_envs: int | None = None, seed: int | None = None) -> Any:
    """The run's training envs (``n_envs`` copies seeded ``seed + i``) as an SB3 VecEnv."""
    return make_vec_env(config.env_id, config.n_envs if n_envs is None else n_envs,
                        config.seed if seed is None else seed, **config.env_kwargs)


def build_model(config: RunConfig, verbose: int = 0, algorithm: type[MetaPPO] | None = None,
                **algorithm_kwargs: Any) -> MetaPPO:
    """A fresh :class:`MetaPPO` (or subclass ``algorithm``) on the run's training envs, with the run's seed
    and device (``algorithm_kwargs``: other constructor arguments, e.g. ``tensorboard_log``)."""
    return (algorithm or MetaPPO).from_config(config, verbose=verbose, **algorithm_kwargs)
