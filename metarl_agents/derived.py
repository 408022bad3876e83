"""Tensors derived from parameters or buffers, kept between rollout steps until a source changes.

A rollout step at batch 16 costs mostly per-operator overhead, so what it can take from the previous
step it should: a block-diagonal layer assembled from four, running statistics turned into float32.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch as th


def derived(owner: Any, name: str, sources: Sequence[th.Tensor], compute: Callable[[], Any]) -> Any:
    """``compute()``, cached on ``owner`` under ``name`` while no tensor of ``sources`` has changed.

    Only without grad (with grad the result must carry the graph, so it is computed every time).
    A source counts as changed when it is another tensor or was modified in place (an optimizer
    step, ``load_state_dict``, a statistics update): its ``_version`` counter moves. The cached
    tensors are ordinary tensors even when made under ``inference_mode``, so they can be copied,
    pickled and used in either mode.
    """
    if th.is_grad_enabled():
        return compute()
    key = tuple((id(t), t.data_ptr(), t._version) for t in sources)
    cache = owner.__dict__.get("_derived_cache")
    if cache is None:
        cache = owner.__dict__["_derived_cache"] = {}
    hit = cache.get(name)
    if hit is None or hit[0] != key:
        with th.inference_mode(False):
            hit = cache[name] = (key, compute())
    return hit[1]
