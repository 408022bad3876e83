"""Interval estimates and the probability of improvement, for comparing agents over a few seeds.

Two conventions are reported side by side:

- the SplAgger paper's: the mean over seeds with a 68 % percentile-bootstrap interval of 1,000 resamples
  (:func:`bootstrap_ci`, ``PAPER_CONFIDENCE``, ``PAPER_RESAMPLES``);
- rliable's (Agarwal et al., "Deep RL at the edge of the statistical precipice", 2021): a 95 % *stratified*
  bootstrap interval, which resamples the runs of each task separately so that every task keeps its
  weight (:func:`stratified_bootstrap_ci`), and the *probability of improvement* P(X > Y), the chance that
  a run of X beats a run of Y on a task, averaged over tasks, with an interval from resampling the runs of X
  and of Y independently within each task (:func:`probability_of_improvement`,
  :func:`probability_of_improvement_ci`).

rliable itself is archived; these are its definitions, written out. Scores come as one array of runs (seeds)
per task; with a single task a stratified bootstrap is the ordinary one. Every interval is a percentile
interval from a ``numpy.random.default_rng(seed)`` stream, so the numbers are reproducible.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

PAPER_CONFIDENCE = 0.68
PAPER_RESAMPLES = 1000
RLIABLE_CONFIDENCE = 0.95
RLIABLE_RESAMPLES = 2000  # rliable's default number of bootstrap replications
BOOTSTRAP_SEED = 0

Interval = tuple[float, float, float]  # (point estimate, low, high)


def bootstrap_ci(values: ArrayLike, n_resamples: int = PAPER_RESAMPLES, confidence: float = PAPER_CONFIDENCE,
                 seed: int = BOOTSTRAP_SEED) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, low, high) over axis 0 (seeds) by the percentile bootstrap of the mean.

    Every column (e.g. every point of a learning curve) uses the same resampled seed sets, drawn from
    ``numpy.random.default_rng(seed)``, so the numbers are reproducible and a curve's band is coherent.
    """
    _check(n_resamples, confidence)
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        raise ValueError("bootstrap_ci needs at least one value")
    means = _resample(values, np.random.default_rng(seed), n_resamples).mean(axis=1)
    tail = 50.0 * (1.0 - confidence)
    low, high = np.percentile(means, [tail, 100.0 - tail], axis=0)
    return values.mean(axis=0), low, high


def stratified_bootstrap_ci(scores: Sequence[ArrayLike], confidence: float = RLIABLE_CONFIDENCE,
                            n_resamples: int = RLIABLE_RESAMPLES, seed: int = BOOTSTRAP_SEED) -> Interval:
    """The mean score over tasks (each task's mean over its runs) with a stratified percentile-bootstrap
    interval: every resample draws each task's runs with replacement from that task's runs only."""
    _check(n_resamples, confidence)
    tasks = _tasks(scores, "scores")
    rng = np.random.default_rng(seed)
    resampled = np.mean([_resample(task, rng, n_resamples).mean(axis=1) for task in tasks], axis=0)
    point = float(np.mean([task.mean() for task in tasks]))
    return point, *_percentiles(resampled, confidence)


def probability_of_improvement(x: Sequence[ArrayLike], y: Sequence[ArrayLike]) -> float:
    """P(X > Y): for each task the fraction of (run of X, run of Y) pairs in which X scores higher, a tie
    counting one half (the Mann–Whitney U statistic over the number of pairs), averaged over tasks."""
    x_tasks, y_tasks = _paired_tasks(x, y)
    return float(np.mean([_pairwise_wins(a[None, :], b[None, :])[0] for a, b in zip(x_tasks, y_tasks, strict=True)]))


def probability_of_improvement_ci(x: Sequence[ArrayLike], y: Sequence[ArrayLike],
                                  confidence: float = RLIABLE_CONFIDENCE, n_resamples: int = RLIABLE_RESAMPLES,
                                  seed: int = BOOTSTRAP_SEED) -> Interval:
    """:func:`probability_of_improvement` with a stratified percentile-bootstrap interval: every resample
    draws, within each task, the runs of X and the runs of Y independently with replacement."""
    _check(n_resamples, confidence)
    x_tasks, y_tasks = _paired_tasks(x, y)
    rng = np.random.default_rng(seed)
    per_task = [_pairwise_wins(_resample(a, rng, n_resamples), _resample(b, rng, n_resamples))
                for a, b in zip(x_tasks, y_tasks, strict=True)]
    return probability_of_improvement(x_tasks, y_tasks), *_percentiles(np.mean(per_task, axis=0), confidence)


def _pairwise_wins(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """For each row: the fraction of pairs (x_i, y_j) with x_i > y_j, ties counting 1/2."""
    diff = x[:, :, None] - y[:, None, :]
    return ((diff > 0) + 0.5 * (diff == 0)).mean(axis=(1, 2))


def _resample(runs: np.ndarray, rng: np.random.Generator, n_resamples: int) -> np.ndarray:
    return runs[rng.integers(0, len(runs), size=(n_resamples, len(runs)))]


def _percentiles(samples: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = 50.0 * (1.0 - confidence)
    low, high = np.percentile(samples, [tail, 100.0 - tail])
    return float(low), float(high)


def _tasks(scores: Sequence[ArrayLike], name: str) -> list[np.ndarray]:
    if isinstance(scores, np.ndarray) and scores.ndim == 1:
        raise ValueError(f"{name} must be one array of runs per task (a list of arrays), got a flat array; "
                         f"wrap a single task as [{name}]")
    tasks = [np.asarray(task, dtype=float).reshape(-1) for task in scores]
    if not tasks:
        raise ValueError(f"{name} needs at least one task")
    for index, task in enumerate(tasks):
        if len(task) == 0:
            raise ValueError(f"{name}: task {index} has no runs")
        if not np.isfinite(task).all():
            raise ValueError(f"{name}: task {index} has a non-finite score ({task.tolist()})")
    return tasks


def _paired_tasks(x: Sequence[ArrayLike], y: Sequence[ArrayLike]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    x_tasks, y_tasks = _tasks(x, "x"), _tasks(y, "y")
    if len(x_tasks) != len(y_tasks):
        raise ValueError(f"x and y must have the same tasks, got {len(x_tasks)} and {len(y_tasks)}")
    return x_tasks, y_tasks


def _check(n_resamples: int, confidence: float) -> None:
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, (int, np.integer)) or n_resamples < 1:
        raise ValueError(f"n_resamples must be an integer >= 1, got {n_resamples!r}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
