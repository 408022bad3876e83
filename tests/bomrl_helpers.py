"""Tabular BO-MRL helpers used only by the tests: random MDPs and the adapted return without gradients."""

from __future__ import annotations

import numpy as np
import torch

from metarl_agents.bomrl.mdp import TabularMDP, evaluate, truncated_return
from metarl_agents.bomrl.tabular import solve_lower


def random_mdp(n_states: int, n_actions: int, seed: int, gamma: float = 0.8,
               horizon: int | None = None) -> TabularMDP:
    """A dense random MDP (Dirichlet transitions, uniform rewards in [-1, 1])."""
    rng = np.random.default_rng(seed)
    P = rng.dirichlet(np.ones(n_states) * 0.5, size=(n_states, n_actions))
    R = rng.uniform(-1.0, 1.0, size=(n_states, n_actions))
    rho = rng.dirichlet(np.ones(n_states))
    return TabularMDP.from_arrays(P, R, rho, gamma, horizon)


def adapted_return(mdp: TabularMDP, phi: torch.Tensor, alg: int, lam: float) -> float:
    """``J(Alg(pi_phi, lam))`` without gradients (for finite differences of the hypergradient)."""
    ev = evaluate(mdp, torch.softmax(phi, -1))
    return float(truncated_return(mdp, torch.softmax(solve_lower(alg, phi, ev, lam), -1)))
