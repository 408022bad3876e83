"""What a run's worker tells the driver, and the driver that records it: the only writer of the store.

A worker (a local pool process, a Ray task on any node, or the driver's own process for one worker) never
opens the database. It sends the driver one message per event of its run -- :class:`Started` (machine,
package versions, resolved configuration), :class:`Evaluated` (a point and the checkpoint it was taken
from), :class:`Stopped`, :class:`Failed` -- and waits for the reply, so it deletes its previous checkpoint
only once the store names the new one. The driver's :class:`Ledger` records each message in one store
transaction, exactly as a worker that held the store did before, so a store is the same whichever backend
filled it. Progress events (frames so far) are sent without a reply and are never stored.

With :class:`DriverCheckpoints` the checkpoint itself travels in the message (through Ray's object store)
and the driver keeps it beside the store, so a run retried on another node resumes from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from metarl_agents.leaderboard.store import ResultStore
from metarl_agents.training.atomic import write_bytes_atomically
from metarl_agents.training.errors import CheckpointError

RESTART_HINT = "run again with --restart-failed to discard its checkpoint and points and train it from scratch"


@dataclass(frozen=True)
class Started:
    """A worker begins (or, retried, begins again) a run; the reply is a :class:`Resume`."""

    run_key: str
    machine: dict[str, Any]
    versions: dict[str, str]
    config: dict[str, Any] | None


@dataclass(frozen=True)
class Resume:
    """Where a run starts: finished already (nothing to do), or from this checkpoint and past returns."""

    finished: bool
    checkpoint: str | None = None  # the file's name (in the checkpoint location)
    checkpoint_frames: int = 0
    wall_time_s: float = 0.0
    returns: tuple[float, ...] = ()  # the stored points' meta-episode returns, for the early-stopping streak
    payload: bytes | None = None  # the checkpoint's bytes when the driver keeps the checkpoints


@dataclass(frozen=True)
class Evaluated:
    """One evaluation point and the checkpoint taken with it (already written, or in ``payload``)."""

    run_key: str
    frames: int
    meta_episode_return: float
    episode_returns: list[float]
    wall_time_s: float
    checkpoint: str
    finished: bool = False
    payload: bytes | None = None
    machine_update: dict[str, Any] | None = None  # e.g. the run's CUDA memory footprint so far


@dataclass(frozen=True)
class Stopped:
    """The run's early-stopping rule was met: it is finished at its last recorded evaluation."""

    run_key: str
    wall_time_s: float


@dataclass(frozen=True)
class Failed:
    run_key: str
    reason: str
    wall_time_s: float | None = None


Message = Started | Evaluated | Stopped | Failed


def checkpoint_dir(db_path: str | Path) -> Path:
    """Checkpoints live beside the database: ``<db>.checkpoints/``."""
    db_path = Path(db_path)
    return db_path.with_name(db_path.name + ".checkpoints")


def remove_stale_files(directory: Path, run_key: str, keep: Path | None) -> None:
    """Delete this run's checkpoints other than ``keep`` and temporary files left by killed writes."""
    if not directory.is_dir():
        return
    for path in directory.iterdir():
        name = path.name
        ours = name.startswith(f"{run_key}.f") or name.startswith(f".{run_key}.f")
        if ours and path != keep and (name.endswith((".pt", ".zip", ".tmp")) or ".tmp." in name):
            path.unlink(missing_ok=True)


def checkpoint_file_name(run_key: str, frames: int) -> str:
    """A checkpoint's file name: the frame count in it, so an uncommitted newer file never replaces the one
    the store names."""
    return f"{run_key}.f{frames}.pt"


def stored_checkpoint(db_path: str | Path, run_key: str, stored: str | None) -> Path | None:
    """The checkpoint file a store row names, which must be one of this run's files in ``<db>.checkpoints/``.

    The store is only data: a row naming any other file (``../out/backup.pt``, an absolute path, another
    run's checkpoint) would otherwise be resumed from and then deleted when the next checkpoint replaces
    it. Such a row is a :class:`CheckpointError`, and nothing outside the checkpoint folder is touched.
    (With ``--checkpoints FOLDER`` the file of that name lives in FOLDER; the row is checked the same way.)
    """
    if not stored:
        return None
    directory = checkpoint_dir(db_path)
    candidate = Path(stored)
    name = candidate.name
    frames = name[len(run_key) + 2:-3] if name.startswith(f"{run_key}.f") and name.endswith(".pt") else ""
    inside = (not candidate.is_absolute() and candidate.parent == Path(directory.name)
              and frames.isdigit() and name == checkpoint_file_name(run_key, int(frames)))
    if not inside:
        raise CheckpointError(
            f"the store names the checkpoint {stored!r} for run {run_key}, which is not one of its files in "
            f"{directory}; it was neither read nor deleted")
    path = directory / name
    if path.is_symlink() or path.resolve().parent != directory.resolve():
        raise CheckpointError(f"checkpoint {path} of run {run_key} leads outside {directory}; it was neither read "
                              "nor deleted")
    return path


class Ledger:
    """The driver's side: records every message of every run in the store, one transaction each.

    ``keeps_checkpoints``: checkpoints arrive in the messages and are written to ``<db>.checkpoints/``
    (atomically, before the transaction that names them), and sent back to a worker that resumes.
    """

    def __init__(self, store: ResultStore, keeps_checkpoints: bool = False) -> None:
        self.store, self.keeps_checkpoints = store, keeps_checkpoints
        self.directory = checkpoint_dir(store.path)
        self._ids: dict[str, int] = {}

    def handle(self, message: Message) -> Resume | None:
        if isinstance(message, Started):
            return self._started(message)
        run_id = self._id(message.run_key)
        if isinstance(message, Evaluated):
            self._evaluated(run_id, message)
        elif isinstance(message, Stopped):
            self.store.mark_stopped(run_id, message.wall_time_s)
        elif isinstance(message, Failed):
            self.store.mark_failed(run_id, message.reason, message.wall_time_s)
        else:
            raise TypeError(f"unknown worker message {type(message).__name__}")
        return None

    def answer(self, message: Message) -> tuple[bool, Any]:
        """The reply a remote worker gets: (True, reply) once recorded, or (False, the error), which the worker
        raises as its own (e.g. a StoreError for a full disk, as when it wrote the store itself)."""
        try:
            return True, self.handle(message)
        except Exception as exc:  # noqa: BLE001 - sent to the worker, which reports it
            return False, exc

    def _id(self, run_key: str) -> int:
        if run_key not in self._ids:
            self._ids[run_key] = self.store.run_by_key(run_key).id
        return self._ids[run_key]

    def _started(self, message: Started) -> Resume:
        record = self.store.run_by_key(message.run_key)
        self._ids[message.run_key] = record.id
        if record.status == "finished":
            return Resume(finished=True)
        self.store.mark_running(record.id, message.machine, message.versions, message.config)
        try:
            checkpoint = stored_checkpoint(self.store.path, message.run_key, record.checkpoint_path)
        except Exception as exc:  # a CheckpointError: the run fails with it, and says how to start afresh
            exc.args = (f"{exc}; {RESTART_HINT}",)
            self.store.mark_failed(record.id, str(exc))
            raise
        name = None if checkpoint is None else checkpoint.name
        payload = None
        if self.keeps_checkpoints:
            keep = None if name is None else self.directory / name
            remove_stale_files(self.directory, message.run_key, keep)
            if keep is not None and keep.is_file():
                payload = keep.read_bytes()  # a missing file: the worker says so, as for a missing local one
        returns = tuple(point.meta_episode_return for point in self.store.evaluations(record.id))
        return Resume(False, name, record.checkpoint_frames or 0, record.wall_time_s, returns, payload)

    def _evaluated(self, run_id: int, message: Evaluated) -> None:
        if Path(message.checkpoint).name != message.checkpoint or message.checkpoint.startswith("."):
            raise ValueError(f"a worker sent the checkpoint name {message.checkpoint!r}; expected a plain file name")
        previous = None
        if self.keeps_checkpoints and message.payload is not None:
            stored = self.store.run_by_key(message.run_key).checkpoint_path  # ``<db>.checkpoints/<name>``
            previous = Path(stored).name if stored else None
            write_bytes_atomically(self.directory / message.checkpoint, message.payload)
        self.store.record_evaluation(run_id, message.frames, message.meta_episode_return, message.episode_returns,
                                     message.wall_time_s, checkpoint_path=f"{self.directory.name}/{message.checkpoint}",
                                     finished=message.finished, machine_update=message.machine_update)
        if previous is not None and previous != message.checkpoint:
            (self.directory / previous).unlink(missing_ok=True)


def describe(machine: dict[str, Any]) -> str:
    """Where a run ran, for log lines: the host, and the Ray node when there is one."""
    node = machine.get("ray_node_id")
    return machine.get("hostname", "?") + (f" (Ray node {node[:8]})" if node else "")


__all__ = ["Evaluated", "Failed", "Ledger", "Resume", "Started", "Stopped", "checkpoint_dir"]
