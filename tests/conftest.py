"""Shared test configuration."""

import pytest
import torch as th


@pytest.fixture(autouse=True)
def one_torch_thread():
    """The test models are small: a second thread only adds synchronisation (and contention in CI)."""
    threads = th.get_num_threads()
    th.set_num_threads(1)
    yield
    th.set_num_threads(threads)
