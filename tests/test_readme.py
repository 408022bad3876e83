"""Every Python block of the README runs on its own, as pasted into a fresh interpreter.

Each block runs in a new process (nothing defined by another block, the repository on ``PYTHONPATH``, a
temporary working directory for the files it saves). Blocks that train do so with their budgets cut: the
test replaces the budget numbers below in the block's text, and fails if the README no longer contains
them, so the table follows the README.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

#: README text -> what the test runs instead: the smallest budgets that still go through every call.
SMOKE_BUDGETS = {
    "n_steps=256,": "n_steps=16,",  # RecurrentPPO(SplAggerPolicy) on Pendulum
    "model.learn(50_000)": "model.learn(128)",
    'MetaPPO.from_preset("MetaTMaze-v0", "SplAgger", seed=73)':
        'MetaPPO.from_preset("MetaTMaze-v0", "SplAgger", seed=73, n_envs=4, n_steps=20)',
    "model.learn(1_500_000, progress_bar=True)": "model.learn(80, progress_bar=True)",
    "iterations=150)": "iterations=3)",  # tabular BO-MRL
    "iterations=500, tasks_per_iteration=10,": "iterations=1, tasks_per_iteration=2,",  # neural BO-MRL
    "BOMRL(model, alg=1, lam=0.5)": "BOMRL(model, alg=1, lam=0.5, n_trajectories=2, post_trajectories=2, inner_steps=2)",
    "rounds=3, task=[1.2]": "rounds=1, task=[1.2]",
}


def python_blocks() -> list[tuple[int, str]]:
    """``(line number, code)`` of every ```` ```python ```` block."""
    text = README.read_text()
    return [(text.count("\n", 0, match.start()) + 1, match.group(1))
            for match in re.finditer(r"^```python\n(.*?)^```", text, re.M | re.S)]


def smoke(code: str) -> str:
    for long, short in SMOKE_BUDGETS.items():
        code = code.replace(long, short)
    return code


def test_every_budget_to_cut_is_in_the_readme():
    code = "".join(block for _, block in python_blocks())
    assert [long for long in SMOKE_BUDGETS if code.count(long) != 1] == []


BLOCKS = python_blocks()


@pytest.mark.parametrize("line, code", BLOCKS, ids=[f"README.md:{line}" for line, _ in BLOCKS])
def test_block_runs_alone(line, code, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", smoke(code)], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, f"README.md line {line}:\n{result.stderr[-3000:]}"
