"""SQLite result store for leaderboard sweeps.

One database file holds every run of a sweep (one row each) and every evaluation point of those runs.
A sweep's driver is its only writer (workers send it their results), but a report or a merge may read or
write while a sweep runs, so the file is in WAL mode with a generous busy timeout and every write is one
short ``BEGIN IMMEDIATE`` transaction. A run's checkpoint file and its newest evaluation point are recorded in the same
transaction, which is what makes a killed sweep lose at most the evaluation in progress.

The store refuses to touch a file it did not create: before SQLite opens anything, the file's header
must say "SQLite" and carry the store's application id (so SQLite's own recovery never runs on another
program's journal or WAL); a store is only created where no file exists (built aside, then linked into
place). Every failure -- a foreign, damaged, read-only or immutable file, a full disk -- is a one-line
:class:`StoreError` naming the cause.
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import json
import math
import os
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from metarl_agents.leaderboard.grid import RunSpec

SCHEMA_VERSION = 5
# Older stores are upgraded in place on the first writable open: an upgrade only adds columns (nullable
# or with a default), so every stored run and evaluation stays as it was. Version 2 added early stopping,
# version 3 the agents' architecture (policy_kwargs) and each run's full configuration (resolved_config),
# version 4 the tasks of the last evaluations (n_final_eval_tasks; NULL: as many as the others),
# version 5 the training protocol (runs stored before it trained as "metarl").
_UPGRADES = {
    1: ("ALTER TABLE runs ADD COLUMN stop_at_return REAL", "ALTER TABLE runs ADD COLUMN patience INTEGER"),
    2: ("ALTER TABLE runs ADD COLUMN policy_kwargs TEXT NOT NULL DEFAULT '{}'", "ALTER TABLE runs ADD COLUMN resolved_config TEXT"),
    3: ("ALTER TABLE runs ADD COLUMN n_final_eval_tasks INTEGER",),
    4: ("ALTER TABLE runs ADD COLUMN protocol TEXT NOT NULL DEFAULT 'metarl'",),
}
APP_NAME = "metarl-leaderboard"
# Stamped into the SQLite header (PRAGMA application_id) so the file identifies itself: "MRLB".
APPLICATION_ID = 0x4D524C42
_SQLITE_MAGIC = b"SQLite format 3\x00"
RUN_STATUSES = ("pending", "running", "finished", "failed")
#: The largest integer a store column may hold (frame counts, seeds, ...): a trillion frames.
MAX_STORED_INT = 10**12

# The SQL type of each RunSpec field type: the run's identity columns are generated from RunSpec.
_SQL_TYPES = {"str": "TEXT NOT NULL", "int": "INTEGER NOT NULL", "float": "REAL NOT NULL",
              "dict[str, Any]": "TEXT NOT NULL DEFAULT '{}'", "float | None": "REAL", "int | None": "INTEGER"}
_SPEC_COLUMNS = ",\n    ".join(
    ["run_key TEXT NOT NULL UNIQUE"]
    + [f"{RunSpec.columns()[item.name]} {_SQL_TYPES[str(item.type)]}" for item in fields(RunSpec)]
    + ["reduced INTEGER NOT NULL"]
)
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS schema_version (
    app TEXT NOT NULL,
    version INTEGER NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    {_SPEC_COLUMNS},
    status TEXT NOT NULL CHECK (status IN ('pending', 'running', 'finished', 'failed')),
    frames_done INTEGER NOT NULL DEFAULT 0,
    checkpoint_path TEXT,
    checkpoint_frames INTEGER,
    wall_time_s REAL NOT NULL DEFAULT 0,
    versions TEXT NOT NULL DEFAULT '{{}}',
    machine TEXT NOT NULL DEFAULT '{{}}',
    resolved_config TEXT,
    error TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS evaluations (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    frames INTEGER NOT NULL,
    meta_episode_return REAL NOT NULL,
    episode_returns TEXT NOT NULL,
    wall_time_s REAL NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (run_id, frames)
);
CREATE INDEX IF NOT EXISTS runs_by_env ON runs (env_id, agent);
"""
_TABLES = {"schema_version", "runs", "evaluations"}


class StoreError(RuntimeError):
    """The database file is not a leaderboard store this version can use (it is left untouched)."""


@dataclass(frozen=True, kw_only=True)
class RunRecord(RunSpec):
    """One row of ``runs``: the run's :class:`RunSpec` and its progress; JSON columns decoded."""

    id: int
    status: str
    frames_done: int
    checkpoint_path: str | None
    checkpoint_frames: int | None
    wall_time_s: float
    versions: dict[str, str]
    machine: dict[str, Any]
    resolved_config: dict[str, Any] | None = None  # the full configuration of its latest session
    error: str | None

    @property
    def frames_budget(self) -> int:
        return self.frames

    @classmethod
    def from_row(cls, row: sqlite3.Row, store: str | Path = "the store") -> RunRecord:
        """The record of a ``runs`` row, every column checked against its field's type (a damaged or
        hand-edited store gives a :class:`StoreError` naming ``store``, the run and the column)."""
        present = set(row.keys())  # an older store opened read-only lacks the newer columns
        run = f"{row['run_key']!r}" if "run_key" in present else "?"
        values: dict[str, Any] = {}
        for item in fields(cls):
            column = item.metadata.get("column", item.name)
            if column in present:
                value = _checked_value(row[column], str(item.type), store, run, column)
            elif item.default_factory is not dataclasses.MISSING:
                value = item.default_factory()
            else:
                value = None if item.default is dataclasses.MISSING else item.default
            values[item.name] = value
        if values["status"] not in RUN_STATUSES:
            raise _bad_value(store, run, "status", values["status"], f"one of {', '.join(RUN_STATUSES)}")
        return cls(**values)


def _bad_value(store: str | Path, run: str, column: str, value: Any, expected: str) -> StoreError:
    shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
    return StoreError(f"the result database {store} holds a bad value in run {run}, column {column}: {shown} "
                      f"(expected {expected}); the store is damaged or was edited by hand: restore it from a backup "
                      "or pass another --db path")


#: A scalar column's type (as written in the dataclass) -> (whether a stored value is one, what one is).
_SCALAR_CHECKS = {
    "str": (lambda value: isinstance(value, str), "text"),
    "int": (lambda value: type(value) is int and 0 <= value <= MAX_STORED_INT, f"an integer in [0, {MAX_STORED_INT}]"),
    "float": (lambda value: type(value) in (int, float) and math.isfinite(value), "a finite number"),
}


def _checked_value(value: Any, kind: str, store: str | Path, run: str, column: str) -> Any:
    """``value`` of a column whose field has the type ``kind`` (as written in the dataclass), decoded where it
    is JSON; :class:`StoreError` if SQLite handed back something of another type or out of range."""
    optional = kind.endswith(" | None")
    kind = kind.removesuffix(" | None")
    if value is None:
        if optional:
            return None
        raise _bad_value(store, run, column, value, f"a value of type {kind}")
    if kind.startswith("dict"):
        decoded = _json(value, store, run, column)
        if not isinstance(decoded, dict):
            raise _bad_value(store, run, column, value, "a JSON object")
        return decoded
    is_valid, expected = _SCALAR_CHECKS[kind]
    if not is_valid(value):
        raise _bad_value(store, run, column, value, expected)
    return float(value) if kind == "float" else value


def _json(value: Any, store: str | Path, run: str, column: str) -> Any:
    if not isinstance(value, str):
        raise _bad_value(store, run, column, value, "JSON text")
    try:
        return json.loads(value, parse_constant=_no_constant)
    except ValueError:
        raise _bad_value(store, run, column, value, "valid JSON with finite numbers") from None


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a finite number")


@dataclass(frozen=True)
class EvalPoint:
    """One row of ``evaluations``: the evaluation after ``frames`` training frames."""

    run_id: int
    frames: int
    meta_episode_return: float
    episode_returns: list[float]
    wall_time_s: float


class ResultStore(AbstractContextManager):
    """Connection to one leaderboard database; safe to open from many processes at once.

    Open one store per process (SQLite connections must not cross ``fork``/``spawn``); a sweep's workers
    never open it (they send their results to the sweep's driver).
    """

    def __init__(self, path: str | Path, timeout: float = 120.0, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self._scratch: tempfile.TemporaryDirectory | None = None
        if not check_store_file(self.path, writable=not readonly):
            if readonly:
                raise StoreError(f"no result database at {self.path}")
            _create_store(self.path, timeout)
        try:
            self._conn = self._connect(timeout)
        except (OSError, sqlite3.Error) as exc:
            self._drop_scratch()
            raise StoreError(explain(exc, self.path, "open")) from exc
        self._conn.row_factory = sqlite3.Row
        try:
            self._conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
            _check_ours(self._conn, self.path)
            _check_sound(self._conn, self.path)
            if not readonly:
                _upgrade(self._conn)
        except sqlite3.Error as exc:
            self.close()
            raise StoreError(explain(exc, self.path, "read")) from exc
        except BaseException:
            self.close()
            raise

    def _connect(self, timeout: float) -> sqlite3.Connection:
        """A connection that, when read-only, writes no file at all.

        A store with no ``-wal`` beside it is complete in its one file and is read with ``immutable=1``
        (SQLite then creates no ``-wal`` or ``-shm``). One with a ``-wal`` and its ``-shm`` is in use (a sweep
        is writing it) or was left so by a killed one: read-only SQLite shares their index as any reader
        does. A ``-wal`` without ``-shm`` needs an index that SQLite would create beside the store, so the
        two files are read from a private copy instead.
        """
        connect = functools.partial(sqlite3.connect, timeout=timeout, isolation_level=None)
        if not self.readonly:
            return connect(self.path)
        wal, shm = _sidecar(self.path, "-wal"), _sidecar(self.path, "-shm")
        if not wal.exists():
            return connect(f"{_uri(self.path)}?mode=ro&immutable=1", uri=True)
        if shm.exists():
            return connect(f"{_uri(self.path)}?mode=ro", uri=True)
        self._scratch = tempfile.TemporaryDirectory(prefix="metarl-store-")
        copy = Path(self._scratch.name) / self.path.name
        shutil.copyfile(self.path, copy)
        shutil.copyfile(wal, _sidecar(copy, "-wal"))
        return connect(copy)

    def _drop_scratch(self) -> None:
        if self._scratch is not None:
            self._scratch.cleanup()
            self._scratch = None

    # -- lifecycle -------------------------------------------------------------------------------

    def close(self) -> None:
        self._conn.close()
        self._drop_scratch()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that takes the write lock up front, so it never fails half-way on a lock."""
        self._query("BEGIN IMMEDIATE", action="write")
        try:
            yield self._conn
            self._conn.execute("COMMIT")
        except BaseException as exc:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise StoreError(explain(exc, self.path, "write")) from exc
            raise

    def _query(self, sql: str, args: Sequence[Any] = (), action: str = "read") -> list[sqlite3.Row]:
        """Run one statement and fetch its rows; an SQLite error becomes a :class:`StoreError` naming ``action``."""
        try:
            return self._conn.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(explain(exc, self.path, action)) from exc

    # -- writes ----------------------------------------------------------------------------------

    def register_run(self, fields: dict[str, Any]) -> RunRecord:
        """Insert a run (status pending) unless its ``run_key`` exists; return the stored row either way.

        ``fields`` holds the identity and configuration columns (``RunSpec.store_fields``); dict values are
        stored as JSON. Machine and versions are filled in when the run starts.
        """
        now = time.time()
        row = {k: json.dumps(v, sort_keys=True) if isinstance(v, dict) else v for k, v in fields.items()}
        row.update(status="pending", created_at=now, updated_at=now)
        with self._transaction() as conn:
            _insert(conn, "runs", row, "ON CONFLICT (run_key) DO NOTHING")
        return self.run_by_key(fields["run_key"])

    def mark_running(self, run_id: int, machine: dict[str, Any], versions: dict[str, str],
                     resolved_config: dict[str, Any] | None = None) -> None:
        """Mark a run as started (again) here; the machine, versions and resolved configuration (device and
        threads included) are those of the latest session."""
        with self._transaction() as conn:
            _update_run(conn, run_id, status="running", error=None, machine=json.dumps(machine, sort_keys=True),
                        versions=json.dumps(versions, sort_keys=True),
                        resolved_config=None if resolved_config is None else json.dumps(resolved_config, sort_keys=True))

    def record_evaluation(self, run_id: int, frames: int, meta_episode_return: float,
                          episode_returns: Sequence[float], wall_time_s: float, checkpoint_path: str | None,
                          finished: bool = False, machine_update: dict[str, Any] | None = None) -> None:
        """Store one evaluation point together with the checkpoint it was taken from, atomically.

        The checkpoint file must already be on disk: if the process dies before this commits, the store
        still points at the previous checkpoint and its evaluations, which stay consistent. ``machine_update``
        adds keys to the run's machine record (e.g. its CUDA memory footprint) in the same transaction.
        """
        now = time.time()
        with self._transaction() as conn:
            _insert(conn, "evaluations", {"run_id": run_id, "frames": int(frames),
                                          "meta_episode_return": float(meta_episode_return),
                                          "episode_returns": json.dumps([float(x) for x in episode_returns]),
                                          "wall_time_s": float(wall_time_s), "created_at": now}, replace=True)
            _update_run(conn, run_id, frames_done=int(frames), checkpoint_path=checkpoint_path,
                        checkpoint_frames=int(frames) if checkpoint_path else None, wall_time_s=float(wall_time_s),
                        status="finished" if finished else "running", updated_at=now)
            if machine_update:
                conn.execute("UPDATE runs SET machine = json_patch(machine, ?) WHERE id = ?",
                             (json.dumps(machine_update, sort_keys=True), run_id))

    def mark_stopped(self, run_id: int, wall_time_s: float) -> None:
        """Finish a run early at its last recorded evaluation (its early-stopping rule was met)."""
        with self._transaction() as conn:
            _update_run(conn, run_id, status="finished", wall_time_s=float(wall_time_s))

    def mark_failed(self, run_id: int, error: str, wall_time_s: float | None = None) -> None:
        with self._transaction() as conn:
            kept = {} if wall_time_s is None else {"wall_time_s": wall_time_s}  # None: keep the stored time
            _update_run(conn, run_id, status="failed", error=error, **kept)

    def restart_run(self, run_id: int) -> None:
        """Forget a run's progress (points, checkpoint, frames, wall time) so that it trains from scratch."""
        with self._transaction() as conn:
            conn.execute("DELETE FROM evaluations WHERE run_id = ?", (run_id,))
            _update_run(conn, run_id, status="pending", frames_done=0, checkpoint_path=None, checkpoint_frames=None,
                        wall_time_s=0, error=None)

    def import_runs(self, runs: Sequence[tuple[dict[str, Any], Sequence[dict[str, Any]]]]) -> None:
        """Add runs copied from another store (:meth:`raw_run` rows), all in one transaction.

        Each replaces the run with the same ``run_key``, if any, and that run's evaluation points. Checkpoints
        never travel between stores, so ``checkpoint_path`` and ``checkpoint_frames`` are cleared; every other
        column is kept as it was. A row of an older schema lacks the newer columns, which then take their
        defaults, exactly as :func:`_upgrade` would have given them.
        """
        with self._transaction() as conn:
            known = {table: {column[1] for column in conn.execute(f"PRAGMA table_info({table})")}
                     for table in ("runs", "evaluations")}
            for row, points in runs:
                row = {**row, "checkpoint_path": None, "checkpoint_frames": None}
                row.pop("id", None)
                # Column names are spliced into the SQL below: only this store's own columns may pass.
                unknown = sorted((set(row) - known["runs"]) | ({k for p in points for k in p} - known["evaluations"]))
                if unknown:
                    raise StoreError(f"run {row.get('run_key')!r} has columns this store lacks: {', '.join(unknown)}")
                old = conn.execute("SELECT id FROM runs WHERE run_key = ?", (row["run_key"],)).fetchone()
                if old is not None:
                    conn.execute("DELETE FROM evaluations WHERE run_id = ?", (old[0],))
                    conn.execute("DELETE FROM runs WHERE id = ?", (old[0],))
                run_id = _insert(conn, "runs", row).lastrowid
                for point in points:
                    _insert(conn, "evaluations", {**point, "run_id": run_id})

    # -- reads -----------------------------------------------------------------------------------

    @contextmanager
    def snapshot(self) -> Iterator[ResultStore]:
        """Read a consistent state: every read inside sees the store as it was at the first one, even while a
        sweep keeps writing to it (one read transaction)."""
        self._query("BEGIN")
        try:
            yield self
        finally:
            if self._conn.in_transaction:
                self._query("COMMIT")

    def raw_run(self, run_id: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """A run's row and its evaluation rows exactly as stored (JSON undecoded), to copy them to another store."""
        run = self._query("SELECT * FROM runs WHERE id = ?", (run_id,))
        points = self._query("SELECT * FROM evaluations WHERE run_id = ? ORDER BY frames", (run_id,))
        return dict(run[0]), [dict(point) for point in points]

    def run_by_key(self, run_key: str) -> RunRecord:
        rows = self._query("SELECT * FROM runs WHERE run_key = ?", (run_key,))
        if not rows:
            raise KeyError(f"no run with key {run_key!r} in {self.path}")
        return RunRecord.from_row(rows[0], self.path)

    def runs(self, env_id: str | None = None, status: str | None = None) -> list[RunRecord]:
        """Runs in insertion order, optionally filtered by environment and status."""
        query, args = "SELECT * FROM runs WHERE 1 = 1", []
        if env_id is not None:
            query, args = query + " AND env_id = ?", [*args, env_id]
        if status is not None:
            if status not in RUN_STATUSES:
                raise ValueError(f"unknown run status {status!r}; allowed: {', '.join(RUN_STATUSES)}")
            query, args = query + " AND status = ?", [*args, status]
        return [RunRecord.from_row(row, self.path) for row in self._query(query + " ORDER BY id", args)]

    def evaluations(self, run_id: int) -> list[EvalPoint]:
        """Evaluation points of one run, by increasing frame count."""
        rows = self._query("SELECT run_id, frames, meta_episode_return, episode_returns, wall_time_s FROM evaluations "
                           "WHERE run_id = ? ORDER BY frames", (run_id,))
        return [self._point(row) for row in rows]

    def _point(self, row: sqlite3.Row) -> EvalPoint:
        """An evaluation row checked value by value (a damaged store names the run and column)."""
        run = f"id {row[0]} at {row[1]!r} frames"
        frames = _checked_value(row[1], "int", self.path, run, "evaluations.frames")
        meta_return = _checked_value(row[2], "float", self.path, run, "evaluations.meta_episode_return")
        returns = _json(row[3], self.path, run, "evaluations.episode_returns")
        if not isinstance(returns, list) or not all(type(x) in (int, float) and math.isfinite(x) for x in returns):
            raise _bad_value(self.path, run, "evaluations.episode_returns", row[3], "a JSON list of finite numbers")
        wall_time = _checked_value(row[4], "float", self.path, run, "evaluations.wall_time_s")
        return EvalPoint(row[0], frames, meta_return, [float(x) for x in returns], wall_time)


def check_store_file(path: Path, writable: bool = True) -> bool:
    """False if no file is at ``path``; True if one is and its header says it is a store; else StoreError.

    Reads the file's first 100 bytes without SQLite: opening a foreign database, even read-only, can make
    SQLite recover its hot journal or WAL and so rewrite it. A store is only ever created where no file
    exists, so an empty file or another application's (even empty) database is refused too.
    """
    if path.is_dir():
        raise StoreError(f"{path} is a directory, not a result database file")
    if not path.exists():
        leftovers = [p.name for p in (_sidecar(path, "-wal"), _sidecar(path, "-journal")) if p.exists()]
        # Another process may have created the store and opened it (its WAL) since the check above.
        if leftovers and not path.exists():
            raise StoreError(f"{path} does not exist but {', '.join(leftovers)} beside it does (another "
                             "program's database?); refusing to create a store there. Pass another --db path.")
        if not path.exists():
            return False
    try:
        with path.open("rb") as handle:
            header = handle.read(100)
    except OSError as exc:
        raise StoreError(explain(exc, path, "read")) from exc
    if not header:
        raise StoreError(f"{path} is an empty file that metarl did not write; refusing to turn it into a store. "
                         "Delete it or pass another --db path.")
    if header[:16] != _SQLITE_MAGIC:
        raise StoreError(f"{path} is not an SQLite database (unexpected file header); refusing to overwrite it. "
                         "Pass another --db path.")
    app_id = int.from_bytes(header[68:72], "big") if len(header) >= 72 else 0
    if app_id != APPLICATION_ID:
        raise StoreError(f"{path} is an SQLite database but not a metarl leaderboard store (application_id "
                         f"{app_id:#x}, a store has {APPLICATION_ID:#x}); refusing to open it. "
                         "Pass another --db path.")
    journal = _sidecar(path, "-journal")
    if journal.exists():
        raise StoreError(f"{path} has a rollback journal ({journal.name}) beside it, which a metarl store (WAL mode) "
                         "never has: another program's database with an unfinished transaction? Refusing to open it.")
    if _sidecar(path, "-wal").exists() and header[18:20] != b"\x02\x02":
        raise StoreError(f"{path} has a -wal file beside it but its header says it is not in WAL mode, as every "
                         "metarl store is; refusing to open it. Pass another --db path.")
    _probe(path)
    if writable:
        for target, what in ((path, "file"), (path.parent, "folder")):
            if not os.access(target, os.W_OK):
                raise StoreError(f"the result database {what} {target} is not writable (read-only or immutable); "
                                 "make it writable or pass another --db path")
    return True


def _update_run(conn: sqlite3.Connection, run_id: int, **columns: Any) -> None:
    """Set ``columns`` (names of this store's own columns) of one run, and its ``updated_at`` unless given."""
    columns.setdefault("updated_at", time.time())
    conn.execute(f"UPDATE runs SET {', '.join(f'{name} = ?' for name in columns)} WHERE id = ?", (*columns.values(), run_id))


def _insert(conn: sqlite3.Connection, table: str, row: dict[str, Any], tail: str = "",
            replace: bool = False) -> sqlite3.Cursor:
    """Insert ``row`` (column -> value; the columns are this store's own) into ``table`` (``replace``: in place
    of the row with the same primary key)."""
    verb = "INSERT OR REPLACE" if replace else "INSERT"
    return conn.execute(f"{verb} INTO {table} ({', '.join(row)}) VALUES ({', '.join('?' * len(row))}) {tail}",
                        tuple(row.values()))


def _sidecar(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)


def _uri(path: Path) -> str:
    return path.absolute().as_uri()


def _probe(path: Path, attempts: int = 3) -> None:
    """:class:`StoreError` unless the database file itself holds a store's tables (and, without a -wal, every
    page is sound); SQLite writes nothing.

    The file is read with ``immutable=1``, which reads only the main file and ignores (never recovers) a
    ``-wal``: so a foreign database that happens to carry our application id is refused before any
    writable connection could fold its WAL into it. A store is created complete in its main file, so its
    tables are always there. A sweep checkpointing its WAL while this reads can tear the read, so that the
    tables or pages look damaged: the read is retried, and only damage found on every attempt is reported.
    """
    for attempt in range(attempts):
        try:
            conn = sqlite3.connect(f"{_uri(path)}?mode=ro&immutable=1", uri=True, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(explain(exc, path, "open")) from exc
        try:
            _check_ours(conn, path, tables_only=True)
            # Without a -wal the file is the whole store: its pages can be checked before anything is written.
            if not _sidecar(path, "-wal").exists():
                _check_sound(conn, path)
            return
        except (sqlite3.Error, StoreError) as exc:
            # A torn read looks like damage or a foreign file; what is really on disk is found again.
            if attempt == attempts - 1:
                if isinstance(exc, StoreError):
                    raise
                raise StoreError(explain(exc, path, "read")) from exc
            time.sleep(0.05)
        finally:
            conn.close()


def _check_sound(conn: sqlite3.Connection, path: Path) -> None:
    """:class:`StoreError` naming the damage unless SQLite's quick check finds every page of the store sound.

    A damaged page can otherwise read as fewer rows (a merge that writes nothing, silently) or as values of
    the wrong type; the check reads the whole file, a fraction of a second for a store of many runs.
    """
    rows = [" ".join(str(row[0]).split()) for row in conn.execute("PRAGMA quick_check(2)").fetchall()]
    if rows != ["ok"]:
        raise StoreError(f"the result database {path} is damaged (SQLite quick_check: {'; '.join(rows)}); restore "
                         "it from a backup or pass another --db path")


def _create_store(path: Path, timeout: float) -> None:
    """Build a complete store in a temporary file and link it into place, so no half-made store is ever seen
    and, of several processes creating the same store at once, exactly one wins (the others open it)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(explain(exc, path, "create")) from exc
    temporary = path.with_name(f".{path.name}.{os.getpid()}.creating")
    try:
        conn = sqlite3.connect(temporary, timeout=timeout, isolation_level=None)
        try:
            # The identity goes into the file header first (rollback journal: written to the file itself),
            # so the header says "store" before WAL mode can hold anything back in a -wal file.
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("BEGIN IMMEDIATE")
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute("INSERT INTO schema_version (app, version, created_at) VALUES (?, ?, ?)",
                         (APP_NAME, SCHEMA_VERSION, time.time()))
            conn.execute("COMMIT")
        finally:
            conn.close()  # checkpoints the WAL into the file and removes it
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass  # another process created the store first; use theirs
    except (OSError, sqlite3.Error) as exc:
        raise StoreError(explain(exc, path, "create")) from exc
    finally:
        for suffix in ("", "-wal", "-shm", "-journal"):
            _sidecar(temporary, suffix).unlink(missing_ok=True)
    check_store_file(path)


def _check_ours(conn: sqlite3.Connection, path: Path, tables_only: bool = False) -> None:
    """:class:`StoreError` saying why the schema is not ours, if it is not (``tables_only``: the tables and the
    app name, not the version, which an upgrade in a -wal may have changed)."""
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if not _TABLES <= tables:
        raise StoreError(f"{path} is an SQLite database but not a metarl leaderboard store "
                         f"(tables: {sorted(tables) or 'none'}); refusing to modify it. Pass another --db path.")
    if tables_only:
        apps = {row[0] for row in conn.execute("SELECT app FROM schema_version")}
        if not apps <= {APP_NAME}:
            raise StoreError(f"{path} is a database of {', '.join(sorted(map(str, apps)))}, not a metarl leaderboard "
                             "store; refusing to modify it. Pass another --db path.")
        return
    row = conn.execute("SELECT app, version FROM schema_version").fetchone()
    if row is None or row[0] != APP_NAME or (row[1] != SCHEMA_VERSION and row[1] not in _UPGRADES):
        found = "no version row" if row is None else f"{row[0]} schema version {row[1]}"
        raise StoreError(f"{path} has {found}, this metarl reads {APP_NAME} schema version {SCHEMA_VERSION}; "
                         "refusing to modify it.")


def _upgrade(conn: sqlite3.Connection) -> None:
    """Bring an older store of ours to the current schema, in one transaction (all or nothing)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = conn.execute("SELECT version FROM schema_version").fetchone()[0]
        present = {row[1] for row in conn.execute("PRAGMA table_info(runs)")}
        while version != SCHEMA_VERSION:
            for statement in _UPGRADES[version]:
                if statement.split("ADD COLUMN ")[-1].split()[0] not in present:  # a column once, however reached
                    conn.execute(statement)
            version += 1
        conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def explain(exc: BaseException, path: Path, action: str) -> str:
    """One line naming the real cause of a failed database operation."""
    text = str(exc)
    lowered = text.lower()
    code = getattr(exc, "errno", None)
    no_space = code == errno.ENOSPC or "full" in lowered or (
        "disk i/o error" in lowered and _free_bytes(path) < 1 << 20)
    if no_space:
        return f"cannot {action} the result database {path}: no space left on the device holding it"
    if code in (errno.EACCES, errno.EPERM, errno.EROFS) or "readonly" in lowered or "read-only" in lowered:
        return (f"cannot {action} the result database {path}: it or its folder is read-only or immutable "
                f"({text}); make it writable or pass another --db path")
    if "malformed" in lowered or "not a database" in lowered or "corrupt" in lowered:
        return (f"the result database {path} is damaged (SQLite: {text}); restore it from a backup or pass "
                "another --db path")
    if "locked" in lowered or "busy" in lowered:
        return f"the result database {path} stayed locked by another process ({text})"
    return f"cannot {action} the result database {path}: {text}"


def _free_bytes(path: Path) -> int:
    try:
        return shutil.disk_usage(path.parent if path.parent.exists() else ".").free
    except OSError:
        return 1 << 62
