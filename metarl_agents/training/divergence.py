"""Finding where a non-finite number first appeared in a policy, and noticing training that has stalled.

When a rollout step or an update produces NaN, torch's distribution check fails with a dump of the
logits, far from the cause. :func:`first_nonfinite_module` runs the failing call again with forward hooks
on every submodule and names the first one (in the order they ran) whose output is not finite, so the
error names the layer (an observation normaliser fed ``obs_clip=nan``, a memory whose weights overflowed).

:class:`StallMonitor` watches the other way training goes wrong without an error: a learning rate so high
that the policy became deterministic at once and the return never moves again.
"""

from __future__ import annotations

import math
import warnings
from collections import deque
from collections.abc import Callable
from typing import Any

import torch as th


class TrainingStalledWarning(UserWarning):
    """The training return has not changed for many updates and the policy's entropy has collapsed."""


def _nonfinite(value: Any) -> bool:
    if isinstance(value, th.Tensor):
        return value.is_floating_point() and not bool(th.isfinite(value).all())
    if isinstance(value, (tuple, list)):
        return any(_nonfinite(item) for item in value)
    return False


def first_nonfinite_module(policy: th.nn.Module, call: Callable[[], Any]) -> str | None:
    """The name of the first submodule of ``policy`` whose output is non-finite while ``call`` runs (its
    input being finite), or None. ``call``'s own exception, if any, is swallowed: it is being diagnosed."""
    found: list[str] = []

    def hook(name: str) -> Callable:
        def record(module: th.nn.Module, inputs: Any, output: Any) -> None:
            if not found and _nonfinite(output) and not _nonfinite(inputs):
                found.append(f"{name} ({type(module).__name__})")
        return record

    handles = [module.register_forward_hook(hook(name)) for name, module in policy.named_modules() if name]
    try:
        with th.no_grad():
            call()
    except Exception:  # noqa: BLE001  (the error being explained)
        pass
    finally:
        for handle in handles:
            handle.remove()
    return found[0] if found else None


class StallMonitor:
    """Warn once when the return stays one constant value while the policy's entropy has collapsed (a
    near-deterministic policy that no longer explores, typically after a far too high learning rate).

    Two returns are watched: the mean training reward of the last ``window`` rollouts (:meth:`update`, which
    MetaPPO calls after every update) and, where a runner evaluates the model, the last ``evaluations``
    evaluation returns (:meth:`evaluated`). The entropy threshold is per action dimension:
    ``discrete_entropy`` nats for a discrete action (more than 99.9 % on one action), and that of a Gaussian
    with a standard deviation of ``gaussian_std`` for a continuous one.
    """

    window = 20
    evaluations = 5
    discrete_entropy = 0.01
    gaussian_std = 1e-3

    def __init__(self) -> None:
        self.rewards: deque[float] = deque(maxlen=self.window)
        self.returns: deque[float] = deque(maxlen=self.evaluations)
        self.entropy: float | None = None
        self.collapsed = False
        self.learning_rate = math.nan
        self.warned = False

    def update(self, mean_reward: float, entropy: float, action_dims: int, discrete: bool,
               learning_rate: float) -> None:
        """Record one rollout's mean reward and the update's mean entropy (per step, summed over dims)."""
        threshold = (self.discrete_entropy if discrete
                     else 0.5 * math.log(2 * math.pi * math.e) + math.log(self.gaussian_std))
        self.entropy, self.learning_rate = float(entropy), float(learning_rate)
        self.collapsed = self.entropy / max(1, action_dims) <= threshold
        self.rewards.append(float(mean_reward))
        if len(self.rewards) == self.window and _constant(self.rewards):
            self._warn(f"the mean training reward has been {self.rewards[-1]:g} for the last {self.window} rollouts")

    def evaluated(self, meta_episode_return: float) -> None:
        """Record an evaluation of the model (between two updates)."""
        self.returns.append(float(meta_episode_return))
        if len(self.returns) == self.evaluations and _constant(self.returns):
            self._warn(f"the evaluation return has been {self.returns[-1]:g} at the last {self.evaluations} "
                       "evaluations")

    def _warn(self, what: str) -> None:
        if self.warned or not self.collapsed:
            return
        self.warned = True
        warnings.warn(f"training has stalled: {what} and the policy's entropy has collapsed to {self.entropy:.3g} "
                      f"nats (it no longer explores). The learning rate ({self.learning_rate:g}) is probably too "
                      "high: train again with a lower one", TrainingStalledWarning, stacklevel=3)


def _constant(values: deque[float]) -> bool:
    return max(values) - min(values) <= 1e-9 * max(1.0, abs(max(values)))
