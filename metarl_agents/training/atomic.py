"""Atomic file writes, shared by every file the package writes that a crash must not leave half-written
(run checkpoints, BO-MRL checkpoints, model files). Torch-free, so the leaderboard's driver can use it."""

from __future__ import annotations

import os
from pathlib import Path


def write_bytes_atomically(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that the file is either complete or absent, also after a power cut:
    a temporary file in the same folder, fsync, rename, fsync of the folder. A failed write leaves no
    temporary file and the previous file, if any, intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself survives a power cut
    finally:
        os.close(directory)
