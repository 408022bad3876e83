"""Where a run's checkpoints live, seen from the worker that trains it (``--checkpoints``).

- beside the store (the default): ``<db>.checkpoints/``, which the workers of one machine (or of nodes that
  mount the store's folder at the same path) reach;
- a folder every node reaches (a shared file system mounted at the same path everywhere);
- ``driver``: the worker sends each checkpoint to the driver with its evaluation (with Ray, through the
  object store) and the driver keeps it beside the store, and sends it back to whichever node resumes the
  run. Nothing but the driver's machine needs a disk in common with the store.

Whatever the location, the store names a checkpoint ``<db>.checkpoints/<run>.f<frames>.pt``: the file's
name is its identity, and the location says where a file of that name is.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from metarl_agents.leaderboard.messages import checkpoint_dir, checkpoint_file_name, remove_stale_files

DRIVER = "driver"


class CheckpointFolder:
    """Checkpoints in ``directory``, written and read by the worker itself."""

    sends_payload = False

    def __init__(self, directory: str) -> None:
        self.directory = directory

    def path(self, name: str) -> Path:
        return Path(self.directory) / name

    def prepare(self, run_key: str, name: str | None, payload: bytes | None) -> Path | None:
        """The checkpoint to resume from (None: start afresh), after deleting this run's other files here."""
        keep = None if name is None else self.path(name)
        remove_stale_files(Path(self.directory), run_key, keep)
        return keep

    def write(self, trainer: Any, model: Any, spec: Any, frames: int, final: bool) -> tuple[Path, bytes | None]:
        """Write the checkpoint atomically (the trainer's writer); returns its path and what to send."""
        path = self.path(checkpoint_file_name(spec.run_key, frames))
        path.parent.mkdir(parents=True, exist_ok=True)
        trainer.save(model, spec, path, final=final)
        return path, None

    def close(self) -> None:
        pass

    def describe(self) -> str:
        return str(self.directory)


class DriverCheckpoints(CheckpointFolder):
    """Checkpoints written to a private temporary folder, sent to the driver, received back on resume."""

    sends_payload = True

    def __init__(self) -> None:
        super().__init__("")

    def path(self, name: str) -> Path:
        if not self.directory:  # made on first use
            self.directory = tempfile.mkdtemp(prefix="metarl-checkpoints-")
        return super().path(name)

    def prepare(self, run_key: str, name: str | None, payload: bytes | None) -> Path | None:
        if name is None:
            return None
        path = self.path(name)
        if payload is not None:
            path.write_bytes(payload)
        return path  # absent when the driver lost the file: the worker reports it missing

    def write(self, trainer: Any, model: Any, spec: Any, frames: int, final: bool) -> tuple[Path, bytes | None]:
        path, _ = super().write(trainer, model, spec, frames, final)
        return path, path.read_bytes()

    def close(self) -> None:
        if self.directory:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = ""

    def describe(self) -> str:
        return "the driver (kept beside the store)"

    def __reduce__(self) -> tuple:  # a worker gets a fresh one, never the sender's temporary folder
        return (DriverCheckpoints, ())


def checkpoint_location(choice: str | None, db_path: str | Path) -> CheckpointFolder:
    """``--checkpoints``: None (beside the store), ``driver``, or a folder (created if absent)."""
    if choice is None:
        return CheckpointFolder(str(checkpoint_dir(Path(db_path).resolve())))
    if choice == DRIVER:
        return DriverCheckpoints()
    folder = Path(choice).expanduser()
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"--checkpoints {choice}: not a folder; give a folder every node reaches at this path, "
                         f"'{DRIVER}', or leave it out (beside the store)")
    return CheckpointFolder(str(folder.resolve()))
