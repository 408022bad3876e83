"""Started in every Python process of the test Ray cluster: no such process may open a result store.

An audit hook refuses (and records in ``$METARL_TEST_VIOLATIONS``) any open of a database file, its
journal or lock, or any SQLite connection, under ``$METARL_TEST_STORES``. Checkpoint files there are allowed.
"""

import os
import re
import sys

_ROOT = os.environ.get("METARL_TEST_STORES")
_LOG = os.environ.get("METARL_TEST_VIOLATIONS")
_STORE_FILE = re.compile(r"\.db(-wal|-shm|-journal|\.lock)?$")


def _refuse(event, path):
    with open(_LOG, "a") as handle:  # outside the stores folder
        handle.write(f"{os.getpid()} {event} {path}\n")
    raise PermissionError(f"a Ray worker may not open the result store ({event} {path})")


def _audit(event, args):
    if event not in ("open", "sqlite3.connect") or not args:
        return
    path = args[0]
    if isinstance(path, bytes):
        path = path.decode(errors="replace")
    if not isinstance(path, str) or not os.path.abspath(path).startswith(_ROOT + os.sep):
        return
    if event == "sqlite3.connect" or _STORE_FILE.search(path):
        _refuse(event, path)


if _ROOT and _LOG:
    sys.addaudithook(_audit)
