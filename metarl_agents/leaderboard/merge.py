"""Merge result stores trained on different machines into one.

A sweep on a second machine writes its own store; copied back here, its finished runs are added to ours
with :func:`merge_stores` (``metarl-bench merge --db OURS THEIRS``). Finished results are never
overwritten: where both stores finished a run differently, ours is kept and the clash reported. A run only
the other machine finished replaces our run of the same key only if ours has not started, or, with
``replace_unfinished``, if ours is unfinished. Checkpoints never travel, so unfinished runs of a source
stay behind (they resume on the machine that holds their checkpoint) and imported runs have none.
``envs`` and ``agents`` take a part of the sources only: say, the runs of the three agents a claim needs
from a store that also holds a study's variants.

The destination is taken under its sweep lock and changed in one transaction; sources are only read.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from metarl_agents.leaderboard.lock import SweepLock
from metarl_agents.leaderboard.store import EvalPoint, ResultStore, RunRecord, check_store_file


@dataclass
class SourceSummary:
    """What merging one source did, run key by run key (the values say why)."""

    source: Path
    imported: list[str] = field(default_factory=list)
    replaced: dict[str, str] = field(default_factory=dict)
    identical: list[str] = field(default_factory=list)
    conflicts: dict[str, str] = field(default_factory=dict)
    unfinished: dict[str, str] = field(default_factory=dict)

    def lines(self) -> list[str]:
        """A headline with the counts, then one line per run that was not simply imported or identical."""
        lines = [f"{self.source}: {len(self.imported)} imported, {len(self.replaced)} replaced, "
                 f"{len(self.identical)} identical, {len(self.conflicts)} conflicts, "
                 f"{len(self.unfinished)} unfinished skipped"]
        lines += [f"  imported {key}" for key in self.imported]
        lines += [f"  replaced {key}: {why}" for key, why in self.replaced.items()]
        lines += [f"  CONFLICT {key}: {why}" for key, why in self.conflicts.items()]
        lines += [f"  skipped {key}: {why}" for key, why in self.unfinished.items()]
        return lines


@dataclass
class MergeSummary:
    destination: Path
    sources: list[SourceSummary]

    @property
    def conflicts(self) -> int:
        return sum(len(source.conflicts) for source in self.sources)

    @property
    def written(self) -> int:
        return sum(len(source.imported) + len(source.replaced) for source in self.sources)


@dataclass
class _Run:
    """A run of a store: its decoded record, its evaluation points and its rows as stored."""

    record: RunRecord
    points: list[EvalPoint]
    raw: tuple[dict[str, Any], list[dict[str, Any]]]

    @property
    def key(self) -> str:
        """The stored run key (``record.run_key`` is recomputed from the stored configuration)."""
        return self.raw[0]["run_key"]

    @property
    def results(self) -> list[tuple[int, float, list[float]]]:
        """What the run measured (evaluation wall times differ between machines for the same results)."""
        return [(p.frames, p.meta_episode_return, p.episode_returns) for p in self.points]

    @property
    def started(self) -> bool:
        return bool(self.record.frames_done or self.points or self.record.checkpoint_path)


def merge_stores(destination: str | Path, sources: Sequence[str | Path], replace_unfinished: bool = False,
                 envs: Sequence[str] | None = None, agents: Sequence[str] | None = None) -> MergeSummary:
    """Add the finished runs of every store in ``sources`` to the store at ``destination``.

    Every source is read completely (and refused if it is not a readable result store) before the
    destination is opened, which is created if missing and then changed in one transaction. Sources are
    merged in order, so a run two sources finished is imported from the first and compared with the second.
    With ``envs`` or ``agents``, only the source runs of those environments and agents are considered; a name
    that no source run has is refused (a misspelt selection would otherwise merge nothing, silently).
    Raises :class:`~metarl_agents.leaderboard.lock.StoreInUse` while a sweep uses the destination.
    """
    destination = Path(destination)
    if not sources:
        raise ValueError("merge needs at least one source store")
    loaded = [(Path(path), _read_source(Path(path), destination)) for path in sources]
    loaded = _select(loaded, envs, agents)
    check_store_file(destination)  # refuse a foreign file before the lock file is written beside it
    # The lock keeps sweeps (and other merges) out from reading our runs to writing the imports.
    with SweepLock(destination), ResultStore(destination) as store:
        ours = {run.key: run for run in _read(store)}
        summaries, imports = [], {}
        for path, theirs in loaded:
            summary = SourceSummary(path)
            for run in theirs:
                key = run.key
                if run.record.status != "finished":
                    summary.unfinished[key] = (
                        f"{run.record.status} at {run.record.frames_done} of {run.record.frames_budget} frames; "
                        + ("it resumes where its checkpoint is" if run.started else "not started there"))
                    continue
                action, why = _decide(ours.get(key), run, replace_unfinished)
                if action == "import":
                    summary.imported.append(key)
                elif action == "replace":
                    summary.replaced[key] = why
                elif action == "identical":
                    summary.identical.append(key)
                else:
                    summary.conflicts[key] = why
                if action in ("import", "replace"):
                    ours[key] = run
                    imports[key] = run.raw
            summaries.append(summary)
        store.import_runs(list(imports.values()))
    return MergeSummary(destination, summaries)


def _read_source(path: Path, destination: Path) -> list[_Run]:
    """Every run of a source store, read read-only in one consistent snapshot."""
    if not path.exists():
        raise FileNotFoundError(f"source store {path} does not exist")
    if destination.exists() and os.path.samefile(path, destination):
        raise ValueError(f"source {path} is the destination store itself")
    # Read-only: an older schema is read as is, its missing columns taking the defaults an upgrade would give.
    with ResultStore(path, readonly=True) as store:
        return _read(store)


def _select(loaded: list[tuple[Path, list[_Run]]], envs: Sequence[str] | None,
            agents: Sequence[str] | None) -> list[tuple[Path, list[_Run]]]:
    """The source runs of the chosen environments and agents (all of them where a choice is None)."""
    for field_name, chosen in (("env_id", envs), ("agent", agents)):
        if chosen is None:
            continue
        held = sorted({getattr(run.record, field_name) for _, runs in loaded for run in runs})
        unknown = [name for name in chosen if name not in held]
        if unknown:
            label = "environment" if field_name == "env_id" else "agent"
            raise ValueError(f"no source run has {label} {', '.join(map(repr, unknown))}; "
                             f"the sources hold: {', '.join(held) or 'no runs'}")
        loaded = [(path, [run for run in runs if getattr(run.record, field_name) in chosen]) for path, runs in loaded]
    return loaded


def _read(store: ResultStore) -> list[_Run]:
    with store.snapshot():
        return [_Run(record, store.evaluations(record.id), store.raw_run(record.id)) for record in store.runs()]


def _decide(ours: _Run | None, theirs: _Run, replace_unfinished: bool) -> tuple[str, str]:
    """(import | replace | identical | conflict, why) for a finished source run against ours of the same key."""
    if theirs.record.run_key != theirs.key:
        return "conflict", f"its stored configuration gives another run key ({theirs.record.run_key}); not imported"
    if ours is None:
        return "import", ""
    differing = [name for name in RunRecord.columns()
                 if getattr(ours.record, name) != getattr(theirs.record, name)]
    if differing:
        return "conflict", f"the stored configuration differs ({', '.join(differing)}); kept ours"
    if ours.record.status == "finished":
        if ours.results == theirs.results:
            return "identical", ""
        return "conflict", "both stores finished this run with different evaluation points; kept ours"
    if not ours.started:
        return "replace", f"ours was {ours.record.status} and had not started"
    progress = f"ours is {ours.record.status} at {ours.record.frames_done} frames"
    if not replace_unfinished:
        return "conflict", f"{progress}; kept ours (--replace-unfinished takes the finished run instead)"
    checkpoint = ours.record.checkpoint_path
    note = f"; its checkpoint {checkpoint} stays on disk but is no longer used" if checkpoint else ""
    return "replace", f"{progress} (--replace-unfinished){note}"
