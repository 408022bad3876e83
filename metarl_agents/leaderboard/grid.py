"""The run grid: what one leaderboard run is, and how the (env × agent × seed × lr) grid is built.

A :class:`RunSpec` is a run's :class:`~metarl_agents.training.config.RunConfig` as the store keeps it: the
configuration's identity fields (each taking its column, default and roles from the field's description),
the preset it started from and the trainer settings it changed (``overrides``). Its ``run_key`` names the
run in the store and its checkpoint files, so re-running the same command finds the same runs again, while
a different budget or preset gives different runs instead of silently mixing results. The store's columns,
the rows it reads back (:class:`~metarl_agents.leaderboard.store.RunRecord`) and the report's groups are
derived from its fields.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from metarl_agents.training.config import (
    COLUMNS,
    EVAL_SEED_OFFSET,
    FINAL_EVALUATIONS,
    MAX_SEED,
    META,
    TRAINER_SETTINGS,
    RunConfig,
    eval_seed,
)

#: Evaluation points a run gets at least by default, also on a reduced budget (the preset's eval_every is per
#: run) and for the meta-gradient agents (a budget in meta-iterations).
MIN_EVAL_POINTS = 10
#: The most seeds ``--seeds N`` may ask for.
MAX_SEED_COUNT = 1000
#: Preset keys under the names they had when the first runs were stored: a preset's hash (part of every run
#: key) is taken under these, so naming the preset's keys after the configuration's fields changed no key.
_HASHED_PRESET_NAMES = {"eval_every": "eval_freq", "n_eval_tasks": "eval_tasks"}
__all__ = ["EVAL_SEED_OFFSET", "RunSpec", "build_grid", "evaluation_frames"]


def _stored(name: str, required: bool = False) -> Any:
    """The RunSpec field that stores the configuration field of the same ``name``: its column and its default
    (unless ``required``) are that field's."""
    meta, default = {"column": COLUMNS[name], "setting": True}, META[name]["default"]
    if required:
        return field(metadata=meta)
    return field(default_factory=dict, metadata=meta) if default == {} else field(default=default, metadata=meta)


@dataclass(frozen=True)
class RunSpec:
    """One training run of the grid (the order of the fields is the order of the store's columns)."""

    env_id: str = _stored("env_id", required=True)
    agent: str = _stored("agent", required=True)
    seed: int = _stored("seed", required=True)
    learning_rate: float = _stored("learning_rate", required=True)
    frames: int = _stored("frames", required=True)
    paper_frames: int
    preset_name: str
    preset_hash: str
    eval_every: int = _stored("eval_every", required=True)
    n_eval_tasks: int = _stored("n_eval_tasks")
    env_kwargs: dict[str, Any] = _stored("env_kwargs")
    overrides: dict[str, Any] = field(default_factory=dict)  # preset trainer settings replaced for this sweep
    # Early stopping: the report carries an early-stopped run's last value forward to the budget (marked).
    stop_at_return: float | None = _stored("stop_at_return")
    patience: int | None = _stored("patience")
    policy_kwargs: dict[str, Any] = _stored("policy_kwargs")
    n_final_eval_tasks: int | None = _stored("n_final_eval_tasks")
    # Every run stored before protocols existed trained as "metarl" (the default).
    protocol: str = _stored("protocol")

    @property
    def reduced(self) -> bool:
        return self.frames < self.paper_frames

    @property
    def eval_seed(self) -> int:
        return eval_seed(self.seed)

    @property
    def final_eval_tasks(self) -> int:
        """Tasks in each of the run's last ``FINAL_EVALUATIONS`` evaluations."""
        return self.n_eval_tasks if self.n_final_eval_tasks is None else self.n_final_eval_tasks

    def eval_tasks_at(self, frames: int, rollout: int) -> int:
        """Tasks of the evaluation after ``frames`` frames, with ``rollout`` frames per PPO update: the last
        ``FINAL_EVALUATIONS`` evaluations of the run's schedule (:func:`evaluation_frames`) use
        :attr:`final_eval_tasks`, the others ``n_eval_tasks``."""
        if self.n_final_eval_tasks is None:
            return self.n_eval_tasks
        final = evaluation_frames(self.frames, self.eval_every, rollout)[-FINAL_EVALUATIONS:]
        return self.n_final_eval_tasks if frames >= final[0] else self.n_eval_tasks

    @property
    def config_hash(self) -> str:
        """Hash of every setting that changes results and is not spelled out exactly in the key.

        The settings of the first stores come in a fixed order; each later one (a field's ``since``) is
        appended, with the others of its store version, only when one of them differs from its default, so
        the keys of runs without it never change.
        """
        config: list[Any] = [self.frames, self.learning_rate, self.preset_hash, self.eval_every, self.n_eval_tasks,
                             self.env_kwargs, self.overrides]
        for names in _LATER_SETTINGS:
            if any(getattr(self, name) != META[name]["default"] for name in names):
                config.append({name: getattr(self, name) for name in names})
        return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:8]

    @property
    def run_key(self) -> str:
        """Readable, filename-safe and unique per configuration."""
        return (f"{self.env_id}__{self.agent}__seed{self.seed}__lr{self.learning_rate:g}__"
                f"{budget_label(self.frames, self.paper_frames)}__{self.config_hash}")

    @classmethod
    def columns(cls) -> dict[str, str]:
        """Field name -> store column name, for every field of the schema."""
        return {item.name: item.metadata.get("column", item.name) for item in dataclasses.fields(RunSpec)}

    def store_fields(self) -> dict[str, Any]:
        """The identity and configuration columns of this run's row in the store."""
        values = {column: getattr(self, name) for name, column in RunSpec.columns().items()}
        return {"run_key": self.run_key, **values, "reduced": int(self.reduced)}

    def spec(self) -> RunSpec:
        """This run's specification alone (a :class:`RunRecord` drops its progress fields)."""
        return RunSpec(**{name: getattr(self, name) for name in RunSpec.columns()})

    def group_key(self) -> str:
        """The configuration shared by the runs a report ranks together: every stored field but those whose
        setting is not ``grouped`` (the group ranks agents and learning rates over seeds, and an early-stopped
        run's curve is carried to the budget, so runs with and without a rule compare)."""
        config = {name: getattr(self, name) for name in RunSpec.columns() if name not in UNGROUPED_FIELDS}
        return json.dumps(config, sort_keys=True)

    @classmethod
    def from_config(cls, config: RunConfig, preset: dict[str, Any], overrides: dict[str, Any]) -> RunSpec:
        """The run of ``config``, started from ``preset`` (a preset file's contents) with the trainer settings
        ``overrides`` replaced (as given: they are part of the run key)."""
        spec = cls(**{name: getattr(config, name) for name in _SETTING_FIELDS}, paper_frames=int(preset["frames"]),
                   preset_name=str(preset.get("env_id", config.env_id)), preset_hash=preset_hash(preset),
                   overrides=dict(overrides))
        object.__setattr__(spec, "_run_config", config)  # not a field: a copy made with other fields rebuilds it
        return spec

    def config(self, device: str | None = None, threads: int | None = None) -> RunConfig:
        """The full, validated training configuration of this run, on ``device`` with ``threads`` (None: those
        it was built with). A run the grid built keeps its configuration; one read back from a store (or
        copied with other fields) rebuilds it from its preset and its stored settings."""
        config = self.__dict__.get("_run_config") or RunConfig.from_preset(
            **{name: getattr(self, name) for name in _SETTING_FIELDS}, **self.overrides)
        changes = {name: value for name, value in (("device", device), ("threads", threads))
                   if value is not None and value != getattr(config, name)}
        return config.replace(**changes) if changes else config


#: The RunSpec fields that hold the configuration field of the same name.
_SETTING_FIELDS = tuple(item.name for item in dataclasses.fields(RunSpec) if item.metadata.get("setting"))
#: Fields that may differ within one report group (:meth:`RunSpec.group_key`).
UNGROUPED_FIELDS = tuple(name for name in _SETTING_FIELDS if not META[name]["grouped"])
#: The settings each later store version added to a run's identity, oldest first.
_LATER_SETTINGS = [tuple(name for name in _SETTING_FIELDS if META[name]["since"] == since)
                   for since in sorted({META[name]["since"] for name in _SETTING_FIELDS} - {1})]


def evaluation_frames(frames: int, eval_every: int, rollout: int) -> list[int]:
    """The frame counts at which a run of ``frames`` frames is evaluated, ``rollout`` frames per PPO update.

    The runner evaluates between updates, at the first update boundary at or past each multiple of
    ``eval_every``, and once more at the end (the last update may go past the budget); an evaluation's place
    in the run is therefore known before it is taken, which lets the last ones use more tasks.
    """
    for name, value in (("frames", frames), ("eval_every", eval_every), ("rollout", rollout)):
        positive_int(name, value)
    points, next_at, done = [], eval_every, 0
    while done < frames:  # an update starts at `done` frames
        if done >= next_at:
            points.append(done)
            next_at = (done // eval_every + 1) * eval_every
        done += rollout
    return [*points, done]


def positive_int(name: str, value: Any) -> int:
    """``value`` if it is an integer >= 1 (not a bool), else a ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return value


def format_frames(frames: int) -> str:
    """1500000 -> "1.5M", 200000 -> "200k"."""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if frames >= scale:
            return f"{frames / scale:.4g}{suffix}"
    return str(frames)


def budget_label(frames: int, paper_frames: int) -> str:
    """Filename-safe budget tag; a reduced budget says so wherever the tag appears."""
    label = f"frames{format_frames(frames)}"
    return f"{label}-REDUCED" if frames < paper_frames else label


def preset_hash(preset: dict[str, Any]) -> str:
    """Hash of a preset's values under their first names (:data:`_HASHED_PRESET_NAMES`), its ``protocol`` left
    out: a run's protocol is a field of its own (:attr:`RunSpec.protocol`), so naming it in the presets left
    every stored run's key as it was."""
    values = {_HASHED_PRESET_NAMES.get(key, key): value for key, value in preset.items() if key != "protocol"}
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:12]


def registered_envs() -> tuple[str, ...]:
    import metarl_envs

    return tuple(metarl_envs.REGISTERED_IDS)


def registered_agents() -> tuple[str, ...]:
    """The memory agents MetaPPO trains, then the meta-gradient ones (:mod:`.meta_gradient`)."""
    from metarl_agents.leaderboard.meta_gradient_agents import AGENT_METHODS
    from metarl_agents.policies import POLICY_REGISTRY

    return (*POLICY_REGISTRY, *AGENT_METHODS)


def check_choices(kind: str, values: Sequence[str], allowed: Sequence[str]) -> None:
    unknown = [value for value in values if value not in allowed]
    if unknown:
        raise ValueError(f"unknown {kind} {', '.join(map(repr, unknown))}; allowed: {', '.join(allowed)}")


def parse_seeds(values: Sequence[str] | None, preset_seeds: Sequence[int]) -> list[int]:
    """``["3"]`` is a count (the first 3 preset seeds, extended with 0, 1, ... if the preset has fewer);
    several values, or values written with commas (``["7,"]``, ``["73,20"]``), are explicit seeds."""
    if not values:
        return list(preset_seeds)
    if len(values) == 1 and "," not in values[0]:
        count = _parse_int("--seeds", values[0])
        if not 1 <= count <= MAX_SEED_COUNT:
            raise ValueError(f"--seeds count must be an integer in [1, {MAX_SEED_COUNT}], got {count} (list explicit "
                             "seeds with commas, e.g. 2000000,)")
        extra = (s for s in range(MAX_SEED_COUNT + len(preset_seeds)) if s not in preset_seeds)
        return [*preset_seeds[:count], *(next(extra) for _ in range(count - len(preset_seeds)))]
    seeds = [_parse_int("--seeds", item) for value in values for item in value.split(",") if item.strip()]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds lists a seed twice: {seeds}")
    for seed in seeds:
        if not 0 <= seed <= MAX_SEED:
            raise ValueError(f"seed must be an integer in [0, {MAX_SEED}], got {seed}")
    return seeds


def refuse_repeats(option: str, values: Sequence[Any], noun: str | None = None) -> None:
    """ValueError if ``values`` lists one twice, naming it as ``noun`` (None: by its value)."""
    for i, value in enumerate(values):
        if value in values[:i]:
            raise ValueError(f"{option} lists {noun or repr(value)} twice: {list(values)}")


def parse_frames(value: str | float | int) -> int:
    """Accepts 1500000, "1.5e6", "200k", "1.5M"."""
    text = str(value).strip()
    scale = {"k": 1e3, "m": 1e6, "g": 1e9}.get(text[-1:].lower(), 1)
    number = text[:-1] if scale != 1 else text
    try:
        frames = float(number) * scale
    except ValueError:
        raise ValueError(f"frame count {value!r} is not a number (e.g. 1500000, 1.5e6, 200k)") from None
    if not math.isfinite(frames) or frames < 1:
        raise ValueError(f"frame count must be >= 1, got {value!r}")
    return int(round(frames))


def _parse_int(option: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{option} expects integers, got {text!r}") from None


def _refuse_meta_gradient_agents(agents: Sequence[str]) -> None:
    from metarl_agents.leaderboard.meta_gradient_agents import AGENT_METHODS

    named = [agent for agent in agents if agent in AGENT_METHODS]
    if named:
        raise ValueError(f"{', '.join(named)} train by meta-iterations, not frames: build their runs with "
                         "metarl_agents.leaderboard.meta_gradient.build_meta_gradient_grid (metarl-bench run does)")


def _default_eval_every(preset_eval_every: int, config: RunConfig) -> int:
    """The preset's eval_every (at most frames / MIN_EVAL_POINTS), rounded down to whole rollouts (at
    least one): the trainer can only stop between updates, so this keeps evaluation points evenly spaced."""
    rollout = config.n_envs * config.n_steps
    wanted = min(preset_eval_every, math.ceil(config.frames / MIN_EVAL_POINTS))
    return max(1, wanted // rollout) * rollout


def build_grid(envs: Sequence[str], agents: Sequence[str], seeds: Sequence[str] | None = None,
               lrs: Sequence[float] | None = None, overrides: dict[str, Any] | None = None,
               **settings: Any) -> list[RunSpec]:
    """All runs of env × agent × seed × learning rate; unset settings come from each environment's preset.

    ``seeds`` as :func:`parse_seeds` reads them, ``lrs`` default to the preset's ``lr_grid``. ``overrides``
    replace preset trainer settings (``TRAINER_SETTINGS``, e.g. ``{"n_steps": 350}``); like ``env_kwargs``
    and ``policy_kwargs`` they are part of each run's identity, reported as departures from the paper's
    settings. ``settings``: the other :class:`~metarl_agents.training.config.RunConfig` fields (``frames``,
    ``eval_every`` -- by default about the preset's, see ``_default_eval_every`` --, ``protocol``,
    ``device``, ...; None: the preset's). Every run's configuration is validated before any is returned, and
    each run keeps it (:meth:`RunSpec.config`).
    """
    from metarl_agents.training.build import check_buildable  # torch: only once the cheap checks have passed
    from metarl_agents.training.presets import load_preset

    if not envs or not agents:
        raise ValueError("need at least one env and one agent")
    # Like --seeds: a value listed twice would train the same run twice, at once with several workers, and
    # the two would race on one checkpoint.
    refuse_repeats("--envs", envs, "an environment")
    refuse_repeats("--agents", agents, "an agent")
    refuse_repeats("--lrs", list(lrs or []), "a learning rate")
    check_choices("env", envs, registered_envs())
    check_choices("agent", agents, registered_agents())
    _refuse_meta_gradient_agents(agents)
    overrides = dict(overrides or {})
    check_choices("override", list(overrides), TRAINER_SETTINGS)  # the learning rate is the axis lrs
    check_choices("setting", list(settings), [n for n in META if not META[n]["axis"] and n not in TRAINER_SETTINGS])
    settings = {name: value for name, value in settings.items() if value is not None}
    specs = []
    for env_id in envs:
        preset = load_preset(env_id)
        # Checks every setting once for this env (a bad value stops the grid before anything is written).
        config = RunConfig.from_preset(env_id, agents[0], **overrides, **settings)
        if "eval_every" not in settings:
            config = config.replace(eval_every=_default_eval_every(config.eval_every, config))
        for agent in agents:
            check_buildable(config.replace(agent=agent))  # env and policy kwargs
            for seed in parse_seeds(seeds, [int(s) for s in preset["seeds"]]):
                for lr in lrs or preset["lr_grid"]:
                    run = config.replace(agent=agent, seed=seed, learning_rate=lr)  # checks seed and lr
                    specs.append(RunSpec.from_config(run, preset, overrides))
    return specs
