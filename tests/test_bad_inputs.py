"""Every bad input to every env family gets a clear error: family x category (see ``bad_inputs.py``)."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from bad_inputs import FAMILIES, all_cases, classify  # noqa: E402

CASES = all_cases()


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_gets_a_clear_error(case):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        outcome, detail = classify(case)
    assert outcome == "clear", detail


@pytest.mark.parametrize("env_id", [e for e in FAMILIES if gym.spec(e).vector_entry_point])
@pytest.mark.parametrize("seed", [0, 7, np.int64(3), np.uint32(5), 2**40, -1, 1.5, "3", True, None])
def test_single_and_vector_envs_accept_and_refuse_the_same_seeds(env_id, seed):
    def outcome(env):
        try:
            obs = env.reset(seed=seed)[0]
        except ValueError as exc:
            assert "seed" in str(exc)
            return "refused", None
        return "accepted", obs

    single, single_obs = outcome(gym.make(env_id))
    vector, vector_obs = outcome(gym.make_vec(env_id, num_envs=2, vectorization_mode="vector_entry_point"))
    assert single == vector
    if single == "accepted" and seed is not None:
        np.testing.assert_array_equal(vector_obs[0], single_obs)  # copy 0 is the single env with that seed
