"""Files that carry their own SHA-256 digest and are only ever unpickled with ``weights_only=True``.

Layout: a magic line naming the kind of file, then a line with the hex SHA-256 of the payload, then the
payload, a ``torch.save`` of tensors and plain Python values::

    metarl-run-checkpoint v2\\n
    3f5a...(64 hex digits)\\n
    <torch.save bytes>

The digest is in the file itself, so it travels with the file (copied to another machine, moved between
folders) and no second file can be lost or mismatched. It is checked before anything is unpickled, so a
damaged file (a flipped bit, a truncated copy) is refused instead of being loaded with other numbers.
It detects damage, not attack: anyone can recompute a plain SHA-256. What stops a crafted file from
running code is ``torch.load(weights_only=True)``, which only rebuilds tensors and plain values.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import torch as th

from metarl_agents.training.atomic import write_bytes_atomically


class CheckedFileError(ValueError):
    """A file that is not of the expected kind, or whose payload does not match its digest."""


def encode(payload: Any, magic: bytes) -> bytes:
    """The file's bytes: ``magic`` (one line), the payload's digest, the payload."""
    if not magic.endswith(b"\n") or magic.count(b"\n") != 1:
        raise ValueError(f"magic must be one line ending in a newline, got {magic!r}")
    buffer = io.BytesIO()
    th.save(payload, buffer)
    data = buffer.getvalue()
    return magic + hashlib.sha256(data).hexdigest().encode() + b"\n" + data


def decode(raw: bytes, magic: bytes, name: str) -> Any:
    """The payload of ``raw`` (the bytes of the file ``name``); :class:`CheckedFileError` if the header is not
    ``magic`` or the payload does not match the digest. Nothing is unpickled before both checks pass."""
    if not raw.startswith(magic):
        raise CheckedFileError(f"{name} is not a {magic.decode(errors='replace').strip()!r} file (its first line "
                               "differs); it was not unpickled")
    digest, _, data = raw[len(magic):].partition(b"\n")  # (a hex digest holds no newline)
    if hashlib.sha256(data).hexdigest().encode() != digest:
        raise CheckedFileError(f"{name} is damaged: its SHA-256 does not match the digest written with it "
                               "(a truncated copy or altered bytes)")
    try:
        return th.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # a digest over bytes torch cannot read: written by something else
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckedFileError(f"{name} holds a payload that torch cannot load as weights only ({reason})") from exc


def write(path: Path, payload: Any, magic: bytes) -> None:
    """Write the checked file atomically (see :func:`~metarl_agents.training.atomic.write_bytes_atomically`)."""
    write_bytes_atomically(path, encode(payload, magic))


def read(path: Path, magic: bytes) -> Any:
    """The payload of the file at ``path`` (see :func:`decode`); ``OSError`` if it cannot be read."""
    return decode(Path(path).read_bytes(), magic, str(path))
