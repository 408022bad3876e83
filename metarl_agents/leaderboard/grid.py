"""The run grid: what one leaderboard run is, and how the (env × agent × seed × lr) grid is built.

A :class:`RunSpec` is everything that determines a run's results; its ``run_key`` names the run in the
store and its checkpoint files, so re-running the same command finds the same runs again, while a
different budget or preset gives different runs instead of silently mixing results.

:class:`RunSpec` is also the run schema, defined once: the store's identity columns, the rows it reads
back (:class:`~metarl_agents.leaderboard.store.RunRecord` extends it with the run's progress) and the
report's groups are all derived from its fields. A field's ``column`` metadata names its store column
where that differs from the field name.
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
    EVAL_SEED_OFFSET,
    FINAL_EVALUATIONS,
    MAX_SEED,
    TRAINER_SETTINGS,
    RunConfig,
    eval_seed,
)

# A reduced budget still gets at least this many evaluation points (the preset's eval_freq is per run).
MIN_EVAL_POINTS = 10
DEFAULT_EVAL_TASKS = 16
#: The most seeds ``--seeds N`` may ask for.
MAX_SEED_COUNT = 1000
__all__ = ["EVAL_SEED_OFFSET", "RunSpec", "build_grid", "evaluation_frames"]


@dataclass(frozen=True)
class RunSpec:
    """One training run of the grid."""

    env_id: str
    agent: str
    seed: int
    lr: float
    frames: int = field(metadata={"column": "frames_budget"})
    paper_frames: int
    preset_name: str
    preset_hash: str
    eval_every: int
    n_eval_tasks: int = DEFAULT_EVAL_TASKS
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)  # preset values replaced for this sweep
    # Early stopping: end the run after ``patience`` consecutive evaluations >= ``stop_at_return``; the
    # report carries its last value forward to the budget (marked as carried).
    stop_at_return: float | None = None
    patience: int | None = None
    policy_kwargs: dict[str, Any] = field(default_factory=dict)  # the agents' architecture, if not the default
    # Tasks in each of the last FINAL_EVALUATIONS evaluations (None: n_eval_tasks), for a steadier final statistic.
    n_final_eval_tasks: int | None = None
    # The training protocol (MetaPPO's): every run stored before protocols existed trained as "metarl".
    protocol: str = "metarl"

    #: Fields that may differ within one report group: the group ranks agents and learning rates over seeds,
    #: and an early-stopped run's curve is carried to the budget, so runs with and without a rule compare.
    UNGROUPED_FIELDS = ("agent", "seed", "lr", "stop_at_return", "patience")

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
        """Hash of every setting that changes results and is not spelled out exactly in the key."""
        config: list[Any] = [self.frames, self.lr, self.preset_hash, self.eval_every, self.n_eval_tasks,
                             self.env_kwargs, self.overrides]
        # Later settings are appended only when set, so the keys of runs without them never change.
        if self.stop_at_return is not None:
            config.append({"stop_at_return": self.stop_at_return, "patience": self.patience})
        if self.policy_kwargs:
            config.append({"policy_kwargs": self.policy_kwargs})
        if self.n_final_eval_tasks is not None:
            config.append({"n_final_eval_tasks": self.n_final_eval_tasks})
        if self.protocol != "metarl":
            config.append({"protocol": self.protocol})
        return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:8]

    @property
    def run_key(self) -> str:
        """Readable, filename-safe and unique per configuration."""
        return (
            f"{self.env_id}__{self.agent}__seed{self.seed}__lr{self.lr:g}__"
            f"{budget_label(self.frames, self.paper_frames)}__{self.config_hash}"
        )

    @classmethod
    def columns(cls) -> dict[str, str]:
        """Field name -> store column name, for every field of the schema."""
        return {item.name: item.metadata.get("column", item.name) for item in dataclasses.fields(RunSpec)}

    def store_fields(self) -> dict[str, Any]:
        """The identity and configuration columns of this run's row in the store."""
        values = {column: getattr(self, name) for name, column in self.columns().items()}
        return {"run_key": self.run_key, **values, "reduced": int(self.reduced)}

    def spec(self) -> RunSpec:
        """This run's specification alone (a :class:`RunRecord` drops its progress fields)."""
        return RunSpec(**{name: getattr(self, name) for name in self.columns()})

    def group_key(self) -> str:
        """The configuration shared by the runs a report ranks together (every field but UNGROUPED_FIELDS)."""
        config = {name: getattr(self, name) for name in self.columns() if name not in self.UNGROUPED_FIELDS}
        return json.dumps(config, sort_keys=True)

    def config(self, device: str = "cpu", threads: int = 1) -> RunConfig:
        """The full, validated training configuration of this run (preset + this run's settings)."""
        return RunConfig.from_preset(
            self.env_id, self.agent, seed=self.seed, learning_rate=self.lr, frames=self.frames,
            eval_every=self.eval_every, n_eval_tasks=self.n_eval_tasks, n_final_eval_tasks=self.n_final_eval_tasks,
            env_kwargs=dict(self.env_kwargs),
            policy_kwargs=dict(self.policy_kwargs), stop_at_return=self.stop_at_return, patience=self.patience,
            protocol=self.protocol, device=device, threads=threads, **self.overrides,
        )


def evaluation_frames(frames: int, eval_every: int, rollout: int) -> list[int]:
    """The frame counts at which a run of ``frames`` frames is evaluated, ``rollout`` frames per PPO update.

    The runner evaluates between updates, at the first update boundary at or past each multiple of
    ``eval_every``, and once more at the end (the last update may go past the budget); an evaluation's place
    in the run is therefore known before it is taken, which lets the last ones use more tasks.
    """
    for name, value in (("frames", frames), ("eval_every", eval_every), ("rollout", rollout)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    points, next_at, done = [], eval_every, 0
    while done < frames:  # an update starts at `done` frames
        if done >= next_at:
            points.append(done)
            next_at = (done // eval_every + 1) * eval_every
        done += rollout
    return [*points, done]


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
    """Hash of a preset's values, its ``protocol`` left out: a run's protocol is a field of its own
    (:attr:`RunSpec.protocol`), so naming it in the presets left every stored run's key as it was."""
    values = {key: value for key, value in preset.items() if key != "protocol"}
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


def _refuse_repeats(option: str, noun: str, values: Sequence[Any]) -> None:
    for i, value in enumerate(values):
        if value in values[:i]:
            raise ValueError(f"{option} lists {noun} twice: {list(values)}")


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
    from metarl_agents.leaderboard.meta_gradient_agents import is_meta_gradient_agent

    named = [agent for agent in agents if is_meta_gradient_agent(agent)]
    if named:
        raise ValueError(f"{', '.join(named)} train by meta-iterations, not frames: build their runs with "
                         "metarl_agents.leaderboard.meta_gradient.build_meta_gradient_grid (metarl-bench run does)")


def _default_eval_every(preset_eval_every: int, config: RunConfig) -> int:
    """The preset's eval_freq (at most frames / MIN_EVAL_POINTS), rounded down to whole rollouts (at
    least one): the trainer can only stop between updates, so this keeps evaluation points evenly spaced."""
    rollout = config.n_envs * config.n_steps
    wanted = min(preset_eval_every, math.ceil(config.frames / MIN_EVAL_POINTS))
    return max(1, wanted // rollout) * rollout


def build_grid(
    envs: Sequence[str],
    agents: Sequence[str],
    seeds: Sequence[str] | None = None,
    lrs: Sequence[float] | None = None,
    frames: int | None = None,
    eval_every: int | None = None,
    n_eval_tasks: int | None = None,
    env_kwargs: dict[str, Any] | None = None,
    overrides: dict[str, Any] | None = None,
    stop_at_return: float | None = None,
    patience: int | None = None,
    policy_kwargs: dict[str, Any] | None = None,
    n_final_eval_tasks: int | None = None,
    protocol: str | None = None,
) -> list[RunSpec]:
    """All runs of env × agent × seed × lr; unset options come from each environment's preset.

    By default a run is evaluated about every preset ``eval_freq`` frames (see ``_default_eval_every``)
    on the preset's ``eval_tasks`` tasks; with ``n_final_eval_tasks`` the last ``FINAL_EVALUATIONS`` on that many.
    ``overrides`` replace preset trainer settings (e.g. ``{"n_steps": 350}``; the names in
    ``TRAINER_SETTINGS``); like ``env_kwargs`` and ``policy_kwargs`` they become part of each run's
    identity and are reported as departures from the paper's settings. ``stop_at_return`` ends a run after
    ``patience`` (default 1) consecutive evaluations with a meta-episode return >= ``stop_at_return``.
    ``protocol`` ("paper" or "metarl") replaces the preset's training protocol (the paper presets' is
    "paper"; a preset without one, and every run stored before protocols existed, is "metarl").
    Every run's configuration is validated (:class:`RunConfig`) before any is returned.
    """
    from metarl_agents.training.build import check_buildable  # torch: only once the cheap checks have passed
    from metarl_agents.training.presets import load_preset

    if not envs or not agents:
        raise ValueError("need at least one env and one agent")
    # Like --seeds: a value listed twice would train the same run twice, at once with several workers, and
    # the two would race on one checkpoint.
    _refuse_repeats("--envs", "an environment", envs)
    _refuse_repeats("--agents", "an agent", agents)
    if lrs:
        _refuse_repeats("--lrs", "a learning rate", list(lrs))
    check_choices("env", envs, registered_envs())
    check_choices("agent", agents, registered_agents())
    _refuse_meta_gradient_agents(agents)
    overrides = dict(overrides or {})
    if "learning_rate" in overrides:
        # One spelling per setting: the learning rate is a grid axis (each run's own), not a preset override.
        raise ValueError(f"learning_rate={overrides['learning_rate']!r} is not an override: set the learning rate "
                         "with --lr (metarl-train) or --lrs (metarl-bench), or build_grid(lrs=...)")
    check_choices("override", list(overrides or {}), TRAINER_SETTINGS)
    specs = []
    for env_id in envs:
        preset = load_preset(env_id)
        paper_frames = int(preset["frames"])
        settings = dict(overrides or {}, env_kwargs=dict(env_kwargs or {}), policy_kwargs=dict(policy_kwargs or {}),
                        stop_at_return=stop_at_return, patience=patience, frames=paper_frames if frames is None else frames)
        if protocol is not None:
            settings["protocol"] = protocol
        if n_eval_tasks is not None:
            settings["n_eval_tasks"] = n_eval_tasks
        if n_final_eval_tasks is not None:
            settings["n_final_eval_tasks"] = n_final_eval_tasks
        if eval_every is not None:
            settings["eval_every"] = eval_every
        # Checks every setting once for this env (a bad value stops the grid before anything is written).
        config = RunConfig.from_preset(env_id, agents[0], **settings)
        if eval_every is None:
            config = config.replace(eval_every=_default_eval_every(config.eval_every, config))
        for agent in agents:
            check_buildable(config.replace(agent=agent))  # env and policy kwargs
            for seed in parse_seeds(seeds, [int(s) for s in preset["seeds"]]):
                for lr in lrs or preset["lr_grid"]:
                    run = config.replace(agent=agent, seed=seed, learning_rate=lr)  # checks seed and lr
                    specs.append(RunSpec(
                        env_id=env_id, agent=agent, seed=run.seed, lr=float(run.learning_rate), frames=run.frames,
                        paper_frames=paper_frames, preset_name=str(preset.get("env_id", env_id)),
                        preset_hash=preset_hash(preset), eval_every=run.eval_every, n_eval_tasks=run.n_eval_tasks,
                        env_kwargs=dict(env_kwargs or {}), overrides=dict(overrides or {}),
                        stop_at_return=run.stop_at_return, patience=run.patience,
                        policy_kwargs=dict(policy_kwargs or {}), n_final_eval_tasks=run.n_final_eval_tasks,
                        protocol=run.protocol,
                    ))
    return specs
