"""A result store's runs grouped for the leaderboard: one :class:`Group` per environment and configuration,
one :class:`Entry` per (agent, lr) with its seeds' aligned curves and their bootstrap statistics.

Kept apart from the report writer so that the claims and the HTML page read groups without importing the
module that imports them.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from metarl_agents.leaderboard.grid import RunSpec, budget_label
from metarl_agents.leaderboard.stats import bootstrap_ci
from metarl_agents.leaderboard.store import ResultStore, RunRecord
from metarl_agents.training.config import FINAL_EVALUATIONS

#: One run's stored curve: its record, evaluation frames and returns (before any carrying forward).
RawRun = tuple[RunRecord, np.ndarray, np.ndarray]


@dataclass
class Entry:
    """One (agent, lr) of a group: its finished seeds and their statistics."""

    agent: str
    lr: float
    seeds: list[int]
    frames: np.ndarray  # common evaluation frames
    curves: np.ndarray  # [seeds, points]
    carried: np.ndarray  # [seeds, points] True where an early-stopped seed's last value is carried forward
    stopped: dict[int, int] = field(default_factory=dict)  # seed -> frames of its last real evaluation
    raw: list[RawRun] = field(default_factory=list)  # the seeds' runs as stored, in the order of ``seeds``

    def stopped_text(self) -> str:
        return ", ".join(f"{seed} at {frames:,}" for seed, frames in sorted(self.stopped.items())) or "—"

    @cached_property
    def final(self) -> tuple[float, float, float]:
        """(mean, low, high) of the last evaluation's return."""
        return tuple(float(x) for x in bootstrap_ci(self.curves[:, -1]))

    @cached_property
    def over_run(self) -> tuple[float, float, float]:
        """(mean, low, high) of each seed's mean over all its evaluation points."""
        return tuple(float(x) for x in bootstrap_ci(self.curves.mean(axis=1)))

    @cached_property
    def last_means(self) -> np.ndarray:
        """Each seed's mean over its last ``FINAL_EVALUATIONS`` real evaluations (never carried values): a
        steadier final statistic than the last evaluation alone."""
        if self.raw:
            return np.array([returns[-FINAL_EVALUATIONS:].mean() for _, _, returns in self.raw])
        return self.curves[:, -FINAL_EVALUATIONS:].mean(axis=1)

    @property
    def records(self) -> list[RunRecord]:
        return [record for record, _, _ in self.raw]

    def trained_to_budget(self) -> Entry | None:
        """This entry without its early-stopped seeds (None if every seed stopped early): a run stopped once it
        reached a return, its last value carried forward, is selected on its outcome."""
        kept = [run for run in self.raw if run[0].seed not in self.stopped]
        if not kept:
            return None
        if len(kept) == len(self.raw):
            return self
        return build_entry(self.agent, self.lr, kept, self.raw[0][0].eval_every, self.raw[0][0].frames)


@dataclass
class Group:
    """All runs of one environment under one configuration: every :class:`RunSpec` field but those in
    ``grid.UNGROUPED_FIELDS`` is shared (:meth:`RunSpec.group_key`); ``config`` is one of its runs' specs."""

    config: RunSpec
    runs: list[RunRecord] = field(default_factory=list)
    entries: list[Entry] = field(default_factory=list)
    slug: str = ""

    env_id = property(lambda self: self.config.env_id)
    frames = property(lambda self: self.config.frames)
    paper_frames = property(lambda self: self.config.paper_frames)
    eval_every = property(lambda self: self.config.eval_every)
    n_eval_tasks = property(lambda self: self.config.n_eval_tasks)
    env_kwargs = property(lambda self: self.config.env_kwargs)
    overrides = property(lambda self: self.config.overrides)
    policy_kwargs = property(lambda self: self.config.policy_kwargs)
    protocol = property(lambda self: self.config.protocol)
    reduced = property(lambda self: self.config.reduced)

    def label(self, quote: Callable[[str], str] = str) -> str:
        """The environment id with the group's env kwargs, e.g. "MetaTMaze-v0 (length=10)": the kwargs change
        the task, so a title without them would name a different environment. ``quote`` is applied to each
        stored string (id, kwarg names and values) and not to the punctuation around them."""
        if not self.env_kwargs:
            return quote(self.env_id)
        kwargs = ", ".join(f"{quote(str(key))}={quote(json.dumps(value))}" for key, value in sorted(self.env_kwargs.items()))
        return f"{quote(self.env_id)} ({kwargs})"

    def best_entries(self) -> list[Entry]:
        """Each agent at the learning rate with the highest mean-over-run return, among its learning rates
        with the most finished seeds.

        A sweep fills one learning rate after another, so a second rate often has one seed while the first
        has three; one lucky seed must not displace the complete evidence (and leave every claim about the
        agent short of seeds) until its own seeds are in.
        """
        best: dict[str, Entry] = {}
        for entry in self.entries:
            held = best.get(entry.agent)
            if held is None or (len(entry.seeds), entry.over_run[0]) > (len(held.seeds), held.over_run[0]):
                best[entry.agent] = entry
        return list(best.values())

    def ranked(self, statistic: str) -> list[Entry]:
        """Best entries by ``statistic`` ("final" or "over_run"), ties broken by the other one.

        Early-stopped runs make ties common: every agent that solves ends at the carried maximum, and then
        the agent that got there sooner (higher mean over the run) ranks first.
        """
        other = "over_run" if statistic == "final" else "final"
        return sorted(self.best_entries(), key=lambda e: (-getattr(e, statistic)[0], -getattr(e, other)[0]))

    def budget_text(self) -> str:
        text = f"{self.frames:,} frames per run"
        if self.reduced:
            text += f" — **REDUCED BUDGET** (paper: {self.paper_frames:,})"
        elif self.frames != self.paper_frames:
            text += f" (paper: {self.paper_frames:,})"
        return text

    def machines(self) -> list[str]:
        """The machines the group's runs trained on (runs not started yet have none)."""
        return sorted({f"{r.machine.get('hostname')}: {r.machine.get('cpu')}, {r.machine.get('cpu_count')} cores, "
                       f"{r.machine.get('platform')}" for r in self.runs if r.machine})

    def stopping_rules(self) -> list[tuple[float, int]]:
        """The early-stopping rules of the group's runs (a stopped run's curve is carried to the budget, so
        runs with and without a rule stay comparable and share the group)."""
        return sorted({(r.stop_at_return, r.patience) for r in self.runs if r.patience is not None})

    def versions(self) -> list[str]:
        return sorted({", ".join(f"{k} {v}" for k, v in sorted(r.versions.items())) for r in self.runs if r.versions})


def load_groups(store: ResultStore, envs: Sequence[str] | None = None) -> list[Group]:
    """Group every run of the store; statistics use finished runs only."""
    groups: dict[str, Group] = {}
    for run in store.runs():
        if not envs or run.env_id in envs:
            groups.setdefault(run.group_key(), Group(run.spec())).runs.append(run)
    for group in groups.values():
        curves = defaultdict(list)
        for run in group.runs:
            points = store.evaluations(run.id)
            if run.status == "finished" and points:
                curves[run.agent, run.learning_rate].append((run, np.array([p.frames for p in points]),
                                                  np.array([p.meta_episode_return for p in points])))
        group.entries = [build_entry(agent, lr, runs, group.eval_every, group.frames)
                         for (agent, lr), runs in sorted(curves.items())]
    _assign_slugs(list(groups.values()))
    return sorted(groups.values(), key=lambda g: (g.env_id, -g.frames))


def build_entry(agent: str, lr: float, runs: Sequence[RawRun], every: int, budget: int) -> Entry:
    """Align the seeds' curves on the evaluation frames of the shortest one (they normally coincide).

    A seed that stopped early (its last evaluation is before the budget) has its last value carried forward
    to the evaluation frames it skipped, so that its curve and its final return compare with full runs;
    those points are flagged as carried.
    """
    runs = sorted(runs, key=lambda run: run[0].seed)
    stopped = {run.seed: int(f[-1]) for run, f, _ in runs if f[-1] < budget}
    extended = [(run.seed, *_carry_forward(f, r, every, budget)) for run, f, r in runs]
    frames = min((f for _, f, _ in extended), key=len)
    curves = np.stack([np.interp(frames, f, r) for _, f, r in extended])
    carried = np.stack([frames > stopped.get(seed, np.inf) for seed, _, _ in extended])
    return Entry(agent, lr, [run.seed for run, _, _ in runs], frames, curves, carried, stopped, list(runs))


def _carry_forward(frames: np.ndarray, returns: np.ndarray, every: int, budget: int) -> tuple[np.ndarray, np.ndarray]:
    """The curve continued at its last value on the remaining multiples of ``every`` and at the budget."""
    if frames[-1] >= budget:
        return frames, returns
    extra = np.array([*range((int(frames[-1]) // every + 1) * every, budget, every), budget])
    return np.concatenate([frames, extra]), np.concatenate([returns, np.full(len(extra), returns[-1])])


def _assign_slugs(groups: list[Group]) -> None:
    """Filename-safe names that carry the budget label and, for runs trained as the reference trained, the
    paper protocol; configurations beyond the first of a name get a suffix."""
    seen: dict[str, int] = defaultdict(int)
    for group in groups:
        protocol = "__paper-protocol" if group.protocol == "paper" else ""
        base = _file_safe(f"{group.env_id}__{budget_label(group.frames, group.paper_frames)}{protocol}")
        seen[base] += 1
        group.slug = base if seen[base] == 1 else f"{base}__config{seen[base]}"


def _file_safe(text: str) -> str:
    """A file name made from stored values that cannot leave the output folder or hide itself."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", text).lstrip(".")
    return name or "_"
