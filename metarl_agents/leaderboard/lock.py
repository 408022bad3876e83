"""One sweep per result store: an exclusive lock beside the database, held for the whole sweep.

The lock is an ``flock`` on ``<db>.lock``. The kernel drops it when its holder dies, however it dies, so
a crashed sweep never blocks the next one: the next ``run`` simply takes the lock over. The file holds
the holder's host, pid and start time so that a refused sweep can say who is using the store.
"""

from __future__ import annotations

import fcntl
import json
import os
import platform
import time
from pathlib import Path


class StoreInUse(RuntimeError):
    """Another live sweep holds the store."""


def lock_path(db_path: str | Path) -> Path:
    db_path = Path(db_path)
    return db_path.with_name(db_path.name + ".lock")


class SweepLock:
    """Hold ``<db>.lock`` exclusively (``with SweepLock(db): ...``); raise :class:`StoreInUse` at once if held."""

    def __init__(self, db_path: str | Path) -> None:
        self.path = lock_path(db_path)
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:  # e.g. a folder under /dev/full or /proc, a read-only disk
            from metarl_agents.leaderboard.store import StoreError, explain

            raise StoreError(explain(exc, self.path.with_suffix(""), "lock")) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise StoreInUse(f"the result store {self.path.with_suffix('')} is in use by another sweep ({holder}); wait "
                             "for it to finish or stop it (a sweep that died releases the store by itself)") from None
        except BaseException:
            os.close(fd)
            raise
        holder = {"host": platform.node(), "pid": os.getpid(), "started": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> SweepLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_holder(fd: int) -> str:
    try:
        holder = json.loads(os.pread(fd, 4096, 0) or b"{}")
        started = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(float(holder["started"])))
        return f"host {holder['host']}, pid {holder['pid']}, started {started}"
    except (ValueError, KeyError, TypeError, OSError):
        return "holder unknown: it is still starting"
