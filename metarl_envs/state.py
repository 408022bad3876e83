"""Environment state that its owner names, for checkpoints that survive new attributes.

Each object that holds step-to-step state (a family core, the trial runner, its random streams, the
Gymnasium envs and the wrappers) lists the attributes the next step depends on and the parts that
hold state of their own. Checkpoints read and write exactly those, through :meth:`StateOwner.state_dict`
and :meth:`StateOwner.load_state_dict`, so a cache or constant added to a class later neither enters
a checkpoint nor invalidates one. Values are numpy arrays, numbers, strings, ``None``, generator
states (dicts) and nested lists / dicts of those, which ``torch.load(weights_only=True)`` can read
once arrays are turned into tensors.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np


class StateOwner:
    """Mixin: ``state_dict()`` / ``load_state_dict()`` over the attributes named by the class.

    ``state_attributes``: the values the next step depends on (arrays over copies, counters, flags,
    ``np.random.Generator`` s). ``state_parts``: attributes that are themselves :class:`StateOwner` s.
    Configuration (spaces, kwargs, constant tables, caches derived from the state) is left out: a
    fresh object built with the same settings already has it.
    """

    state_attributes: ClassVar[tuple[str, ...]] = ()
    state_parts: ClassVar[tuple[str, ...]] = ()

    def state_dict(self) -> dict[str, Any]:
        """A copy of this object's state, with the state of its parts nested under their names."""
        state = {name: _export(getattr(self, name)) for name in self.state_attributes}
        state.update({name: getattr(self, name).state_dict() for name in self.state_parts})
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Put ``state`` (from :meth:`state_dict` of an object of the same settings) into this object.

        Keys this object does not own are ignored; a missing one raises ``ValueError`` naming it.
        """
        if not isinstance(state, Mapping):
            raise ValueError(f"{type(self).__name__}: a state must be a dict, got {type(state).__name__}")
        missing = [name for name in (*self.state_attributes, *self.state_parts) if name not in state]
        if missing:
            raise ValueError(f"{type(self).__name__}: the state lacks {missing} (it holds {sorted(state)})")
        for name in self.state_parts:
            getattr(self, name).load_state_dict(state[name])
        for name in self.state_attributes:
            self._load_value(name, state[name])

    def _load_value(self, name: str, saved: Any) -> None:
        current = getattr(self, name)
        if isinstance(saved, Mapping) and "bit_generator" in saved:
            if not isinstance(current, np.random.Generator) or current.bit_generator.state["bit_generator"] \
                    != saved["bit_generator"]:
                current = np.random.Generator(_bit_generator(saved["bit_generator"]))
            current.bit_generator.state = dict(saved)
            setattr(self, name, current)
        elif isinstance(current, np.ndarray) and current.flags.writeable and np.shape(saved) == current.shape:
            current[...] = saved  # in place: views of it (MuJoCo's bound fields, shared arrays) stay live
        elif isinstance(current, np.ndarray):
            saved = np.array(saved, dtype=current.dtype)
            if saved.ndim != current.ndim or saved.shape[:1] != current.shape[:1]:
                raise ValueError(f"{type(self).__name__}.{name}: the state holds shape {saved.shape}, this object "
                                 f"{current.shape} (built with other settings?)")
            setattr(self, name, saved)
        elif isinstance(current, np.generic):
            setattr(self, name, current.dtype.type(saved))
        else:
            setattr(self, name, copy.deepcopy(saved))


def _export(value: Any) -> Any:
    if isinstance(value, np.random.Generator):
        return copy.deepcopy(value.bit_generator.state)
    return np.array(value, copy=True) if isinstance(value, np.ndarray) else copy.deepcopy(value)


_BIT_GENERATORS = ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")


def _bit_generator(name: Any) -> np.random.BitGenerator:
    if name not in _BIT_GENERATORS:
        raise ValueError(f"unknown random bit generator {name!r} in a state; allowed: {list(_BIT_GENERATORS)}")
    return getattr(np.random, name)()
