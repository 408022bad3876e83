"""Counter-based per-copy streams: what makes single and batched envs draw the same numbers."""

from __future__ import annotations

import numpy as np

from metarl_envs.rng import CounterRNG


def seeded(n: int, block: int = 64, first_seed: int = 0) -> CounterRNG:
    rng = CounterRNG(n, block=block)
    rng.seed([np.random.default_rng(first_seed + i) for i in range(n)])
    return rng


def lockstep_draws(rng: CounterRNG, sizes: list[int]) -> np.ndarray:
    return np.concatenate([rng.uniform(k).copy() for k in sizes], axis=1)


def test_lockstep_stream_never_repeats_across_blocks():
    draws = lockstep_draws(seeded(2, block=16), [1] * 200)
    assert len(np.unique(draws[0])) == 200 and len(np.unique(draws[1])) == 200
    assert 0.0 <= draws.min() and draws.max() < 1.0 and abs(draws.mean() - 0.5) < 0.05


def test_lockstep_stream_does_not_depend_on_block_size_or_draw_sizes():
    sizes = [1, 3, 2, 5, 1] * 20
    reference = lockstep_draws(seeded(3, block=64), sizes)
    np.testing.assert_array_equal(lockstep_draws(seeded(3, block=7), sizes), reference)
    np.testing.assert_array_equal(lockstep_draws(seeded(3, block=64), [1] * sum(sizes)), reference)


def test_copy_i_of_a_batch_draws_what_a_single_copy_with_its_seed_draws():
    batch, single = seeded(4), seeded(1, first_seed=2)
    np.testing.assert_array_equal(lockstep_draws(batch, [2] * 50)[2], lockstep_draws(single, [2] * 50)[0])
    idx = np.array([0, 2])
    np.testing.assert_array_equal(batch.uniform(3, idx)[1], single.uniform(3, np.array([0]))[0])


def test_per_copy_stream_advances_only_the_selected_copies():
    rng = seeded(3)
    first = rng.uniform(2, np.array([1]))
    untouched = seeded(3).uniform(2, np.array([0, 2]))
    np.testing.assert_array_equal(rng.uniform(2, np.array([0, 2])), untouched)
    assert not np.array_equal(rng.uniform(2, np.array([1])), first)


def test_reseeding_restarts_both_streams():
    rng = seeded(2)
    before = lockstep_draws(rng, [1] * 70), rng.uniform(2, np.array([0, 1]))
    rng.seed([np.random.default_rng(i) for i in range(2)])
    np.testing.assert_array_equal(lockstep_draws(rng, [1] * 70), before[0])
    np.testing.assert_array_equal(rng.uniform(2, np.array([0, 1])), before[1])


def test_reseeding_some_copies_mid_block_restarts_only_theirs():
    """What a vector reset with a seed and a reset_mask does: copy 1 starts over as a fresh stream seeded alone,
    copies 0 and 2 go on as if nothing happened, across block refills (block 16, draws of 3)."""
    rng, twin = seeded(3, block=16), seeded(3, block=16)
    lockstep_draws(rng, [3] * 9)  # 27 numbers: one block and a part of the next
    lockstep_draws(twin, [3] * 9)
    rng.seed([np.random.default_rng(42)], np.array([1]))
    after = lockstep_draws(rng, [3] * 30)
    fresh = CounterRNG(1, block=16)
    fresh.seed([np.random.default_rng(42)])
    np.testing.assert_array_equal(after[1], lockstep_draws(fresh, [3] * 30)[0])
    np.testing.assert_array_equal(after[[0, 2]], lockstep_draws(twin, [3] * 30)[[0, 2]])


def test_streams_pickled_before_partial_seeding_still_load():
    import pickle

    rng = seeded(2)
    state = rng.__dict__.copy()
    del state["origin"]
    old = CounterRNG.__new__(CounterRNG)
    old.__setstate__(pickle.loads(pickle.dumps(state)))
    np.testing.assert_array_equal(lockstep_draws(old, [1] * 100), lockstep_draws(seeded(2), [1] * 100))
