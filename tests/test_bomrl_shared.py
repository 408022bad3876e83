"""BO-MRL's shared layers: the reward-to-go, the rollout collector and the TRPO step."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from metarl_agents.bomrl.rollouts import reward_to_go, roll_out
from metarl_agents.bomrl.trpo import gaussian_kl, trpo_step


def test_reward_to_go_is_the_discounted_sum_of_the_rewards_still_to_come():
    rewards = np.array([[1.0, 2.0, 4.0], [3.0, 0.0, 0.0]])  # the second episode ended after one step
    to_go = reward_to_go(rewards, 0.5)
    np.testing.assert_array_equal(to_go, [[1 + 0.5 * 2 + 0.25 * 4, 2 + 0.5 * 4, 4.0], [3.0, 0.0, 0.0]])
    assert reward_to_go(rewards[None], 0.5).shape == (1, 2, 3)  # any leading axes


class Walk:
    """``n`` 1-D walkers: obs = position, reward = action; walker ``i`` stops after ``lengths[i]`` steps."""

    def __init__(self, lengths):
        self.lengths = np.array(lengths)
        self.t = 0
        self.pos = np.zeros((len(lengths), 1))

    def step(self, actions):
        self.t += 1
        running = self.t <= self.lengths
        self.pos = self.pos + actions * running[:, None]
        return self.pos.copy(), actions[:, 0] * running, self.t >= self.lengths


def linear_policy(obs):
    return 0.5 * obs + 1.0, torch.full_like(obs, -1.0)


def test_roll_out_records_running_steps_until_every_episode_ends_and_the_moments_of_what_it_saw():
    walk = Walk([2, 4])
    space = gym.spaces.Box(-10.0, 10.0, (1,))
    data = roll_out(walk.step, space, np.zeros((2, 1)), lambda o: o.astype(np.float32), linear_policy,
                    deterministic=True)
    # Deterministic mean 0.5 x + 1 from x = 0: positions 0, 1, 2.5, 4.75 while running.
    np.testing.assert_array_equal(data.running, [[True, True, False, False], [True, True, True, True]])
    np.testing.assert_allclose(data.actions[1, :, 0], [1.0, 1.5, 2.25, 3.375])
    np.testing.assert_allclose(data.rewards, [[1.0, 1.5, 0.0, 0.0], [1.0, 1.5, 2.25, 3.375]])
    seen = np.concatenate([data.raw_obs[0, :2, 0], data.raw_obs[1, :, 0]])
    mean, var, count = data.obs_moments
    assert count == 6 and mean[0] == pytest.approx(seen.mean()) and var[0] == pytest.approx(seen.var())


def test_roll_out_runs_a_fixed_number_of_steps_and_records_only_the_first_ones_in_full():
    def step(actions):
        return np.ones((3, 1)), np.ones(3), None  # no episode ever ends

    generator = torch.Generator().manual_seed(0)
    data = roll_out(step, gym.spaces.Box(-0.1, 0.1, (1,)), np.zeros((3, 1)), lambda o: o.astype(np.float32),
                    linear_policy, steps=5, record=2, generator=generator)
    assert data.rewards.shape == (3, 5) and data.obs.shape == (3, 2, 1) and data.actions.shape == (3, 2, 1)
    expected_noise = torch.randn((3, 1), generator=torch.Generator().manual_seed(0))
    np.testing.assert_allclose(data.actions[:, 0], (1.0 + np.exp(-1.0) * expected_noise).numpy(), rtol=1e-6)
    with pytest.raises(ValueError, match="needs a number of steps"):
        roll_out(step, gym.spaces.Box(-0.1, 0.1, (1,)), np.zeros((3, 1)), lambda o: o.astype(np.float32), linear_policy)


def gaussian_policy(params, states):
    return states @ params["w"], params["log_std"].expand(len(states), -1)


def toy():
    g = torch.Generator().manual_seed(0)
    phi = {"w": torch.randn(3, 2, generator=g), "log_std": torch.zeros(2)}
    states = torch.randn(50, 3, generator=g)
    gradient = [torch.randn(3, 2, generator=g), torch.randn(2, generator=g)]
    return phi, states, gradient


def measured_kl(phi, params, states):
    return float(gaussian_kl(*gaussian_policy(phi, states), *gaussian_policy(params, states)).mean())


def test_trpo_step_keeps_the_kl_bound_and_follows_the_gradient():
    phi, states, gradient = toy()
    step = trpo_step(gaussian_policy, phi, ["w", "log_std"], gradient, states, max_kl=0.01, cg_iterations=10,
                     cg_damping=0.0)
    assert step.kl == pytest.approx(measured_kl(phi, step.params, states), rel=1e-5)
    assert 0.0025 <= step.kl <= 0.01 and step.improvement == 0.0
    moved = [step.params[k] - phi[k] for k in ("w", "log_std")]
    assert sum(float((m * g).sum()) for m, g in zip(moved, gradient, strict=True)) > 0


def test_trpo_step_is_refused_when_the_objective_does_not_improve_as_predicted():
    phi, states, gradient = toy()

    def against(params):  # falls along the gradient: no candidate is accepted
        return -sum((params[k] * g).sum() for k, g in zip(("w", "log_std"), gradient, strict=True))

    step = trpo_step(gaussian_policy, phi, ["w", "log_std"], gradient, states, 0.01, 10, 0.0,
                     objective=against, accept_ratio=0.1)
    assert step.params is None and step.kl == 0.0 and step.improvement == 0.0

    def along(params):
        return -against(params)

    step = trpo_step(gaussian_policy, phi, ["w", "log_std"], gradient, states, 0.01, 10, 0.0,
                     objective=along, accept_ratio=0.1)
    assert step.params is not None and step.improvement == pytest.approx(float(along(step.params) - along(phi)))


def test_trpo_step_without_the_kl_test_takes_the_full_step_the_kl_test_halves():
    """A long step's KL exceeds the quadratic model's: TRPO's test halves it; the BO-MRL authors' line
    search (``check_kl=False``) takes it whole. Both report the full step's KL and the halvings."""
    phi, states, (w_gradient, _) = toy()
    gradient = [w_gradient, torch.tensor([-1.5, -3.0])]  # narrowing the std: the KL grows faster than quadratic
    names = ["w", "log_std"]
    checked = trpo_step(gaussian_policy, phi, names, gradient, states, 1.0, 10, 0.0)
    unchecked = trpo_step(gaussian_policy, phi, names, gradient, states, 1.0, 10, 0.0, check_kl=False)
    assert unchecked.halvings == 0 and unchecked.kl == unchecked.full_step_kl > 1.0
    assert checked.full_step_kl == unchecked.full_step_kl and checked.halvings >= 1 and checked.kl <= 1.0
    assert checked.kl == pytest.approx(measured_kl(phi, checked.params, states), rel=1e-5)
    for name in names:  # the same direction, 2^-halvings of the length
        torch.testing.assert_close(checked.params[name] - phi[name],
                                   (unchecked.params[name] - phi[name]) / 2 ** checked.halvings)
