"""Every policy kwarg is range-checked when the policy is built (issue 36, C1 and C2)."""

from __future__ import annotations

import math
from unittest import mock

import gymnasium as gym
import numpy as np
import pytest
import torch as th

import metarl_envs  # noqa: F401  (registers the ids)
from metarl_agents.memory.sequence import Segments
from metarl_agents.policies import POLICY_REGISTRY, SplAggerPolicy
from metarl_agents.policy_settings import parameter_count
from metarl_agents.training.build import check_buildable
from metarl_agents.training.config import RunConfig
from metarl_envs.wrappers import TransitionObservation

ENVS = {"discrete": TransitionObservation(gym.make("MetaTMaze-v0")),
        "box": TransitionObservation(gym.make("MetaCheetahVel-v0"))}


def _build(kind: str = "discrete", policy=SplAggerPolicy, **kwargs):
    env = ENVS[kind]
    return policy(env.observation_space, env.action_space, lambda _: 1e-3, **kwargs)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"head_state_dim": 0}, "head_state_dim must be an integer in [1, 8192], got 0"),
    ({"head_state_dim": -1}, "head_state_dim must be an integer in [1, 8192], got -1"),
    ({"hyper_dim": 0}, "hyper_dim must be an integer in [1, 1024], got 0"),
    ({"hyper_dim": -1}, "hyper_dim must be an integer in [1, 1024], got -1"),
    ({"encoder_hidden": 100_000_000}, "encoder_hidden must be an integer in [1, 8192], got 100000000"),
    ({"head_bf16": "yes"}, "head_bf16 must be true or false, got 'yes'"),
    ({"obs_clip": 0}, "obs_clip must be a finite number in [1, 1000000], got 0"),
    ({"obs_clip": -1}, "obs_clip must be a finite number in [1, 1000000], got -1"),
    ({"obs_clip": math.nan}, "obs_clip must be a finite number in [1, 1000000], got nan"),
    ({"aggregator": "softmax", "aggregator_kwargs": {"temperature": 1e-300}},
     "aggregator_kwargs['temperature'] must be a finite number in [0.05, 1000000], got 1e-300"),
    ({"aggregator": None, "split": False, "aggregator_kwargs": {"temperature": 0.1}},
     "aggregator_kwargs {'temperature': 0.1} need an aggregator, got aggregator=None"),
    ({"log_std_init": math.nan}, "log_std_init must be a finite number in [-20, 5], got nan"),
    ({"aggregator": "max", "aggregator_kwargs": {"temperature": 0.1}},
     "aggregator_kwargs ['temperature'] are not settings of aggregator 'max'; allowed: []"),
    ({"optimizer_kwargs": {"lr": 0.1}}, "optimizer_kwargs may not set ['lr'] for Adam"),
    ({"head": "mlp", "head_bf16": True}, "head_bf16=True applies to the hypernetwork head only"),
    ({"net_arch": [64, 0]}, "net_arch must be a list of at most 16 layer sizes in [1, 8192]"),
    ({"encoder": "lstm"}, "encoder must be one of ['gru', 'linear'"),
    ({"aggregator": "median"}, "unknown aggregator 'median'"),
    ({"start_latent": "zero"}, "start_latent must be one of ['encode', 'prior'], got 'zero'"),
    ({"critic_init": "xavier"}, "critic_init must be one of ['torch', 'reference'], got 'xavier'"),
    ({"memory_optimizer_kwargs": {"params": []}}, "memory_optimizer_kwargs may not set ['params'] for Adam"),
    ({"memory_optimizer_kwargs": "eps=1e-8"}, "memory_optimizer_kwargs must be a table of keyword arguments or none"),
])
@pytest.mark.parametrize("kind", ["discrete", "box"])
def test_bad_policy_kwargs_are_refused_at_construction(kwargs, message, kind):
    with pytest.raises(ValueError) as err:
        _build(kind, **kwargs)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_bad_policy_kwargs_are_refused_before_a_run_starts():
    config = RunConfig.from_preset("MetaTMaze-v0", "SplAgger", policy_kwargs={"head_state_dim": 0})
    with pytest.raises(ValueError, match=r"policy_kwargs .* do not fit SplAgger: head_state_dim must be an integer"):
        check_buildable(config)


def test_a_policy_too_large_for_the_memory_is_refused_before_allocation():
    with mock.patch("metarl_envs.sizes.available_memory", return_value=2**30), \
            pytest.raises(ValueError, match=r"a policy of about [\d,]+ parameters \(encoder_hidden=256, "
                                            r"net_arch=\[4096, 4096\], head_state_dim=256, hyper_dim=64\) needs about"):
        _build(net_arch=[4096, 4096], hyper_dim=64)  # about 2.3 G parameters: some 35 GiB to train


def test_valid_values_at_the_bounds_are_taken_and_normalised():
    policy = _build("box", net_arch=[64.0, 32], obs_clip=1, log_std_init=-20, hyper_dim=1, head_state_dim=8,
                    aggregator="softmax", aggregator_kwargs={"temperature": 0.05}, optimizer_kwargs={"eps": 1e-5})
    assert policy.config.net_arch == (64, 32) and all(type(n) is int for n in policy.config.net_arch)
    assert policy.config.obs_clip == 1.0 and type(policy.config.obs_clip) is float
    assert policy.head.state.norm.clip == 1.0 and policy.log_std.detach().tolist() == [-20.0] * 6
    assert policy.optimizer.defaults["eps"] == 1e-5
    own = _build(memory_optimizer_kwargs={"lr": 1e-4, "eps": 1e-8})  # the memory's group may set its own rate
    assert [group["lr"] for group in own.optimizer.param_groups] == [1e-3, 1e-4]


def test_the_lowest_softmax_temperature_keeps_the_aggregate_finite():
    """Why 0.05: the encodings closest to -1 are the smallest weights, exp(-3/T) at the floor; at T = 0.01 the
    float32 weights underflow and the aggregate is 0/0."""
    aggregator = _build(aggregator="softmax", aggregator_kwargs={"temperature": 0.05}).memory.aggregator
    x = -th.ones(20, 3, aggregator.in_dim)
    out, _, _ = aggregator(x, th.zeros(3, aggregator.state_dim), Segments.from_starts(th.zeros(20, 3)))
    assert th.isfinite(out).all()
    aggregator.temperature = 0.01
    out, _, _ = aggregator(x, th.zeros(3, aggregator.state_dim), Segments.from_starts(th.zeros(20, 3)))
    assert not th.isfinite(out).all()


@pytest.mark.parametrize("name", sorted(POLICY_REGISTRY))
@pytest.mark.parametrize("head", ["hyper", "mlp"])
def test_every_registered_policy_builds_and_its_size_estimate_is_close(name, head):
    policy = _build("discrete", POLICY_REGISTRY[name], head=head)
    actual = sum(p.numel() for p in policy.parameters())
    estimate = parameter_count(policy.config, policy.layout, discrete=True)
    assert actual <= estimate <= 2.5 * actual  # never below: the memory check must not let a policy through
    assert np.isfinite(estimate)
