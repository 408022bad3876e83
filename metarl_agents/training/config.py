"""One training run's configuration: a typed, validated dataclass built from a preset plus overrides.

:class:`RunConfig` is the single place where a run's settings are named, defaulted and range-checked;
``metarl-train``, ``metarl-bench`` (through :meth:`metarl_agents.leaderboard.RunSpec.config`) and the
Python API all build one, and :func:`metarl_agents.training.build.build_model` turns it into an environment
and a :class:`MetaPPO`.
Every bad value is a ``ValueError`` naming the field, the value and what is allowed, raised before
anything is built or written.

The evaluation protocol is defined here too (:func:`eval_seed`): every evaluation of a run uses the same
``n_eval_tasks`` tasks -- copies of the env seeded ``seed + EVAL_SEED_OFFSET + i``, a stream the training
envs (``seed + i``) never reach -- with deterministic actions, one trial each. With ``n_final_eval_tasks`` the
last ``FINAL_EVALUATIONS`` evaluations of a run use that many tasks instead (the first ``n_eval_tasks`` of them
the same as before): the mean of those evaluations is the run's final statistic, and one evaluation of 16
tasks is too noisy for it (a single late collapse moves it).

This module imports neither torch nor Stable-Baselines3 (only checking a CUDA or MPS device does), so
a command line can reject bad values in a fraction of a second.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

from metarl_agents.training.presets import load_preset
from metarl_agents.training.value_check import allowed_values, check_value

EVAL_SEED_OFFSET = 1_000_003
"""Evaluation tasks come from seeds ``seed + EVAL_SEED_OFFSET + i``, never a training env's seed."""
MAX_SEED = 2**31 - 1
MAX_ENVS = 2**16
MAX_FRAMES = 10**12
#: How many evaluations at the end of a run make its final statistic (their mean).
FINAL_EVALUATIONS = 3
#: Adam's step is about the learning rate in every parameter: beyond 1 the weights leave any useful range
#: at the first update (and beyond about 1e37 its step size overflows float32).
MAX_LEARNING_RATE = 1.0
DEVICE_PATTERN = re.compile(r"^(cpu|auto|mps|cuda(:\d+)?)$")
#: Training protocols (MetaPPO's): "metarl", what runs stored before protocols existed used, and "paper".
PROTOCOLS = ("metarl", "paper")


def eval_seed(seed: int) -> int:
    """The seed of a run's evaluation tasks (the same at every evaluation point)."""
    return seed + EVAL_SEED_OFFSET


def _setting(default: Any = dataclasses.MISSING, *, kind: type, low: float | None = None, high: float | None = None,
             low_open: bool = False, optional: bool = False, doc: str = "") -> Any:
    """A field with its allowed range: ``kind`` int / float / bool / str / dict, bounds inclusive unless
    ``low_open``; ``optional`` allows None."""
    meta = {"kind": kind, "low": low, "high": high, "low_open": low_open, "optional": optional, "doc": doc}
    if kind is dict:
        return field(default_factory=dict, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class RunConfig:
    """Everything one training run needs, range-checked on construction.

    Build it from a preset with :meth:`from_preset` (``RunConfig.from_preset("MetaTMaze-v0", "SplAgger",
    n_steps=350)``) or change one with :meth:`replace`; :meth:`as_dict` is what is printed and stored.
    """

    # -- what is trained on what -----------------------------------------------------------------
    env_id: str = _setting(kind=str, doc="registered environment id")
    agent: str = _setting(kind=str, doc="policy name in POLICY_REGISTRY")
    env_kwargs: dict[str, Any] = _setting(kind=dict, doc="family kwargs, e.g. length=10")
    policy_kwargs: dict[str, Any] = _setting(kind=dict, doc="policy kwargs, e.g. head=mlp")
    # -- the trainer (MetaPPO) -------------------------------------------------------------------
    n_envs: int = _setting(16, kind=int, low=1, high=MAX_ENVS, doc="parallel envs")
    n_steps: int = _setting(700, kind=int, low=1, high=10**6, doc="steps per env per update")
    n_epochs: int = _setting(2, kind=int, low=1, high=10**4, doc="passes over each rollout")
    n_minibatches: int = _setting(4, kind=int, low=1, high=MAX_ENVS, doc="minibatches (sets of envs) per epoch")
    clip_range: float = _setting(0.05, kind=float, low=0.0, high=1.0, low_open=True, doc="PPO ratio and value clip")
    gamma: float = _setting(0.95, kind=float, low=0.0, high=1.0, doc="discount")
    gae_lambda: float = _setting(0.95, kind=float, low=0.0, high=1.0, doc="GAE lambda")
    ent_coef: float = _setting(0.1, kind=float, low=0.0, doc="entropy coefficient")
    vf_coef: float = _setting(0.5, kind=float, low=0.0, doc="value-loss coefficient")
    max_grad_norm: float = _setting(0.5, kind=float, low=0.0, low_open=True, doc="gradient clip (memory, head)")
    adam_eps: float = _setting(1e-5, kind=float, low=0.0, low_open=True, doc="Adam epsilon")
    learning_rate: float = _setting(1e-3, kind=float, low=0.0, high=MAX_LEARNING_RATE, low_open=True,
                                    doc="Adam learning rate")
    lr_anneal: bool = _setting(False, kind=bool, doc="decay the learning rate linearly to 0")
    normalize_reward: bool = _setting(True, kind=bool, doc="scale rewards by the return's running std")
    reward_clip: float = _setting(10.0, kind=float, low=0.0, low_open=True, doc="clip of the scaled rewards")
    clip_actions: bool = _setting(True, kind=bool, doc="clip Box actions to the action space")
    protocol: str = _setting("metarl", kind=str, doc="training protocol: paper (as the SplAgger reference trained) "
                                                     "or metarl (this trainer's own)")
    # -- budget and evaluation protocol ----------------------------------------------------------
    frames: int = _setting(1_500_000, kind=int, low=1, high=MAX_FRAMES, doc="training frames")
    eval_every: int = _setting(50_000, kind=int, low=1, high=MAX_FRAMES, doc="frames between evaluations")
    n_eval_tasks: int = _setting(16, kind=int, low=1, high=MAX_ENVS, doc="tasks per evaluation")
    n_final_eval_tasks: int | None = _setting(None, kind=int, low=1, high=MAX_ENVS, optional=True,
                                              doc=f"tasks in each of the last {FINAL_EVALUATIONS} evaluations "
                                                  "(default: n_eval_tasks)")
    stop_at_return: float | None = _setting(None, kind=float, optional=True,
                                            doc="stop after `patience` evaluations with a return >= this")
    patience: int | None = _setting(None, kind=int, low=1, high=10**6, optional=True,
                                    doc="evaluations >= stop_at_return in a row before stopping (default 1)")
    # -- reproducibility and hardware (not part of a run's identity) -----------------------------
    seed: int = _setting(0, kind=int, low=0, high=MAX_SEED, doc="seed of the model and the training envs")
    device: str = _setting("cpu", kind=str, doc="torch device: cpu, cuda, cuda:N, mps or auto")
    threads: int = _setting(1, kind=int, low=1, high=1024, doc="torch threads")

    def __post_init__(self) -> None:
        for item in dataclasses.fields(self):
            object.__setattr__(self, item.name, check_value(item.name, getattr(self, item.name), item.metadata))
        if self.n_minibatches > self.n_envs:
            raise ValueError(f"n_minibatches must be at most n_envs={self.n_envs} (a minibatch is a set of envs), "
                             f"got {self.n_minibatches}")
        if self.stop_at_return is None and self.patience is not None:
            raise ValueError(f"patience={self.patience} needs stop_at_return (the return to reach)")
        if self.stop_at_return is not None and self.patience is None:
            object.__setattr__(self, "patience", 1)  # stop at the first evaluation that reaches it
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {self.protocol!r}")
        _check_device(self.device)
        _check_registered(self.env_id, self.agent)

    # -- construction ----------------------------------------------------------------------------
    @classmethod
    def from_preset(cls, env_id: str, agent: str, **settings: Any) -> RunConfig:
        """``env_id``'s preset (:mod:`metarl_agents.training.presets`) with ``settings`` replacing its values.

        Preset keys map onto fields by name, except ``eval_freq`` -> ``eval_every`` and ``eval_tasks`` ->
        ``n_eval_tasks``; the grid keys ``lr_grid`` and ``seeds`` are the leaderboard's, not a run's.
        """
        allowed = FIELDS[2:]  # all but env_id and agent
        unknown = sorted(set(settings) - set(allowed))
        if unknown:
            raise ValueError(f"unknown setting{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
                             f"allowed: {', '.join(allowed)}")
        return cls(env_id=env_id, agent=agent, **{**preset_settings(env_id), **settings})

    def replace(self, **changes: Any) -> RunConfig:
        """A copy with ``changes`` (checked like the original)."""
        unknown = sorted(set(changes) - set(FIELDS))
        if unknown:
            raise ValueError(f"unknown setting {', '.join(unknown)}; allowed: {', '.join(FIELDS)}")
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        """Every field by name, in declaration order, as a new dict (the kwargs tables deep-copied, so
        changing it leaves this frozen configuration as it is). It is what the result store keeps as a run's
        ``resolved_config`` (as JSON), what ``metarl-train`` writes into ``eval.json`` and what
        :meth:`describe` prints."""
        return dataclasses.asdict(self)

    def describe(self) -> str:
        """The configuration as ``key = value`` lines (TOML; unset optional settings left out), as the command
        lines print it."""
        return "\n".join(f"{name} = {_toml(value)}" for name, value in self.as_dict().items() if value is not None)

    @property
    def eval_seed(self) -> int:
        return eval_seed(self.seed)


FIELDS = tuple(item.name for item in dataclasses.fields(RunConfig))
#: Trainer settings a sweep may replace with ``--override KEY=VALUE`` (the rest have options of their own).
TRAINER_SETTINGS = ("n_envs", "n_steps", "n_epochs", "n_minibatches", "clip_range", "gamma", "gae_lambda",
                    "ent_coef", "vf_coef", "max_grad_norm", "adam_eps", "lr_anneal", "normalize_reward",
                    "reward_clip", "clip_actions")
_PRESET_NAMES = {"eval_freq": "eval_every", "eval_tasks": "n_eval_tasks"}
_GRID_KEYS = ("env_id", "lr_grid", "seeds")


def check_settings(**values: Any) -> dict[str, Any]:
    """``values`` checked and converted as the :class:`RunConfig` fields of the same names (so an algorithm
    built without a configuration refuses the same values); ``ValueError`` names the first bad one."""
    meta = {item.name: item.metadata for item in dataclasses.fields(RunConfig)}
    return {name: check_value(name, value, meta[name]) for name, value in values.items()}


def preset_settings(env_id: str) -> dict[str, Any]:
    """The run settings of ``env_id``'s preset, under the configuration's field names."""
    preset = load_preset(env_id)
    return {_PRESET_NAMES.get(k, k): v for k, v in preset.items() if k not in _GRID_KEYS}


def settings_help() -> str:
    """Every overridable setting with what it is and its allowed values, for ``--help``."""
    meta = {item.name: item.metadata for item in dataclasses.fields(RunConfig)}
    return "; ".join(f"{name} ({meta[name]['doc']}: {allowed_values(meta[name])})" for name in TRAINER_SETTINGS)


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value)


def _check_device(device: str) -> None:
    """A device torch can use here; a CUDA or MPS device that is not available is an error, not a fallback."""
    if not DEVICE_PATTERN.match(device):
        raise ValueError(f"device must be cpu, cuda, cuda:N, mps or auto, got {device!r}")
    if device.startswith("cuda"):
        import torch

        available = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(device.partition(":")[2] or 0)
        if index >= available:
            found = f"{available} CUDA device{'s' if available != 1 else ''}" if available else "no CUDA device"
            raise ValueError(f"device {device!r} is not available: torch sees {found} (use cpu)")
    elif device == "mps":
        import torch

        if not torch.backends.mps.is_available():
            raise ValueError("device 'mps' is not available on this machine (use cpu)")


def _check_registered(env_id: str, agent: str) -> None:
    import metarl_envs

    if env_id not in metarl_envs.REGISTERED_IDS:
        raise ValueError(f"unknown env_id {env_id!r}; allowed: {', '.join(metarl_envs.REGISTERED_IDS)}")
    from metarl_agents.policies import POLICY_REGISTRY

    if agent not in POLICY_REGISTRY:
        raise ValueError(f"unknown agent {agent!r}; allowed: {', '.join(POLICY_REGISTRY)}")
