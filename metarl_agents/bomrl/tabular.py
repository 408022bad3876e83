"""Tabular BO-MRL: softmax meta-policy, exact lower-level solvers and the implicit hypergradient.

Policies are logits of shape ``(S, A)``; ``softmax(logits, -1)`` is the policy. The lower level
``argmax_pi E_{s~nu} E_{a~pi} [A(s, a)] - lam D(pi, pi_phi)`` is separable over states, so every solver
and every Hessian works per state:

* Alg1 (``D = KL(pi_phi || pi)``, PPO-like): ``p_a = lam p_phi,a / (mu - q_a)``, ``mu`` by bisection;
* Alg2 (``D = KL(pi || pi_phi)``, NPG / mirror descent): ``theta = phi + Q / lam``;
* Alg3 (``D = ||theta - phi||^2``, PG-like): gradient ascent on
  ``sum_s nu(s) <softmax theta_s, A_s> - lam ||theta - phi||^2``.

Alg1 and Alg2 use the per-state objective divided by ``nu(s)`` (same maximiser wherever
``nu(s) > 0``, and a well-defined one elsewhere). ``Q`` may replace ``A`` throughout: the two
differ by a per-state constant, which a distribution over actions cannot see.

Hypergradient (implicit differentiation). With ``g(theta, phi) = grad_theta F`` and the lower-level
solution ``theta'`` (``g(theta', phi) = 0``), ``d theta'/d phi = -H^-1 dg/dphi`` with ``H`` the
per-state ``A x A`` Hessian. Softmax is shift-invariant, so ``H`` is singular along the all-ones
vector for Alg1/Alg2; it is inverted on the complement of that vector. Then
``grad_phi J(theta') = -d/dphi <g(theta', phi), H^+ grad_theta J(theta')>`` with ``theta'`` and the
solve held fixed, and autograd carries ``d/dphi`` through the exact evaluation, so the dependence
of ``Q^{pi_phi}`` and ``nu^{pi_phi}`` on ``phi`` is included.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from metarl_agents.bomrl.mdp import (
    DTYPE,
    Evaluation,
    TabularMDP,
    evaluate,
    sampled_evaluation,
    single_threaded,
    truncated_return,
)

ALGS = (1, 2, 3)
HYPERGRADIENTS = ("implicit", "first_order")
EVALUATIONS = ("exact", "td", "mc")
SOLVERS = ("exact", "authors")


def check_alg(alg: int) -> int:
    if alg not in ALGS:
        raise ValueError(f"alg must be one of {ALGS}, got {alg!r}")
    return alg


def check_lam(lam: float) -> float:
    if isinstance(lam, bool) or not isinstance(lam, (int, float, np.integer, np.floating)) or not 0 < lam < math.inf:
        raise ValueError(f"lam (the regularisation weight lambda) must be a finite number > 0, got {lam!r}")
    return float(lam)


# ----------------------------------------------------------------------------------------------
# Lower level
# ----------------------------------------------------------------------------------------------


def lower_objective(alg: int, theta: torch.Tensor, phi: torch.Tensor, Q: torch.Tensor,
                    nu: torch.Tensor, lam: float) -> torch.Tensor:
    """Per-state lower-level objective ``(S,)`` (up to terms constant in ``theta``)."""
    p = torch.softmax(theta, -1)
    gain = (p * Q).sum(-1)
    if alg == 1:
        return gain + lam * (torch.softmax(phi, -1) * torch.log_softmax(theta, -1)).sum(-1)
    if alg == 2:
        return gain - lam * (p * (torch.log_softmax(theta, -1) - torch.log_softmax(phi, -1))).sum(-1)
    return nu * gain - lam * ((theta - phi) ** 2).sum(-1)


def solve_alg1(phi: torch.Tensor, Q: torch.Tensor, lam: float, iterations: int = 200) -> torch.Tensor:
    """Exact Alg1 solution: ``mu`` in ``(max q, max q + lam]`` with ``sum_a lam p_a / (mu - q_a) = 1``.

    The left side decreases in ``mu``, so bisection to machine precision is safe and exact enough
    for finite differences of the whole pipeline.
    """
    p_phi = torch.softmax(phi, -1)
    q = Q - Q.max(-1, keepdim=True).values  # shift: the root now lies in (0, lam]
    lo = torch.zeros(q.shape[0], 1, dtype=q.dtype)
    hi = torch.full_like(lo, lam)
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        too_small = (lam * p_phi / (mid - q)).sum(-1, keepdim=True) > 1.0
        lo, hi = torch.where(too_small, mid, lo), torch.where(too_small, hi, mid)
        if bool(((hi - lo) <= 4 * torch.finfo(q.dtype).eps * hi).all()):
            break
    p = lam * p_phi / (hi - q)
    return torch.log(p / p.sum(-1, keepdim=True))


def solve_alg1_sgd(phi: torch.Tensor, Q: torch.Tensor, lam: float, steps: int = 20, lr: float = 0.6,
                   floor: float = 1e-4) -> torch.Tensor:
    """The authors' approximate Alg1 solver, as their released code runs it: ``steps`` plain gradient
    steps of size ``lr`` per state, from ``phi``, on ``-<p, Q> / lam + |A| KL(p_phi || p)``.

    The factor ``|A|`` (the number of actions) is theirs: their per-state loss adds the scalar KL to
    each of the ``|A|`` terms of ``-p * Q / lam`` before summing, so the solver regularises like an
    exact Alg1 with ``|A| lam`` (4 lam on Frozen Lake). Probabilities are floored at ``floor`` inside
    the KL, as theirs are.
    """
    p_phi = torch.softmax(phi, -1).clamp(floor, 1.0)
    theta = phi.detach().clone().requires_grad_(True)
    n_actions = phi.shape[-1]
    for _ in range(steps):
        p = torch.softmax(theta, -1)
        kl = (p_phi * (p_phi.log() - p.clamp(floor, 1.0).log())).sum()
        loss = -(p * Q).sum() / lam + n_actions * kl
        (grad,) = torch.autograd.grad(loss, theta)
        theta = (theta - lr * grad).detach().requires_grad_(True)
    return theta.detach()


def solve_alg2(phi: torch.Tensor, Q: torch.Tensor, lam: float) -> torch.Tensor:
    """Closed form of mirror descent: ``pi' ~ pi_phi exp(Q / lam)``."""
    return phi + Q / lam


def solve_alg3(phi: torch.Tensor, Q: torch.Tensor, nu: torch.Tensor, lam: float,
               tol: float = 1e-13, max_iterations: int = 100_000) -> torch.Tensor:
    """Gradient ascent, per state with step ``1 / L_s`` (``L_s`` bounds the curvature)."""
    A = Q - Q.mean(-1, keepdim=True)
    step = 1.0 / (2.0 * lam + nu[:, None] * 2.0 * A.abs().amax(-1, keepdim=True) + 1e-300)
    theta = phi.clone()
    for _ in range(max_iterations):
        p = torch.softmax(theta, -1)
        grad = nu[:, None] * p * (A - (p * A).sum(-1, keepdim=True)) - 2.0 * lam * (theta - phi)
        theta = theta + step * grad
        if float(grad.abs().max()) < tol:
            break
    return theta


def solve_lower(alg: int, phi: torch.Tensor, ev: Evaluation, lam: float) -> torch.Tensor:
    """``Alg(pi_phi, lam, task)`` given the (exact or sampled) evaluation of ``pi_phi``."""
    phi, Q, nu = phi.detach(), ev.Q.detach(), ev.nu.detach()
    if alg == 1:
        return solve_alg1(phi, Q, lam)
    if alg == 2:
        return solve_alg2(phi, Q, lam)
    return solve_alg3(phi, Q, nu, lam)


def alg_update(alg: int, lam: float, solver: str = "exact") -> Update:
    """The meta-test update ``logits -> Alg(pi_logits, lam)`` for :func:`adapt`.

    ``solver="authors"`` solves Alg1 as the authors' code does (:func:`solve_alg1_sgd`); the other
    algorithms have only the exact solver.
    """
    check_alg(alg)
    check_lam(lam)
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
    if solver == "authors":
        if alg != 1:
            raise ValueError(f"solver='authors' exists for alg 1 only, got alg {alg!r}")
        return lambda logits, ev: solve_alg1_sgd(logits.detach(), ev.Q.detach(), lam)
    return lambda logits, ev: solve_lower(alg, logits, ev, lam)


def maml_step(phi: torch.Tensor, ev: Evaluation, step: float = 50.0) -> torch.Tensor:
    """One exact policy-gradient step ``phi + step * nu * pi * A`` (the MAML-style baseline)."""
    p = torch.softmax(phi, -1)
    return phi.detach() + step * (ev.nu[:, None] * p * ev.advantage).detach()


# ----------------------------------------------------------------------------------------------
# Upper level
# ----------------------------------------------------------------------------------------------


def _solve_on_complement(H: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``x`` orthogonal to ones with ``Pi H Pi x = b`` (``b`` orthogonal to ones), per state."""
    n = H.shape[-1]
    ones = torch.full((n, n), 1.0 / n, dtype=H.dtype)
    proj = torch.eye(n, dtype=H.dtype) - ones
    M = proj @ H @ proj - ones  # the ones direction gets eigenvalue -1: invertible
    x = torch.linalg.solve(M, (b @ proj)[..., None])[..., 0]
    return x @ proj


def hypergradient(mdp: TabularMDP, phi: torch.Tensor, alg: int, lam: float,
                  mode: str = "implicit") -> tuple[float, torch.Tensor]:
    """``J(Alg(pi_phi, lam))`` and its gradient with respect to ``phi`` (exact evaluation)."""
    check_alg(alg)
    if mode not in HYPERGRADIENTS:
        raise ValueError(f"mode must be one of {HYPERGRADIENTS}, got {mode!r}")
    phi = phi.detach().clone().requires_grad_(True)
    ev = evaluate(mdp, torch.softmax(phi, -1))
    theta = solve_lower(alg, phi, ev, lam).requires_grad_(True)
    J = truncated_return(mdp, torch.softmax(theta, -1))
    (grad_J,) = torch.autograd.grad(J, theta)
    if mode == "first_order":
        return float(J.detach()), grad_J
    f = lower_objective(alg, theta, phi, ev.Q, ev.nu, lam).sum()
    (g,) = torch.autograd.grad(f, theta, create_graph=True)
    A = g.shape[1]
    H = torch.stack([torch.autograd.grad(g[:, j].sum(), theta, retain_graph=True)[0] for j in range(A)], 1)
    v = _solve_on_complement(H.detach(), grad_J)
    (grad_phi,) = torch.autograd.grad(-(g * v).sum(), phi)
    return float(J.detach()), grad_phi


Update = Callable[[torch.Tensor, Evaluation], torch.Tensor]


def adapt(mdp: TabularMDP, logits: torch.Tensor, update: Update, rounds: int,
          evaluation: str = "exact", rng: np.random.Generator | None = None,
          episodes: int = 500) -> tuple[list[float], torch.Tensor]:
    """K rounds of (evaluate the current policy -> ``update``), as at meta-test.

    Returns the exact objective after 0..rounds rounds and the final logits. With a sampled
    ``evaluation`` ("td"/"mc") each round collects ``episodes`` fresh episodes of the MDP's horizon.
    """
    if evaluation not in EVALUATIONS:
        raise ValueError(f"evaluation must be one of {EVALUATIONS}, got {evaluation!r}")
    if evaluation != "exact" and rng is None:
        raise ValueError("a sampled evaluation needs rng (a numpy Generator)")
    if isinstance(rounds, bool) or not isinstance(rounds, (int, np.integer)) or rounds < 0:
        raise ValueError(f"rounds must be an integer >= 0, got {rounds!r}")
    logits = logits.detach().clone()
    returns = [float(truncated_return(mdp, torch.softmax(logits, -1)))]
    for _ in range(rounds):
        pi = torch.softmax(logits, -1)
        if evaluation == "exact":
            ev = evaluate(mdp, pi)
        else:
            ev = sampled_evaluation(mdp, pi, rng, episodes, mdp.horizon or 49, method=evaluation)
        logits = update(logits, ev)
        returns.append(float(truncated_return(mdp, torch.softmax(logits, -1))))
    return returns, logits


@dataclass
class TabularBOMRL:
    """Meta-trains the logits ``phi`` of a softmax meta-policy for ``Alg(., lam_train)`` by Adam on the mean
    adapted return over tasks; the defaults are the BO-MRL paper's Frozen Lake meta-training settings."""

    n_states: int
    n_actions: int
    alg: int = 1
    lam_train: float = 5.0
    lr: float = 0.03
    phi_init: float = 0.1
    hypergradient: str = "implicit"
    phi: torch.Tensor = field(init=False)
    history: list[float] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        check_alg(self.alg)
        check_lam(self.lam_train)
        if self.hypergradient not in HYPERGRADIENTS:
            raise ValueError(f"hypergradient must be one of {HYPERGRADIENTS}, got {self.hypergradient!r}")
        self.phi = torch.full((self.n_states, self.n_actions), float(self.phi_init), dtype=DTYPE)

    def meta_train(self, sample_tasks: Callable[[int], Sequence[TabularMDP]], iterations: int = 150,
                   tasks_per_iteration: int = 5) -> list[float]:
        """Adam ascent on the mean post-adaptation return of freshly sampled tasks.

        ``history`` records that mean (before each step) per iteration.
        """
        param = torch.nn.Parameter(self.phi.clone())
        optimiser = torch.optim.Adam([param], lr=self.lr)
        with single_threaded():
            for _ in range(iterations):
                tasks = sample_tasks(tasks_per_iteration)
                results = [hypergradient(m, param.data, self.alg, self.lam_train, self.hypergradient) for m in tasks]
                self.history.append(float(np.mean([J for J, _ in results])))
                param.grad = -torch.stack([g for _, g in results]).mean(0)
                optimiser.step()
        self.phi = param.data.clone()
        return self.history

    def adapt(self, mdp: TabularMDP, rounds: int, lam: float, alg: int | None = None,
              evaluation: str = "exact", rng: np.random.Generator | None = None,
              logits: torch.Tensor | None = None) -> tuple[list[float], torch.Tensor]:
        """Meta-test on one task: ``rounds`` rounds of ``Alg(., lam)`` from the meta-policy."""
        update = alg_update(self.alg if alg is None else alg, lam)
        return adapt(mdp, self.phi if logits is None else logits, update, rounds, evaluation, rng)

    def meta_test(self, mdps: Sequence[TabularMDP], rounds: int, lam: float, **kwargs) -> np.ndarray:
        """Exact returns, shape ``(n_tasks, rounds + 1)``."""
        with single_threaded():
            return np.array([self.adapt(m, rounds, lam, **kwargs)[0] for m in mdps])
