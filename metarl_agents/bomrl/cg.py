"""Parameter-shaped vectors (lists of tensors) and conjugate gradient on them.

BO-MRL solves two linear systems without forming a matrix: the lower-level Hessian against the outer
policy gradient (the implicit hypergradient) and the Fisher matrix against the meta-gradient (the TRPO
step). Both see the matrix only through matrix-vector products on lists of parameter tensors.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch


def dot(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> torch.Tensor:
    """The inner product of two parameter-shaped vectors."""
    return sum((x * y).sum() for x, y in zip(a, b, strict=True))


def cosine(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> float:
    """The cosine of two parameter-shaped vectors (0 when either is zero)."""
    norms = float(torch.sqrt(dot(a, a) * dot(b, b)))
    return float(dot(a, b)) / norms if norms > 0 else 0.0


@dataclass
class CGSolution:
    """What :func:`conjugate_gradient` found: the solution and how the solve went."""

    x: list[torch.Tensor]
    #: Iterations run (each one Hessian-vector product, besides the power iterations).
    iterations: int
    #: Whether the solve stopped at a direction of non-positive curvature ``p^T (H + damping I) p <= 0``.
    nonpositive_curvature: bool
    #: The damping actually added: ``damping + relative_damping * eigenvalue_scale``.
    damping: float
    #: The power-iteration estimate of ``|lambda|_max(H)`` (0 when no power iterations ran).
    eigenvalue_scale: float


def dominant_eigenvalue_magnitude(hvp: Callable[[list[torch.Tensor]], list[torch.Tensor]],
                                  start: list[torch.Tensor], iterations: int) -> float:
    """``|lambda|_max`` of the symmetric ``H`` behind ``hvp`` by ``iterations`` power iterations from ``start``.

    A few iterations give a lower bound within a small factor: enough to scale a damping term, which
    is what it is for.
    """
    norm = float(torch.sqrt(dot(start, start)))
    if iterations < 1 or not math.isfinite(norm) or norm == 0.0:
        return 0.0
    v = [t / norm for t in start]
    estimate = 0.0
    for _ in range(iterations):
        Hv = hvp(v)
        estimate = float(torch.sqrt(dot(Hv, Hv)))
        if not math.isfinite(estimate) or estimate == 0.0:
            return estimate if math.isfinite(estimate) else 0.0
        v = [t / estimate for t in Hv]
    return estimate


def conjugate_gradient(hvp: Callable[[list[torch.Tensor]], list[torch.Tensor]], b: list[torch.Tensor],
                       iterations: int, damping: float = 0.0, relative_damping: float = 0.0,
                       power_iterations: int = 5) -> CGSolution:
    """Approximately solve ``(H + delta I) x = b`` from Hessian-vector products; truncated CG.

    ``delta = damping + relative_damping * |lambda|_max(H)``, the eigenvalue scale estimated by
    ``power_iterations`` power iterations (only when ``relative_damping > 0``): an absolute damping
    means nothing against a Hessian whose scale moves with the reward scale and ``1 / lam``.

    Plain CG assumes a positive-definite matrix. The lower-level Hessian of BO-MRL at an inexact
    minimiser is indefinite, and there the step ``alpha = r.r / p.Hp`` flips sign or explodes, so the
    solution can point anywhere. Like truncated Newton methods, the solve therefore stops at the first
    direction of non-positive curvature and keeps the last iterate, which (as every CG iterate from
    zero) has a positive inner product with ``b``; if that happens on the first iteration, ``b`` itself
    is returned, scaled by ``b.b / |b.(H + delta I)b|``. On a positive-definite matrix nothing changes.
    """
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations!r}")
    if damping < 0 or relative_damping < 0:
        raise ValueError(f"damping and relative_damping must be >= 0, got {damping!r} and {relative_damping!r}")
    scale = dominant_eigenvalue_magnitude(hvp, b, power_iterations) if relative_damping > 0 else 0.0
    delta = damping + relative_damping * scale
    x = [torch.zeros_like(t) for t in b]
    r = [t.clone() for t in b]
    p = [t.clone() for t in b]
    rr = dot(r, r)
    done, nonpositive = 0, False
    for k in range(iterations):
        if float(rr) < 1e-20:
            break
        Hp = [h + delta * q for h, q in zip(hvp(p), p, strict=True)]
        curvature = dot(p, Hp)
        done = k + 1
        if not float(curvature) > 0:  # also catches NaN
            nonpositive = True
            if k == 0:
                size = abs(float(curvature))
                factor = float(rr) / size if math.isfinite(size) and size > 0 else 1.0
                x = [factor * t for t in b]
            break
        alpha = rr / curvature
        x = [xi + alpha * pi for xi, pi in zip(x, p, strict=True)]
        r = [ri - alpha * hi for ri, hi in zip(r, Hp, strict=True)]
        rr_new = dot(r, r)
        p = [ri + (rr_new / rr) * pi for ri, pi in zip(r, p, strict=True)]
        rr = rr_new
    return CGSolution(x, done, nonpositive, delta, scale)
