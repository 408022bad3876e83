"""Leaderboard benchmark: run a grid of training runs into an SQLite store and report on it.

``metarl-bench run`` / ``metarl-bench report`` (or ``python -m metarl_agents.leaderboard``) are the
command line; the pieces are importable for scripted sweeps::

    from metarl_agents.leaderboard import build_grid, run_grid, write_report
    specs = build_grid(["MetaTMaze-v0"], ["SplAgger", "RNN"], seeds=["2"], frames=200_000)
    run_grid(specs, "metarl_results.db", workers=2)
    write_report("metarl_results.db", "leaderboard_report")
"""

from metarl_agents.leaderboard.checkpoint import CheckpointError
from metarl_agents.leaderboard.grid import RunSpec, build_grid
from metarl_agents.leaderboard.lock import StoreInUse
from metarl_agents.leaderboard.report import write_report
from metarl_agents.leaderboard.runner import MetaPPOTrainer, SweepSummary, Trainer, run_grid, train_one
from metarl_agents.leaderboard.store import ResultStore, StoreError

__all__ = [
    "CheckpointError", "MetaPPOTrainer", "ResultStore", "RunSpec", "StoreError", "StoreInUse", "SweepSummary",
    "Trainer", "build_grid", "run_grid", "train_one", "write_report",
]
