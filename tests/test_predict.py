"""SB3's ``predict``, step by step with the state carried across calls: the actions and memory states of the sequence path."""

import numpy as np
import pytest
import torch as th
from gymnasium import spaces

from metarl_agents import POLICY_REGISTRY
from metarl_envs.wrappers import transition_space

SMALL = {"encoder_hidden": 16, "net_arch": (16, 8), "head_state_dim": 16}
STEPS, COPIES = 30, 3


def _policy(name: str, action_space: spaces.Space):
    th.manual_seed(0)
    space = transition_space(spaces.Box(-1, 1, (5,), np.float32), action_space)
    policy = POLICY_REGISTRY[name](space, action_space, lambda _: 3e-4, **SMALL)
    with th.no_grad():  # away from the initialisation, where the hypernetwork ignores the latent
        for parameter in policy.parameters():
            parameter.add_(0.3 * th.randn_like(parameter))
    return policy


def _inputs(policy):
    rng = np.random.default_rng(1)
    obs = rng.uniform(-1, 1, size=(STEPS, COPIES, policy.observation_space.shape[0])).astype(np.float32)
    starts = np.zeros((STEPS, COPIES), dtype=bool)
    starts[0] = True
    starts[[7, 19], [0, 2]] = True  # trials start inside the sequence
    return obs, starts


@pytest.mark.parametrize("name", sorted(POLICY_REGISTRY))
def test_predict_matches_the_sequence_path_with_resets(name):
    policy = _policy(name, spaces.Discrete(4))
    obs, starts = _inputs(policy)
    state, actions = None, []
    for t in range(STEPS):
        action, state = policy.predict(obs[t], state, starts[t], deterministic=True)
        actions.append(action)
    with th.no_grad():  # the whole sequence in one call of the sequence path, posterior means
        logits, _, final, _ = policy._run(th.as_tensor(obs), th.as_tensor(starts, dtype=th.float32),
                                          policy.initial_states(COPIES), sample=False)
    final = policy._pack(final)  # as predict returns it
    np.testing.assert_array_equal(np.array(actions), logits.argmax(-1).numpy())
    np.testing.assert_allclose(state[0], final[0].numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(state[1], final[1].numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["SplAgger", "PEARL", "SplAgger-LRU"])
def test_predict_box_actions_match_the_sequence_path(name):
    policy = _policy(name, spaces.Box(-2, 2, (2,), np.float32))
    obs, starts = _inputs(policy)
    state, actions = None, []
    for t in range(STEPS):
        action, state = policy.predict(obs[t], state, starts[t], deterministic=True)
        actions.append(action)
    with th.no_grad():
        means, _, _, _ = policy._run(th.as_tensor(obs), th.as_tensor(starts, dtype=th.float32),
                                     policy.initial_states(COPIES), sample=False)
    np.testing.assert_allclose(np.array(actions), means.clamp(-2, 2).numpy(), rtol=1e-5, atol=1e-5)
