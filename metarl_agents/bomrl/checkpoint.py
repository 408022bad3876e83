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

from pathlib import Path
from typing import Any

from metarl_agents.training import checked_file

MAGIC = b"metarl-agents checkpoint v1\n"


def save(payload: dict[str, Any], path: str | Path) -> None:
    """Write ``payload`` to ``path`` atomically, with its checksum."""
    checked_file.write(Path(path), payload, MAGIC)


def load(path: str | Path) -> dict[str, Any]:
    """Read a file written by :func:`save`; ``ValueError`` if it is not one, truncated or altered."""
    return checked_file.read(Path(path), MAGIC)
