"""The run grid: what one leaderboard run is, and how the (env × agent × seed × lr) grid is built.

A :class:`RunSpec` is everything that determines a run's results; its ``run_key`` names the run in the
store and its checkpoint files, so re-running the same command finds the same runs again, while a
different budget or preset gives different runs instead of silently mixing results.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

# A reduced budget still gets at least this many evaluation points (the preset's eval_freq is per run).
MIN_EVAL_POINTS = 10
DEFAULT_EVAL_TASKS = 16
# Preset keys that the grid options set (or that describe the protocol rather than the trainer).
NOT_OVERRIDABLE = ("env_id", "frames", "learning_rate", "lr_grid", "seeds", "eval_freq", "eval_tasks")
# Evaluation tasks come from a stream of their own so they are fresh w.r.t. the training tasks.
EVAL_SEED_OFFSET = 1_000_003


@dataclass(frozen=True)
class RunSpec:
    """One training run of the grid."""

    env_id: str
    agent: str
    seed: int
    lr: float
    frames: int
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

    @property
    def reduced(self) -> bool:
        return self.frames < self.paper_frames

    @property
    def eval_seed(self) -> int:
        return self.seed + EVAL_SEED_OFFSET

    @property
    def config_hash(self) -> str:
        """Hash of every setting that changes results and is not spelled out exactly in the key."""
        config: list[Any] = [self.frames, self.lr, self.preset_hash, self.eval_every, self.n_eval_tasks,
                             self.env_kwargs, self.overrides]
        if self.stop_at_return is not None:  # appended only when set, so keys of runs without it never change
            config.append({"stop_at_return": self.stop_at_return, "patience": self.patience})
        return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:8]

    @property
    def run_key(self) -> str:
        """Readable, filename-safe and unique per configuration."""
        return (
            f"{self.env_id}__{self.agent}__seed{self.seed}__lr{self.lr:g}__"
            f"{budget_label(self.frames, self.paper_frames)}__{self.config_hash}"
        )

    def store_fields(self) -> dict[str, Any]:
        """The identity and configuration columns of this run's row in the store."""
        return {
            "run_key": self.run_key, "env_id": self.env_id, "agent": self.agent, "seed": self.seed,
            "lr": self.lr, "preset_name": self.preset_name, "preset_hash": self.preset_hash,
            "frames_budget": self.frames, "paper_frames": self.paper_frames, "reduced": int(self.reduced),
            "eval_every": self.eval_every, "n_eval_tasks": self.n_eval_tasks, "env_kwargs": self.env_kwargs,
            "overrides": self.overrides, "stop_at_return": self.stop_at_return, "patience": self.patience,
        }


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
    return hashlib.sha256(json.dumps(preset, sort_keys=True, default=str).encode()).hexdigest()[:12]


def registered_envs() -> tuple[str, ...]:
    import metarl_envs

    return tuple(metarl_envs.REGISTERED_IDS)


def registered_agents() -> tuple[str, ...]:
    from metarl_agents.policies import POLICY_REGISTRY

    return tuple(POLICY_REGISTRY)


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
        if count < 1:
            raise ValueError(f"--seeds count must be >= 1, got {count}")
        extra = (s for s in range(10**6) if s not in preset_seeds)
        return [*preset_seeds[:count], *(next(extra) for _ in range(count - len(preset_seeds)))]
    seeds = [_parse_int("--seeds", item) for value in values for item in value.split(",") if item.strip()]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds lists a seed twice: {seeds}")
    return seeds


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


def _default_eval_every(preset: dict[str, Any], budget: int, overrides: dict[str, Any]) -> int:
    """The preset's eval_freq (at most budget / MIN_EVAL_POINTS), rounded down to whole rollouts (at
    least one): the trainer can only stop between updates, so this keeps evaluation points evenly spaced."""
    settings = {**preset, **overrides}
    rollout = int(settings["n_envs"]) * int(settings["n_steps"])
    wanted = min(int(preset["eval_freq"]), math.ceil(budget / MIN_EVAL_POINTS))
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
) -> list[RunSpec]:
    """All runs of env × agent × seed × lr; unset options come from each environment's preset.

    By default a run is evaluated about every preset ``eval_freq`` frames (see ``_default_eval_every``)
    on the preset's ``eval_tasks`` tasks.
    ``overrides`` replace preset trainer settings (e.g. ``{"n_steps": 350}``); like ``env_kwargs`` they
    become part of each run's identity and are reported as departures from the paper's settings.
    ``stop_at_return`` and ``patience`` (given together) end a run after ``patience`` consecutive
    evaluations with a meta-episode return >= ``stop_at_return``.
    """
    from metarl_agents.presets import load_preset

    check_choices("env", envs, registered_envs())
    check_choices("agent", agents, registered_agents())
    if not envs or not agents:
        raise ValueError("need at least one env and one agent")
    if frames is not None and frames < 1:
        raise ValueError(f"--frames must be >= 1, got {frames}")
    if n_eval_tasks is not None and n_eval_tasks < 1:
        raise ValueError(f"--n-eval-tasks must be >= 1, got {n_eval_tasks}")
    if eval_every is not None and eval_every < 1:
        raise ValueError(f"--eval-every must be >= 1 frame, got {eval_every}")
    if (stop_at_return is None) != (patience is None):
        raise ValueError("--stop-at-return and --patience go together: give both or neither, got "
                         f"stop_at_return={stop_at_return}, patience={patience}")
    if stop_at_return is not None and not math.isfinite(stop_at_return):
        raise ValueError(f"--stop-at-return must be a finite return, got {stop_at_return}")
    if patience is not None and patience < 1:
        raise ValueError(f"--patience must be >= 1 evaluation, got {patience}")
    for lr in lrs or ():
        if not (math.isfinite(lr) and lr > 0):
            raise ValueError(f"learning rates must be positive, got {lr}")
    specs = []
    for env_id in envs:
        preset = load_preset(env_id)
        allowed = sorted(set(preset) - set(NOT_OVERRIDABLE))
        check_choices("preset override", list(overrides or {}), allowed)
        paper_frames = int(preset["frames"])
        budget = paper_frames if frames is None else frames
        every = eval_every or _default_eval_every(preset, budget, overrides or {})
        tasks = n_eval_tasks or int(preset.get("eval_tasks", DEFAULT_EVAL_TASKS))
        for agent in agents:
            for seed in parse_seeds(seeds, [int(s) for s in preset["seeds"]]):
                for lr in lrs or preset["lr_grid"]:
                    specs.append(RunSpec(
                        env_id=env_id, agent=agent, seed=seed, lr=float(lr), frames=budget,
                        paper_frames=paper_frames, preset_name=str(preset.get("env_id", env_id)),
                        preset_hash=preset_hash(preset), eval_every=every, n_eval_tasks=tasks,
                        env_kwargs=dict(env_kwargs or {}), overrides=dict(overrides or {}),
                        stop_at_return=None if stop_at_return is None else float(stop_at_return),
                        patience=patience,
                    ))
    return specs
