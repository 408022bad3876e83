"""Exact and sampled evaluation of stationary policies on a tabular MDP (float64 torch).

Horizon convention. A :class:`TabularMDP` may carry a finite ``horizon`` ``H`` (Frozen Lake: 49
steps, like the Gymnasium env). Then the *objective* ``J`` is the truncated discounted return
``E[sum_{t<H} gamma^t r_t]`` -- what an env episode pays and what the Frozen Lake optimum
``sum_{t=5}^{48} 0.8^t = 1.63831`` is. The quantities that *drive* the BO-MRL lower level
(``V``, ``Q``, ``nu``) are the stationary infinite-horizon ones,
``V = (I - gamma P_pi)^-1 r_pi``, ``Q = R + gamma P V``, ``nu = (1 - gamma) rho^T (I - gamma P_pi)^-1``:
a stationary policy has no time index to condition on, and they differ from their 49-step
versions only by ``gamma^49`` (1.8e-5) terms. Every function here is differentiable in the policy,
which is how the hypergradient sees the dependence of ``Q`` and ``nu`` on the meta-policy.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

DTYPE = torch.float64


def reward_to_go(rewards: np.ndarray, gamma: float) -> np.ndarray:
    """``sum_{k >= t} gamma^(k-t) r_k`` along the last (time) axis; steps after an episode's end must hold 0."""
    to_go = np.zeros_like(rewards)
    acc = np.zeros(rewards.shape[:-1])
    for t in reversed(range(rewards.shape[-1])):
        acc = rewards[..., t] + gamma * acc
        to_go[..., t] = acc
    return to_go


@contextlib.contextmanager
def single_threaded() -> Iterator[None]:
    """Run torch on one thread: on 16x4 tensors, thread hand-offs cost 10-30x the arithmetic."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@dataclass(frozen=True)
class TabularMDP:
    """``P[s, a, s']``, expected reward ``R[s, a]``, initial distribution ``rho``, discount, horizon."""

    P: torch.Tensor
    R: torch.Tensor
    rho: torch.Tensor
    gamma: float
    horizon: int | None = None

    @classmethod
    def from_arrays(cls, P, R, rho=None, gamma: float = 0.8, horizon: int | None = None) -> TabularMDP:
        """Validate and convert numpy/torch arrays; ``rho`` defaults to starting in state 0."""
        P = torch.as_tensor(np.asarray(P), dtype=DTYPE)
        R = torch.as_tensor(np.asarray(R), dtype=DTYPE)
        if P.ndim != 3 or P.shape[0] != P.shape[2] or R.shape != P.shape[:2]:
            raise ValueError(f"P must be (S, A, S) and R (S, A); got P {tuple(P.shape)}, R {tuple(R.shape)}")
        if not torch.isfinite(P).all() or (P < 0).any() or not torch.allclose(P.sum(-1), torch.ones(P.shape[:2], dtype=DTYPE)):
            raise ValueError("P must hold probabilities that sum to 1 over the next state")
        if not torch.isfinite(R).all():
            raise ValueError(f"R must hold finite rewards; got {int((~torch.isfinite(R)).sum())} NaN or infinite")
        rho = torch.as_tensor(np.eye(P.shape[0])[0] if rho is None else np.asarray(rho), dtype=DTYPE)
        if rho.shape != (P.shape[0],) or not torch.isfinite(rho).all() or (rho < 0).any() \
                or abs(float(rho.sum()) - 1.0) > 1e-9:
            raise ValueError(f"rho must be a distribution over the {P.shape[0]} states")
        if isinstance(gamma, bool) or not isinstance(gamma, (int, float, np.number)) or not 0.0 <= gamma < 1.0:
            raise ValueError(f"gamma must be a number in [0, 1), got {gamma!r}")
        if horizon is not None and (isinstance(horizon, bool) or not isinstance(horizon, (int, np.integer))
                                    or horizon < 1):
            raise ValueError(f"horizon must be a positive integer or None, got {horizon!r}")
        return cls(P, R, rho, float(gamma), None if horizon is None else int(horizon))

    @property
    def n_states(self) -> int:
        return self.P.shape[0]

    @property
    def n_actions(self) -> int:
        return self.P.shape[1]

    def infinite(self) -> TabularMDP:
        """The same MDP without truncation (the setting of the convergence theorems)."""
        return TabularMDP(self.P, self.R, self.rho, self.gamma, None)


@dataclass(frozen=True)
class Evaluation:
    J: torch.Tensor  # objective: truncated at the horizon if the MDP has one
    V: torch.Tensor  # (S,) infinite-horizon state values
    Q: torch.Tensor  # (S, A)
    nu: torch.Tensor  # (S,) normalised discounted state visitation from rho

    @property
    def advantage(self) -> torch.Tensor:
        return self.Q - self.V[:, None]


def truncated_return(mdp: TabularMDP, pi: torch.Tensor) -> torch.Tensor:
    """``J(pi)`` under the MDP's horizon (or infinite when it has none).

    ``sum_{t<H} M^t = (I - M^H)(I - M)^-1`` with ``M = gamma P_pi``: one solve and a matrix power.
    """
    M = mdp.gamma * torch.einsum("sa,sat->st", pi, mdp.P)
    v = torch.linalg.solve(torch.eye(mdp.n_states, dtype=DTYPE) - M, (pi * mdp.R).sum(-1))
    if mdp.horizon is not None:
        v = v - torch.linalg.matrix_power(M, mdp.horizon) @ v
    return mdp.rho @ v


def evaluate(mdp: TabularMDP, pi: torch.Tensor) -> Evaluation:
    """Exact evaluation by linear solves (differentiable in ``pi``)."""
    P_pi = torch.einsum("sa,sat->st", pi, mdp.P)
    r_pi = (pi * mdp.R).sum(-1)
    M = torch.eye(mdp.n_states, dtype=DTYPE) - mdp.gamma * P_pi
    V = torch.linalg.solve(M, r_pi)
    Q = mdp.R + mdp.gamma * mdp.P @ V
    nu = (1.0 - mdp.gamma) * torch.linalg.solve(M.T, mdp.rho)
    J = mdp.rho @ V if mdp.horizon is None else truncated_return(mdp, pi)
    return Evaluation(J, V, Q, nu)


def value_iteration(mdp: TabularMDP, tol: float = 1e-12) -> tuple[float, torch.Tensor]:
    """Optimal objective (backward induction over the horizon, or to ``tol`` without one) and the
    infinite-horizon optimal ``Q*``; ``Q*.argmax(-1)`` is an optimal stationary policy."""
    V = torch.zeros(mdp.n_states, dtype=DTYPE)
    J_opt = None
    for k in range(1, 100_000):
        V_next = (mdp.R + mdp.gamma * mdp.P @ V).max(-1).values
        if k == mdp.horizon:
            J_opt = float(mdp.rho @ V_next)
        done = float((V_next - V).abs().max()) < tol
        V = V_next
        if done and (mdp.horizon is None or k >= mdp.horizon):
            break
    Q = mdp.R + mdp.gamma * mdp.P @ V
    return (float(mdp.rho @ V) if J_opt is None else J_opt), Q


def sampled_evaluation(
    mdp: TabularMDP,
    pi: torch.Tensor,
    rng: np.random.Generator,
    episodes: int = 500,
    steps: int = 49,
    method: str = "td",
    step_size: float = 0.3,
) -> Evaluation:
    """The paper's data-based evaluation: ``episodes`` rollouts of ``steps`` steps with ``pi``.

    ``Q`` by expected-SARSA TD(0) (``method="td"``, constant ``step_size``, one pass in visit order)
    or by every-visit Monte-Carlo returns (``method="mc"``, truncated at the
    episode end); ``nu`` is the discounted visit histogram; ``J`` the mean discounted return.
    Unvisited pairs keep ``Q = 0``.
    """
    if method not in ("td", "mc"):
        raise ValueError(f"method must be 'td' or 'mc', got {method!r}")
    P, R = mdp.P.numpy(), mdp.R.numpy()
    pol = pi.detach().numpy()
    S, A = R.shape
    gamma = mdp.gamma
    cum_P, cum_pi = P.cumsum(-1), pol.cumsum(-1)
    # Roll all episodes in parallel, one time step at a time.
    states = np.empty((episodes, steps + 1), dtype=np.int64)
    actions = np.empty((episodes, steps), dtype=np.int64)
    states[:, 0] = rng.choice(S, size=episodes, p=mdp.rho.numpy())
    for t in range(steps):
        s = states[:, t]
        a = np.minimum((rng.random(episodes)[:, None] > cum_pi[s]).sum(-1), A - 1)
        actions[:, t] = a
        states[:, t + 1] = np.minimum((rng.random(episodes)[:, None] > cum_P[s, a]).sum(-1), S - 1)
    rewards = R[states[:, :-1], actions]
    discounts = gamma ** np.arange(steps)
    nu = np.zeros(S)
    np.add.at(nu, states[:, :-1], np.broadcast_to(discounts, states[:, :-1].shape))
    nu /= nu.sum()
    Q = np.zeros((S, A))
    if method == "td":
        for e in range(episodes):
            for t in range(steps):
                s, a, s2 = states[e, t], actions[e, t], states[e, t + 1]
                target = rewards[e, t] + gamma * pol[s2] @ Q[s2]
                Q[s, a] += step_size * (target - Q[s, a])
    else:
        returns = reward_to_go(rewards, gamma)
        total, count = np.zeros((S, A)), np.zeros((S, A))
        np.add.at(total, (states[:, :-1], actions), returns)
        np.add.at(count, (states[:, :-1], actions), 1.0)
        Q = np.divide(total, count, out=np.zeros_like(total), where=count > 0)
    J = float((rewards * discounts).sum(-1).mean())
    Qt = torch.as_tensor(Q, dtype=DTYPE)
    return Evaluation(torch.tensor(J, dtype=DTYPE), (pi.detach() * Qt).sum(-1), Qt, torch.as_tensor(nu))

