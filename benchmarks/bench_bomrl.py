"""Speed of the tabular BO-MRL building blocks on a Frozen Lake task (pytest-benchmark)."""

import pytest
import torch

from metarl_agents.bomrl import frozen_lake as fl
from metarl_agents.bomrl.mdp import evaluate, single_threaded
from metarl_agents.bomrl.tabular import hypergradient


@pytest.fixture(scope="module")
def task():
    with single_threaded():
        yield fl.benchmark_mdps("hole")[0]


@pytest.mark.parametrize("alg", [1, 2, 3])
def test_bench_hypergradient(benchmark, task, alg):
    phi = torch.full((16, 4), 0.1, dtype=torch.float64)
    with single_threaded():
        benchmark(hypergradient, task, phi, alg, fl.LAM_TRAIN[("hole", alg)])


def test_bench_exact_evaluation(benchmark, task):
    pi = torch.full((16, 4), 0.25, dtype=torch.float64)
    with single_threaded():
        benchmark(evaluate, task, pi)
