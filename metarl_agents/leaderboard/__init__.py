"""Leaderboard benchmark: run a grid of training runs into an SQLite store and report on it.

``metarl-bench run`` / ``metarl-bench report`` (or ``python -m metarl_agents.leaderboard``) are the
command line; the pieces are importable for scripted sweeps::

    from metarl_agents.leaderboard import build_grid, run_grid, write_report
    specs = build_grid(["MetaTMaze-v0"], ["SplAgger", "RNN"], seeds=["2"], frames=200_000)
    run_grid(specs, "metarl_results.db", workers=2)
    write_report("metarl_results.db", "leaderboard_report")
"""

from __future__ import annotations

from metarl_agents.lazy import lazy_attributes

# Loaded on first use, so that ``metarl-bench report`` (and any light use of the store) never imports torch.
_LAZY = {
    "CheckpointError": ".checkpoint", "RunSpec": ".grid", "build_grid": ".grid", "StoreInUse": ".lock",
    "write_report": ".report", "MetaPPOTrainer": ".runner", "SweepSummary": ".runner", "Trainer": ".runner",
    "run_grid": ".runner", "train_one": ".runner", "ResultStore": ".store", "StoreError": ".store",
    "merge_stores": ".merge", "MergeSummary": ".merge",
    "build_meta_gradient_grid": ".meta_gradient", "MetaGradientTrainer": ".meta_gradient",
}
__all__ = sorted(_LAZY)
__getattr__ = lazy_attributes(__name__, _LAZY)
