"""Policy speed (pytest-benchmark): one rollout step and one PPO-style pass per model.

* rollout step: ``policy.step`` for 16 copies (what every env step of MetaPPO training costs);
* update: forward + backward of ``evaluate_sequence`` over a whole 700-step chunk of 16 copies with
  two trial starts per copy (what one epoch over a T-maze rollout costs, minibatches together).

Default sizes (GRU 256, hypernetwork head 256 -> 256 -> 128). Run with
``python -m pytest benchmarks/bench_policies.py --benchmark-columns=median,rounds``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch as th
from gymnasium import spaces

from metarl_agents.policies import POLICY_REGISTRY
from metarl_envs.wrappers import transition_space

MODELS = ["SplAgger", "RNN", "AMRL", "CNP", "Max", "PEARL"]
N_ENVS, CHUNK = 16, 700


def _policy(name: str, head: str = "hyper"):
    th.manual_seed(0)
    space = transition_space(spaces.Box(-1, 1, (5,), np.float32), spaces.Discrete(4))
    return POLICY_REGISTRY[name](space, spaces.Discrete(4), lambda _: 3e-4, head=head)


@pytest.mark.parametrize("head", ["hyper", "mlp"])
@pytest.mark.parametrize("name", MODELS)
def test_rollout_step(benchmark, name, head):
    benchmark.group = f"rollout step, {N_ENVS} envs"
    policy = _policy(name, head)
    obs = th.randn(N_ENVS, policy.observation_space.shape[0])
    starts = th.zeros(N_ENVS)
    state = {"s": policy.initial_states(N_ENVS)}

    @th.no_grad()
    def step():
        _, _, _, state["s"] = policy.step(obs, state["s"], starts=starts)

    benchmark(step)


@pytest.mark.parametrize("head", ["hyper", "mlp"])
@pytest.mark.parametrize("name", MODELS)
def test_update_chunk(benchmark, name, head):
    benchmark.group = f"forward+backward, {CHUNK} steps x {N_ENVS} envs"
    policy = _policy(name, head)
    gen = th.Generator().manual_seed(0)
    obs = th.randn(CHUNK, N_ENVS, policy.observation_space.shape[0], generator=gen)
    actions = th.randint(0, 4, (CHUNK, N_ENVS), generator=gen)
    starts = th.zeros(CHUNK, N_ENVS)
    starts[0] = 1.0
    for b in range(N_ENVS):  # two trial starts per copy, at different times
        starts[th.randint(1, CHUNK, (2,), generator=gen), b] = 1.0
    states = policy.initial_states(N_ENVS)

    def update():
        policy.zero_grad()
        values, log_prob, entropy, aux = policy.evaluate_sequence(obs, actions, starts, states)
        (values.square().mean() - log_prob.mean() - 0.01 * entropy.mean() + aux).backward()

    benchmark.pedantic(update, rounds=2, iterations=1, warmup_rounds=0)
