"""How much memory a request needs, checked before anything of that size is allocated.

The integer bounds of the kwargs (``MAX_NUM_ENVS``, ``MAX_INT_KWARG``) keep counters from overflowing,
but they cannot know the machine: ``num_envs=2**24`` copies of a Frozen Lake, a billion sampled tasks
or a frame enlarged a million times would end in a ``MemoryError`` (or the kernel's OOM killer) half
way through an allocation. Each such request is estimated here first and refused with a
``ValueError`` that names the argument, the estimate and the memory available.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

#: Vector envs with fewer copies are not estimated (no family needs megabytes per copy).
CHECK_FROM_NUM_ENVS = 4096
#: Per copy, what the runner allocates only once it steps: the random streams' block of 64 float64
#: numbers and the temporaries of their hash (about five arrays of that size).
STREAM_BYTES_PER_COPY = 5 * 64 * 8
#: A sampled task's list entry: the array object and the list's pointer to it.
TASK_OBJECT_BYTES = 128


def available_memory() -> int | None:
    """Bytes a new allocation can use: Linux's ``MemAvailable``, else the physical memory; None if unknown."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        return None


def describe_bytes(n: float) -> str:
    """``n`` bytes in binary units, e.g. ``"42.0 GiB"``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def check_fits_in_memory(request: str, needed: int, advice: str) -> None:
    """Refuse ``request`` (e.g. ``"num_envs=16777216"``) if it needs more than the memory available."""
    available = available_memory()
    if available is not None and needed > available:
        raise ValueError(f"{request} needs about {describe_bytes(needed)} of memory, more than the "
                         f"{describe_bytes(available)} available: {advice}")


def array_bytes(*objects: Any) -> int:
    """Bytes of the numpy arrays the objects hold as attributes (a view counts as much as an array: an
    estimate errs on the large side)."""
    return sum(value.nbytes for obj in objects for value in vars(obj).values() if isinstance(value, np.ndarray))
