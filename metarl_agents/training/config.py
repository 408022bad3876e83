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

from metarl_agents.training.presets import GRID_KEYS, load_preset
from metarl_agents.value_check import check_value

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


def _setting(default: Any = dataclasses.MISSING, *, kind: type, doc: str, low: float | None = None,
             high: float | None = None, low_open: bool = False, optional: bool = False,
             choices: tuple[str, ...] | None = None, option: str | None = None,
             axis: str | None = None, unit: str | None = None, identity: bool = True, trainer: bool = False,
             column: str | None = None, grouped: bool = True, since: int = 1, preset: bool = False) -> Any:
    """A field and everything derived from it, described once: its values (``kind``, bounds inclusive unless
    ``low_open``, ``optional``: None allowed, ``choices``), its command line (``doc``: its one help text;
    ``option``: its spelling for one run, None for ``--override KEY=VALUE`` only; ``axis``: its spelling as a
    list in ``metarl-bench run``; ``unit="frames"`` reads 200k) and its place in a stored run (``identity``:
    False if changing it keeps the run and its key; ``trainer``: ``--override`` takes it, and without a
    ``column`` of its own it is stored among the run's departures from its preset; ``column``: its store
    column, where not the field's name; ``grouped``: False if runs that differ in it rank together in one
    report group; ``since``: the store version that made it part of a run's identity -- the run key counts
    it only where it differs from its default, so older keys never change; ``preset``: every preset sets it).
    """
    meta = {**locals(), "default": {} if kind is dict else None if default is dataclasses.MISSING else default}
    return field(default_factory=dict, metadata=meta) if kind is dict else field(default=default, metadata=meta)


_TRAINER = {"trainer": True, "preset": True}


@dataclass(frozen=True)
class RunConfig:
    """Everything one training run needs, range-checked on construction.

    Build it from a preset with :meth:`from_preset` (``RunConfig.from_preset("MetaTMaze-v0", "SplAgger",
    n_steps=350)``) or change one with :meth:`replace`; :meth:`as_dict` is what is printed and stored.
    """

    # -- what is trained on what -----------------------------------------------------------------
    env_id: str = _setting(kind=str, option="--env", axis="--envs", doc="environment id, e.g. MetaTMaze-v0")
    agent: str = _setting(kind=str, option="--agent", axis="--agents", grouped=False,
                          doc="agent: a policy name of metarl_agents.policies.POLICY_REGISTRY")
    env_kwargs: dict[str, Any] = _setting(kind=dict, option="--env-kwarg",
                                          doc="family kwarg, e.g. length=10 (repeatable; a non-paper setting)")
    policy_kwargs: dict[str, Any] = _setting(kind=dict, option="--policy-kwarg", since=3,
                                             doc="policy kwarg, e.g. head=mlp or net_arch=[16] (repeatable)")
    # -- the trainer (MetaPPO) -------------------------------------------------------------------
    n_envs: int = _setting(16, kind=int, low=1, high=MAX_ENVS, option="--n-envs", **_TRAINER, doc="parallel envs")
    n_steps: int = _setting(700, kind=int, low=1, high=10**6, **_TRAINER, doc="steps per env per update")
    n_epochs: int = _setting(2, kind=int, low=1, high=10**4, **_TRAINER, doc="passes over each rollout")
    n_minibatches: int = _setting(4, kind=int, low=1, high=MAX_ENVS, **_TRAINER,
                                  doc="minibatches (sets of envs) per epoch")
    clip_range: float = _setting(0.05, kind=float, low=0.0, high=1.0, low_open=True, **_TRAINER,
                                 doc="PPO ratio and value clip")
    gamma: float = _setting(0.95, kind=float, low=0.0, high=1.0, **_TRAINER, doc="discount")
    gae_lambda: float = _setting(0.95, kind=float, low=0.0, high=1.0, **_TRAINER, doc="GAE lambda")
    ent_coef: float = _setting(0.1, kind=float, low=0.0, **_TRAINER, doc="entropy coefficient")
    vf_coef: float = _setting(0.5, kind=float, low=0.0, **_TRAINER, doc="value-loss coefficient")
    max_grad_norm: float = _setting(0.5, kind=float, low=0.0, low_open=True, **_TRAINER,
                                    doc="gradient clip (memory, head)")
    adam_eps: float = _setting(1e-5, kind=float, low=0.0, low_open=True, **_TRAINER, doc="Adam epsilon")
    learning_rate: float = _setting(1e-3, kind=float, low=0.0, high=MAX_LEARNING_RATE, low_open=True, option="--lr",
                                    axis="--lrs", column="lr", grouped=False, **_TRAINER, doc="Adam learning rate")
    lr_anneal: bool = _setting(False, kind=bool, **_TRAINER, doc="decay the learning rate linearly to 0")
    normalize_reward: bool = _setting(True, kind=bool, **_TRAINER, doc="scale rewards by the return's running std")
    reward_clip: float = _setting(10.0, kind=float, low=0.0, low_open=True, **_TRAINER,
                                  doc="clip of the scaled rewards")
    clip_actions: bool = _setting(True, kind=bool, trainer=True, doc="clip Box actions to the action space")
    protocol: str = _setting("metarl", kind=str, choices=PROTOCOLS, option="--protocol", trainer=True,
                             column="protocol", since=5, doc="training protocol: paper (as the SplAgger reference "
                                 "trained; the paper presets' default) or metarl (this trainer's own, and older runs')")
    # -- budget and evaluation protocol ----------------------------------------------------------
    frames: int = _setting(1_500_000, kind=int, low=1, high=MAX_FRAMES, option="--frames", unit="frames",
                           column="frames_budget", preset=True,
                           doc="training frames per run, e.g. 200k or 1.5e6; fewer than the preset's is labelled "
                               "REDUCED BUDGET in the store, the report and its file names")
    eval_every: int = _setting(50_000, kind=int, low=1, high=MAX_FRAMES, option="--eval-every", unit="frames",
                               preset=True, doc="frames between evaluations (default: the preset's, at least 10 "
                                                "points per run, in whole rollouts)")
    n_eval_tasks: int = _setting(16, kind=int, low=1, high=MAX_ENVS, option="--n-eval-tasks", preset=True,
                                 doc="tasks per evaluation: the same held-out tasks (seeds seed + "
                                     f"{EVAL_SEED_OFFSET} + i) at every point, deterministic actions, one trial each")
    n_final_eval_tasks: int | None = _setting(None, kind=int, low=1, high=MAX_ENVS, optional=True, since=4,
                                              option="--final-eval-tasks",
                                              doc=f"tasks in each of the run's last {FINAL_EVALUATIONS} evaluations, "
                                                  "whose mean is its final statistic (the first n_eval_tasks the "
                                                  "same; default: n_eval_tasks; the paper-claim runs use 64)")
    stop_at_return: float | None = _setting(None, kind=float, optional=True, option="--stop-at-return", since=2,
                                            grouped=False, doc="end a run after `patience` consecutive evaluations "
                                                               "with a meta-episode return >= this (e.g. 15.5)")
    patience: int | None = _setting(None, kind=int, low=1, high=10**6, optional=True, option="--patience", since=2,
                                    grouped=False, doc="evaluations >= stop_at_return in a row to stop (default: 1)")
    # -- the seed, and the hardware (device and threads are not part of a run's identity) --------
    seed: int = _setting(0, kind=int, low=0, high=MAX_SEED, option="--seed", axis="--seeds", grouped=False,
                         doc="seed of the model and the training envs")
    device: str = _setting("cpu", kind=str, option="--device", identity=False,
                           doc="torch device: cpu, cuda, cuda:N, mps or auto; an unavailable device is an error")
    threads: int = _setting(1, kind=int, low=1, high=1024, option="--threads", identity=False,
                            doc="torch threads per run (1, the default, is fastest for these small models with "
                                "batch-16 rollouts, and several times faster than torch's default on a busy machine)")

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
        _check_device(self.device)
        _check_registered(self.env_id, self.agent)

    # -- construction ----------------------------------------------------------------------------
    @classmethod
    def from_preset(cls, env_id: str, agent: str, **settings: Any) -> RunConfig:
        """``env_id``'s preset (:mod:`metarl_agents.training.presets`) with ``settings`` replacing its values.

        Preset keys are field names; the grid keys ``lr_grid`` and ``seeds`` are the leaderboard's, not a run's.
        """
        _refuse_unknown(settings, FIELDS[2:])  # all but env_id and agent
        return cls(env_id=env_id, agent=agent, **{**preset_settings(env_id), **settings})

    def replace(self, **changes: Any) -> RunConfig:
        """A copy with ``changes`` (checked like the original)."""
        _refuse_unknown(changes, FIELDS)
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

#: Each field's description (kind, range, help text, command-line spelling and place in a stored run).
META: dict[str, Any] = {item.name: item.metadata for item in dataclasses.fields(RunConfig)}
FIELDS = tuple(META)
#: Field -> store column, for the identity fields stored in a column of their own.
COLUMNS = {name: meta["column"] or name for name, meta in META.items()
           if meta["identity"] and (meta["column"] or not meta["trainer"])}
#: Trainer settings stored as a run's departures from its preset (``RunSpec.overrides``), not in columns.
TRAINER_SETTINGS = tuple(name for name in FIELDS if META[name]["trainer"] and name not in COLUMNS)
#: What ``--override KEY=VALUE`` takes: every trainer setting (one with an option of its own either way).
OVERRIDABLE = tuple(name for name in FIELDS if META[name]["trainer"])
#: Settings every preset defines (besides the leaderboard's grid, :data:`~.presets.GRID_KEYS`).
PRESET_FIELDS = tuple(name for name in FIELDS if META[name]["preset"])


def check_settings(**values: Any) -> dict[str, Any]:
    """``values`` checked and converted as the :class:`RunConfig` fields of the same names (so an algorithm
    built without a configuration refuses the same values); ``ValueError`` names the first bad one."""
    return {name: check_value(name, value, META[name]) for name, value in values.items()}


def preset_settings(env_id: str) -> dict[str, Any]:
    """The run settings of ``env_id``'s preset (its keys are field names), checked to be complete."""
    settings = {key: value for key, value in load_preset(env_id).items() if key not in GRID_KEYS}
    missing = [name for name in PRESET_FIELDS if name not in settings]
    if missing:
        raise ValueError(f"the preset of {env_id} lacks {', '.join(missing)}")
    return settings


def _refuse_unknown(names: Any, allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(names) - set(allowed))
    if unknown:
        raise ValueError(f"unknown setting{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
                         f"allowed: {', '.join(allowed)}")


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
