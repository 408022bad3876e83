"""The BO-MRL paper's optimality-gap bounds (one round; K rounds of Alg2), evaluated exactly on tabular tasks.

Comparator. The bounds compare with a near-optimal policy ``pi* = softmax(Q* / temperature)``:
a deterministic optimum makes ``KL(pi_phi || pi*)`` (Alg1's direction) infinite, and ties between
optimal actions (e.g. in absorbing cells) are shared instead of broken arbitrarily. At the default
temperature 0.005 its return is within ~1e-8 of the optimum on Frozen Lake.

* One round (the paper's plotted form): ``gap_1 <= (1 + gamma) / (1 - gamma) * lam * V``,
  ``V = sum_s nu_phi(s) D_s(pi*, pi_phi)`` with ``D_s`` the divergence of the Alg itself:
  ``KL(pi_phi || pi*)`` for Alg1, ``KL(pi* || pi_phi)`` for Alg2.
* K rounds of Alg2 (exact policy mirror descent, step ``1/lam``; Xiao 2022, sublinear rate):
  ``gap_K <= [lam E_{s ~ d*} KL(pi* || pi_phi) + (r_max - r_min) / (1 - gamma)] / (K (1 - gamma))``,
  ``d*`` the normalised discounted visitation of ``pi*``. This one is a theorem for the
  infinite-horizon return against ``pi*``; the truncated 49-step gap reported beside it differs by
  O(gamma^49).
"""

from __future__ import annotations

import torch

from metarl_agents.bomrl.mdp import TabularMDP, evaluate, value_iteration


def near_optimal_logits(mdp: TabularMDP, temperature: float = 0.005) -> torch.Tensor:
    """Log-probabilities of ``softmax(Q* / temperature)`` (kept in log space: they reach -1e3)."""
    _, Q_star = value_iteration(mdp.infinite())
    return torch.log_softmax(Q_star / temperature, -1)


def _kl(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """Per-state ``KL(p || q)`` from log-probabilities."""
    return (log_p.exp() * (log_p - log_q)).sum(-1)


def one_round_bound(mdp: TabularMDP, phi: torch.Tensor, alg: int, lam: float,
                    comparator: torch.Tensor | None = None) -> float:
    """``comparator``: log-probabilities (or logits) of the comparison policy; default near-optimal."""
    if alg not in (1, 2):
        raise ValueError(f"the one-round bound is defined for alg 1 and 2, got {alg!r}")
    log_star = near_optimal_logits(mdp) if comparator is None else torch.log_softmax(comparator, -1)
    log_phi = torch.log_softmax(phi, -1)
    nu = evaluate(mdp, log_phi.exp()).nu
    div = _kl(log_phi, log_star) if alg == 1 else _kl(log_star, log_phi)
    return float((1 + mdp.gamma) / (1 - mdp.gamma) * lam * (nu * div).sum())


def alg2_multi_round_bound(mdp: TabularMDP, phi: torch.Tensor, lam: float, rounds: int,
                           comparator: torch.Tensor | None = None) -> float:
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1 for the multi-round bound, got {rounds!r}")
    log_star = near_optimal_logits(mdp) if comparator is None else torch.log_softmax(comparator, -1)
    d_star = evaluate(mdp, log_star.exp()).nu
    kl = float((d_star * _kl(log_star, torch.log_softmax(phi, -1))).sum())
    span = float(mdp.R.max() - mdp.R.min())
    g = mdp.gamma
    return (lam * kl + span / (1 - g)) / (rounds * (1 - g))
