"""Checking one setting against its kind and range, with a one-line message naming the value and what is allowed.

The run configuration and the policy settings check their values with these. They live below both so that
neither imports the other for it (the configuration checks agent names against the policy registry, and the
policies check their own kwargs).

A setting's description ``meta`` is a mapping with ``kind`` (int, float, bool, str or dict), ``low`` and
``high`` (inclusive bounds or None), ``low_open`` (the low bound excluded), ``optional`` (None allowed) and,
for a string, ``choices`` (the allowed ones, if only some are).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else f"{value:g}"


def allowed_values(meta: Mapping[str, Any]) -> str:
    kind, low, high = meta["kind"], meta["low"], meta["high"]
    if kind is bool:
        text = "true or false"
    elif kind is dict:
        text = "a table of keyword arguments"
    elif kind is str:
        text = f"one of {', '.join(meta['choices'])}" if meta.get("choices") else "a string"
    else:
        noun = "an integer" if kind is int else "a finite number"
        if low is not None and high is not None:
            text = f"{noun} in {'(' if meta['low_open'] else '['}{_number(low)}, {_number(high)}]"
        elif low is not None:
            text = f"{noun} {'>' if meta['low_open'] else '>='} {_number(low)}"
        else:
            text = noun
    return text + (" or none" if meta["optional"] else "")


def check_value(name: str, value: Any, meta: Mapping[str, Any]) -> Any:
    """``value`` converted to the field's type (an integral float such as 1.5e6 is an int), or ValueError."""
    kind = meta["kind"]
    if value is None and meta["optional"]:
        return None
    bad = ValueError(f"{name} must be {allowed_values(meta)}, got {value!r}")
    if kind is bool:
        if type(value).__name__ not in ("bool", "bool_"):
            raise bad
        return bool(value)
    if kind is str:
        choices = meta.get("choices")
        if not isinstance(value, str) or not value or (choices and value not in choices):
            raise bad
        return value
    if kind is dict:
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            raise bad
        return dict(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)) and not hasattr(value, "__index__") \
            and not hasattr(value, "__float__"):
        raise bad
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise bad from None
    if not math.isfinite(number):
        raise bad
    if kind is int:
        if number != int(number):
            raise bad
        number = int(value) if hasattr(value, "__index__") else int(number)
    low, high = meta["low"], meta["high"]
    if low is not None and (number < low or (meta["low_open"] and number == low)):
        raise bad
    if high is not None and number > high:
        raise bad
    return number


def check_setting(name: str, value: Any, kind: type, low: float | None = None, high: float | None = None, *,
                  low_open: bool = False, optional: bool = False) -> Any:
    """``value`` checked and converted as a run-configuration field of that kind and range would be, with the
    same one-line message (for settings that live elsewhere, e.g. the policy kwargs)."""
    return check_value(name, value, {"kind": kind, "low": low, "high": high, "low_open": low_open, "optional": optional})


def check_count(name: str, value: Any) -> int:
    """``value`` as an int if it is an integer >= 1 (a bool or a float is not), else ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)
