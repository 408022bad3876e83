"""The TRPO step of BO-MRL's meta-parameters (and of any diagonal-Gaussian policy given as a parameter dict).

One routine for every learner: the natural-gradient direction ``F^-1 g`` by conjugate gradient on
Fisher-vector products (double backward through the mean KL, so the Fisher matrix is never formed),
scaled so the quadratic model of the KL equals ``max_kl``, then a backtracking line search (halvings)
that accepts the first candidate whose measured KL respects the bound (unless ``check_kl`` is off) and,
when an objective is given, whose gain reaches ``accept_ratio`` of the linear prediction.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from metarl_agents.bomrl.cg import conjugate_gradient, dot

Params = dict[str, torch.Tensor]
#: ``params, states -> (mean, log_std)`` of a diagonal-Gaussian policy, differentiable in ``params``.
Distribution = Callable[[Params, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def gaussian_kl(mean_p, log_std_p, mean_q, log_std_q) -> torch.Tensor:
    """``KL(N_p || N_q)`` of diagonal Gaussians, summed over action dimensions."""
    var_p, var_q = (2 * log_std_p).exp(), (2 * log_std_q).exp()
    kl = log_std_q - log_std_p + (var_p + (mean_p - mean_q) ** 2) / (2 * var_q) - 0.5
    return kl.sum(-1)


def kl_and_fisher_product(distribution: Distribution, phi: Params, names: Sequence[str], states: torch.Tensor
                          ) -> tuple[Callable[[Params], torch.Tensor], Callable[[list[torch.Tensor]], list[torch.Tensor]]]:
    """TRPO's two ingredients for the diagonal-Gaussian policy ``distribution`` at ``phi`` on ``states``.

    Returns ``kl(params)``, the mean ``KL(pi_phi || pi_params)`` over the states, and ``fvp(v)``, the
    product of its Hessian at ``phi`` (the Fisher matrix) with ``v``: one double-backward per product,
    so the Fisher matrix is never formed.
    """
    mean_old, log_std_old = (t.detach() for t in distribution(phi, states))

    def kl(params: Params) -> torch.Tensor:
        return gaussian_kl(mean_old, log_std_old, *distribution(params, states)).mean()

    at_phi = {n: phi[n].clone().requires_grad_(True) for n in names}
    grad_kl = torch.autograd.grad(kl(at_phi), [at_phi[n] for n in names], create_graph=True)

    def fvp(v: list[torch.Tensor]) -> list[torch.Tensor]:
        return list(torch.autograd.grad(grad_kl, [at_phi[n] for n in names], v, retain_graph=True))

    return kl, fvp


@dataclass
class TRPOStep:
    """The outcome of :func:`trpo_step`: the accepted parameters (``None``: no step) and what it did."""

    params: Params | None
    #: The accepted candidate's mean KL from ``phi`` (0 without a step).
    kl: float
    #: The objective's gain at the accepted candidate (0 without a step or without an objective).
    improvement: float
    #: The measured KL of the first (full) candidate (0 when none was tried), and how many times the search
    #: halved the step (``line_search_steps`` when it ran out): which of the two tests cut a step shows here.
    full_step_kl: float = 0.0
    halvings: int = 0


def trpo_step(distribution: Distribution, phi: Params, names: Sequence[str], gradient: list[torch.Tensor],
              states: torch.Tensor, max_kl: float, cg_iterations: int, cg_damping: float,
              line_search_steps: int = 10, objective: Callable[[Params], torch.Tensor] | None = None,
              accept_ratio: float = 0.0, objective_before: torch.Tensor | float | None = None,
              check_kl: bool = True) -> TRPOStep:
    """Natural-gradient ascent along ``gradient`` within ``KL(pi_phi || pi_new) <= max_kl`` on ``states``.

    The line search halves the step until the measured KL holds and, if ``objective`` (the estimate
    the step is judged on; ``gradient`` must be an estimate of its gradient at ``phi``) is given, until
    it improves by more than ``accept_ratio`` of the linear prediction ``gradient . step``.
    ``objective_before`` is ``objective(phi)`` if already known. ``check_kl=False`` drops the KL test
    (the BO-MRL authors' line search): the bound then only sets the first candidate's size through the
    quadratic model, which can underestimate the KL of a long step. A direction of non-positive or
    non-finite curvature gives no step; so does a search that runs out of halvings.
    """
    kl, fvp = kl_and_fisher_product(distribution, phi, names, states)
    direction = conjugate_gradient(fvp, gradient, cg_iterations, cg_damping).x
    curvature = float(dot(direction, fvp(direction)))
    if not math.isfinite(curvature) or curvature <= 0:
        return TRPOStep(None, 0.0, 0.0)
    scale = math.sqrt(2 * max_kl / curvature)
    expected = float(dot(gradient, direction))
    before = 0.0
    if objective is not None:
        with torch.no_grad():
            before = float(objective(phi) if objective_before is None else objective_before)
    full_step_kl = 0.0
    for halvings in range(line_search_steps):
        candidate = {k: phi[k] + scale * d for k, d in zip(names, direction, strict=True)}
        with torch.no_grad():
            step_kl = float(kl(candidate))
        if halvings == 0:
            full_step_kl = step_kl
        if step_kl <= max_kl or not check_kl:
            if objective is None:
                return TRPOStep(candidate, step_kl, 0.0, full_step_kl, halvings)
            with torch.no_grad():
                improvement = float(objective(candidate)) - before
            if improvement > accept_ratio * scale * expected:
                return TRPOStep(candidate, step_kl, improvement, full_step_kl, halvings)
        scale /= 2
    return TRPOStep(None, 0.0, 0.0, full_step_kl, line_search_steps)
