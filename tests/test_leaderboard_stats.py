"""Interval estimates and the probability of improvement against values computed by hand.

The bootstrap cases are built so that the resampled statistic takes a few values with known probabilities,
far enough from the interval's tail that 1,000-2,000 resamples put each percentile on a known value.
"""

from __future__ import annotations

import numpy as np
import pytest

from metarl_agents.leaderboard.stats import (
    bootstrap_ci,
    probability_of_improvement,
    probability_of_improvement_ci,
    stratified_bootstrap_ci,
)


def test_probability_of_improvement_counts_pairs_with_ties_as_one_half():
    # x = 1 beats 0 only; x = 2 ties twice (2 x 1/2) and beats 0; x = 3 beats all three: (1 + 2 + 3) / 9
    assert probability_of_improvement([[1, 2, 3]], [[2, 2, 0]]) == pytest.approx(6 / 9)
    assert probability_of_improvement([[4, 4]], [[4, 4, 4]]) == 0.5
    assert probability_of_improvement([[0.0]], [[1.0]]) == 0.0
    # averaged over tasks, not pooled: task 1 gives 1, task 2 gives 6/9
    assert probability_of_improvement([[5, 5], [1, 2, 3]], [[1, 1], [2, 2, 0]]) == pytest.approx((1 + 6 / 9) / 2)
    x, y = [[1.0, 3.0, 2.5]], [[2.0, 0.5]]
    assert probability_of_improvement(x, y) + probability_of_improvement(y, x) == pytest.approx(1.0)


def test_probability_of_improvement_interval_resamples_each_side_within_each_task():
    """x = [1] against y resampled from [0, 2, 2]: P(X > Y) is the share of zeros among three draws, k / 3
    with k ~ Binomial(3, 1/3): 0 w.p. 8/27, 1/3 w.p. 12/27, 2/3 w.p. 6/27, 1 w.p. 1/27. Cumulative 0.30,
    0.74, 0.96, 1: the 16th percentile is 0, the 84th 2/3, the 2.5th 0 and the 97.5th 1."""
    assert probability_of_improvement_ci([[1.0]], [[0, 2, 2]], confidence=0.68) == pytest.approx((1 / 3, 0, 2 / 3))
    assert probability_of_improvement_ci([[1.0]], [[0, 2, 2]]) == pytest.approx((1 / 3, 0, 1))
    # a second task where X always wins halves the spread: (1 + k/3) / 2
    assert probability_of_improvement_ci([[1.0], [9, 9]], [[0, 2, 2], [1, 2]]) == pytest.approx((2 / 3, 0.5, 1))


def test_stratified_bootstrap_keeps_each_task_and_averages_the_task_means():
    """Task 1 (2, 2, 2) always means 2; task 2 (0, 3) means 0, 1.5 or 3 w.p. 1/4, 1/2, 1/4, so the 95 %
    interval of their average is [(2 + 0) / 2, (2 + 3) / 2]."""
    assert stratified_bootstrap_ci([[2, 2, 2], [0, 3]]) == pytest.approx((1.75, 1.0, 2.5))
    assert stratified_bootstrap_ci([[5, 5, 5]]) == (5.0, 5.0, 5.0)


def test_the_papers_interval_is_a_68_percent_percentile_bootstrap():
    """(0, 0, 1): the resampled mean is k / 3 with k ~ Binomial(3, 1/3) (cumulative 0.30, 0.74, 0.96, 1)."""
    mean, low, high = bootstrap_ci(np.array([0.0, 0.0, 1.0]))
    assert (mean, low, high) == pytest.approx((1 / 3, 0, 2 / 3))
    assert bootstrap_ci(np.array([0.0, 0.0, 1.0]), 2000, 0.95)[2] == 1.0


@pytest.mark.parametrize(("call", "message"), [
    (lambda: stratified_bootstrap_ci(np.array([1.0, 2.0])), "one array of runs per task"),
    (lambda: stratified_bootstrap_ci([]), "at least one task"),
    (lambda: stratified_bootstrap_ci([[1.0], []]), "task 1 has no runs"),
    (lambda: stratified_bootstrap_ci([[1.0, np.nan]]), "non-finite"),
    (lambda: probability_of_improvement([[1.0]], [[1.0], [2.0]]), "same tasks, got 1 and 2"),
    (lambda: probability_of_improvement_ci([[1.0]], [[1.0]], confidence=1.0), r"confidence must be in \(0, 1\)"),
    (lambda: bootstrap_ci([1.0], n_resamples=0), "n_resamples must be an integer >= 1"),
])
def test_bad_input_is_refused_naming_it(call, message):
    with pytest.raises(ValueError, match=message):
        call()
