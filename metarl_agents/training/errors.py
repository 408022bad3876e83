"""The errors training raises that callers handle, importable without torch (the leaderboard's runner
catches them by type in a process that may not have imported the trainer)."""

from __future__ import annotations


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used: unreadable, damaged, or written for another run."""


class TrainingDivergedError(RuntimeError):
    """A loss, gradient or parameter became non-finite; the model keeps the weights of the last finite update."""
