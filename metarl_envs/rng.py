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

from metarl_envs.state import StateOwner

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


class CounterRNG(StateOwner):
    """Per-copy streams of uniform floats in [0, 1), in two kinds.

    * The *lockstep* stream (``uniform(k)``, no ``idx``): drawn by every copy on every step, so a
      single counter serves all copies and numbers are produced in blocks of ``block`` columns --
      the per-step cost is a column slice, which keeps a single-env step cheap.
    * The *per-copy* stream (``uniform(k, idx)``): for resets of some copies, each copy with its
      own counter.

    A core must call ``uniform(k)`` only from ``step`` and with the same ``k`` sequence for every
    copy; then copy ``i`` of a batch draws exactly what a single env with the same key draws.
    """

    _STEP_STREAM = np.uint64(0xD1B54A32D192ED03)
    state_attributes = ("keys", "counters", "origin", "_step_counter", "_buffer", "_cursor")

    def __init__(self, num_envs: int, block: int = 64) -> None:
        self.keys = np.zeros(num_envs, dtype=np.uint64)
        self.counters = np.zeros(num_envs, dtype=np.uint64)
        # Copy i's lockstep counter is the shared one minus origin[i]: where it was last seeded.
        self.origin = np.zeros(num_envs, dtype=np.uint64)
        self._block = block
        self._step_counter = 0
        self._buffer = np.empty((num_envs, 0))
        self._cursor = 0

    def __setstate__(self, state: dict) -> None:
        # Streams pickled before ``origin`` existed were always seeded together.
        state.setdefault("origin", np.zeros(len(state["keys"]), dtype=np.uint64))
        self.__dict__.update(state)

    def seed(self, generators: list[np.random.Generator], idx: np.ndarray | None = None) -> None:
        """Give copies ``idx`` (default: all) fresh keys drawn from their own Gymnasium ``np_random`` generators.

        A seeded copy's streams start at their beginning, the lockstep one included, while the other
        copies' streams go on where they are: copy ``i`` seeded alone draws what a single env seeded
        the same way draws.
        """
        n = len(self.keys)
        idx = np.arange(n) if idx is None else np.asarray(idx, dtype=np.int64)
        self.keys[idx] = [g.integers(0, 2**63, dtype=np.int64) for g in generators]
        self.counters[idx] = 0
        if len(np.unique(idx)) == n:
            self.origin[:] = 0
            self._step_counter = 0
            self._buffer = np.empty((n, 0))
            self._cursor = 0
            return
        unread = self._buffer.shape[1] - self._cursor
        self.origin[idx] = self._step_counter - unread  # the shared counter of the next number read
        if unread:
            fresh = self._hash(_splitmix(self.keys[idx] ^ self._STEP_STREAM), np.zeros(len(idx), np.uint64), unread)
            self._buffer[idx, self._cursor :] = fresh

    @staticmethod
    def _hash(keys: np.ndarray, first: np.ndarray, k: int) -> np.ndarray:
        steps = first[:, None] + np.arange(k, dtype=np.uint64)
        z = _splitmix(keys[:, None] ^ (steps * _GOLDEN))
        return (z >> _S11).astype(np.float64) * _TO_UNIT

    def uniform(self, k: int, idx: np.ndarray | None = None) -> np.ndarray:
        """``k`` numbers per copy: all copies (lockstep stream) or copies ``idx`` (per-copy stream)."""
        if idx is not None:
            counters = self.counters[idx]
            self.counters[idx] = counters + np.uint64(k)
            return self._hash(self.keys[idx], counters, k)
        if self._cursor + k > self._buffer.shape[1]:
            self._refill(k)
        out = self._buffer[:, self._cursor : self._cursor + k]
        self._cursor += k
        return out

    def _refill(self, k: int) -> None:
        n = max(self._block, k)
        first = np.uint64(self._step_counter) - self.origin
        rest = self._buffer[:, self._cursor :]
        fresh = self._hash(_splitmix(self.keys ^ self._STEP_STREAM), first, n)
        self._buffer = np.concatenate([rest, fresh], axis=1)
        self._cursor = 0
        self._step_counter += n
