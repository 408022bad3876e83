"""Checksummed, code-free files for BO-MRL agents and experiment checkpoints.

A file is a short header (a magic line and the SHA-256 of the payload) followed by a ``torch.save``
payload of tensors, numbers, strings, lists and dicts only. :func:`load` checks the header and the
checksum before it unpickles anything, and then unpickles with ``weights_only=True``: a truncated or
altered file gives a clear ``ValueError``, and a crafted pickle cannot run code even with a valid
checksum. :func:`save` writes to a temporary file in the same folder and renames it into place, so a
run that dies mid-write leaves the previous file intact.

The checksum protects against damage (a truncated copy, flipped bits), not against attack: it is a
plain SHA-256 that anyone who can write the file can recompute. What keeps a crafted file from running
code is ``weights_only`` unpickling and, for BO-MRL agents, the exact allow-list of classes a saved
policy may name.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

MAGIC = b"metarl-agents checkpoint v1\n"
_DIGEST_LINE = 64 + 1  # hex SHA-256 and a newline


def save(payload: dict[str, Any], path: str | Path) -> None:
    """Write ``payload`` to ``path`` atomically, with its checksum."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    data = buffer.getvalue()
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent or ".", prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(MAGIC + hashlib.sha256(data).hexdigest().encode() + b"\n" + data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would make checkpoints unreadable to collaborators
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load(path: str | Path) -> dict[str, Any]:
    """Read a file written by :func:`save`; ``ValueError`` if it is not one, truncated or altered."""
    raw = Path(path).read_bytes()
    if not raw.startswith(MAGIC):
        raise ValueError(f"{path}: not a metarl-agents checkpoint (missing header {MAGIC.strip().decode()!r}); "
                         "files from other tools are never unpickled")
    digest, data = raw[len(MAGIC) : len(MAGIC) + _DIGEST_LINE - 1], raw[len(MAGIC) + _DIGEST_LINE :]
    if hashlib.sha256(data).hexdigest().encode() != digest:
        raise ValueError(f"{path}: checksum mismatch: the file is truncated or was altered after it was written")
    return torch.load(io.BytesIO(data), weights_only=True)
