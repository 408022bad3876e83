"""Counter-based random streams, one per environment copy.

Why not one ``np.random.Generator`` per copy: the batched core must step thousands of copies in one
vectorised call, and a Python loop over generators would dominate the step. Why not one shared
generator: then copy ``i`` of a batch would see different numbers than a single env seeded the
same way, and the single and batched envs must produce identical trajectories.

A counter-based generator solves both: copy ``i`` has a 64-bit key (drawn from its own
``np_random`` when it is seeded) and a counter; its ``j``-th number is a fixed hash of
``(key, counter + j)``. The hash is the SplitMix64 finaliser, evaluated for all copies at once.
"""

from __future__ import annotations

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S11 = (np.uint64(s) for s in (30, 27, 31, 11))
_TO_UNIT = 2.0**-53


def _splitmix(z: np.ndarray) -> np.ndarray:
    """SplitMix64 output function on a uint64 array (wrapping arithmetic is intended)."""
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    return z ^ (z >> _S31)


class CounterRNG:
    """``num_envs`` independent streams of uniform floats in [0, 1)."""

    def __init__(self, num_envs: int) -> None:
        self.keys = np.zeros(num_envs, dtype=np.uint64)
        self.counters = np.zeros(num_envs, dtype=np.uint64)

    def seed(self, generators: list[np.random.Generator], idx: np.ndarray | None = None) -> None:
        """Give copies ``idx`` fresh keys drawn from their own Gymnasium ``np_random`` generators."""
        idx = np.arange(len(self.keys)) if idx is None else idx
        self.keys[idx] = [g.integers(0, 2**63, dtype=np.int64) for g in generators]
        self.counters[idx] = 0

    def uniform(self, k: int, idx: np.ndarray | None = None) -> np.ndarray:
        """``k`` numbers for each selected copy, shape ``(len(idx), k)``; advances those counters."""
        if idx is None:
            keys, counters = self.keys, self.counters
            self.counters = counters + np.uint64(k)
        else:
            keys, counters = self.keys[idx], self.counters[idx]
            self.counters[idx] = counters + np.uint64(k)
        steps = counters[:, None] + np.arange(k, dtype=np.uint64)
        z = _splitmix(keys[:, None] ^ (steps * _GOLDEN))
        return (z >> _S11).astype(np.float64) * _TO_UNIT

    def state(self) -> tuple[np.ndarray, np.ndarray]:
        return self.keys.copy(), self.counters.copy()
