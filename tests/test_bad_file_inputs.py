"""Every hostile or damaged file, bad command line and diverging setting of ``bad_inputs.py`` gets a clear
error, and no file the package did not write is changed."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from bad_inputs import classify_file_case, safety_cases  # noqa: E402

CASES = safety_cases()


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_file_or_command_gets_a_clear_error(case):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        outcome, detail = classify_file_case(case)
    assert outcome == "clear", detail
