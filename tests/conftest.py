"""Shared test configuration."""

import os

import pytest
import torch as th

# The tests' Ray instances (a local one, a two-node cluster) run without token authentication, all of them:
# a process that used Ray with one setting cannot use a cluster with the other (Ray turns tokens on by
# itself when ~/.ray/auth_token exists, and keeps its first choice for the process).
os.environ.setdefault("RAY_AUTH_MODE", "disabled")


@pytest.fixture(autouse=True)
def one_torch_thread():
    """The test models are small: a second thread only adds synchronisation (and contention in CI)."""
    threads = th.get_num_threads()
    th.set_num_threads(1)
    yield
    th.set_num_threads(threads)
