"""Copy the finished runs of a live result store into the committed one.

    python benchmarks/results/snapshot.py SWEEP_DB benchmarks/results/leaderboard.db

The copy is taken with SQLite's online backup (consistent while the sweep keeps writing), then runs that
are not finished are dropped from the copy: their checkpoints are never committed, so a later session
could not resume them and would have to train them again anyway. The destination is replaced only
once the new copy is complete; the live store is only read. To add runs to the committed store instead of
replacing it (say, those of a store trained on another machine), use ``metarl-bench merge``.
"""

from __future__ import annotations

import os
import sqlite3
import sys
from pathlib import Path

from metarl_agents.leaderboard.store import ResultStore


def snapshot(source: Path, destination: Path) -> tuple[int, int]:
    """Write the finished runs of ``source`` to ``destination``; return (finished, dropped) run counts."""
    with ResultStore(source, readonly=True):  # refuses anything that is not a result store
        pass
    partial = destination.with_name(f".{destination.name}.{os.getpid()}.partial")
    live = sqlite3.connect(f"{source.absolute().as_uri()}?mode=ro", uri=True)
    copy = sqlite3.connect(partial)
    try:
        live.backup(copy)
        unfinished = [row[0] for row in copy.execute("SELECT id FROM runs WHERE status != 'finished'")]
        copy.executemany("DELETE FROM evaluations WHERE run_id = ?", [(i,) for i in unfinished])
        copy.executemany("DELETE FROM runs WHERE id = ?", [(i,) for i in unfinished])
        copy.execute("UPDATE runs SET checkpoint_path = NULL")  # the checkpoints stay behind
        copy.commit()
        finished = copy.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
        copy.execute("VACUUM")
        copy.execute("PRAGMA journal_mode = WAL")  # as a store is made; closing folds the WAL into the file
    finally:
        copy.close()
        live.close()
    os.replace(partial, destination)
    return finished, len(unfinished)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    kept, dropped = snapshot(Path(sys.argv[1]), Path(sys.argv[2]))
    print(f"{kept} finished runs written to {sys.argv[2]}; {dropped} unfinished runs left out")
