"""Measurement scripts under benchmarks/ whose figures the documentation quotes: they must count what they say."""

from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"


def load(relative: str):
    spec = importlib.util.spec_from_file_location(Path(relative).stem, BENCHMARKS / relative)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_code_lines_leave_out_docstrings_comments_and_blank_lines():
    code_lines = load("code_lines.py").code_lines
    source = '"""Module\ndocstring."""\n\n# a comment\nimport os\n\n\nclass A:\n    """One line."""\n\n    def f(self):\n' \
             '        """Two\n        lines."""\n        text = """not a docstring"""  # trailing comment\n        return text\n'
    assert code_lines(source) == 5  # import, class, def, text = ..., return


def test_a_moved_module_changes_nothing_and_a_removed_line_counts(tmp_path, monkeypatch):
    code_lines = load("code_lines.py")

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                              capture_output=True, text=True, check=True).stdout.strip()

    git("init", "-q")
    (tmp_path / "metarl_agents").mkdir()
    (tmp_path / "metarl_agents" / "a.py").write_text('"""Doc."""\nx = 1\ny = 2\n')
    git("add", "-A")
    git("commit", "-qm", "add")
    git("mv", "metarl_agents/a.py", "metarl_agents/b.py")
    git("commit", "-qm", "move")
    (tmp_path / "metarl_agents" / "b.py").write_text('"""Doc."""\nx = 1\n')
    git("commit", "-qam", "shrink")
    moved, shrunk = git("rev-parse", "HEAD~1"), git("rev-parse", "HEAD")
    monkeypatch.chdir(tmp_path)
    assert code_lines.commit_change(moved) == 0 and code_lines.commit_change(shrunk) == -1
    assert code_lines.package_lines("HEAD~2") == 2 and code_lines.package_lines("HEAD") == 1


@pytest.mark.parametrize("method", ["maml", "alg2"])
def test_adaptation_steps_replays_the_runs_meta_test(tmp_path, capsys, method):
    """From a run's checkpoint, the script draws the same trajectories as the run's closing meta-test, so
    its per-task returns are the ones the run's JSON recorded."""
    from metarl_agents.bomrl.cheetah import run
    from metarl_agents.bomrl.mujoco_protocol import CheetahProtocol

    settings = dict(n_trajectories=4, post_trajectories=4, tasks_per_iteration=2, test_rounds=2, test_trajectories=2,
                    inner_steps=5, horizon=15, continuation=5, hidden=[8])
    result = run(CheetahProtocol(task="point", method=method, **settings), 0, 1, tmp_path, log=lambda _: None)
    load("bomrl_mujoco/adaptation_steps.py").main(
        [str(tmp_path / f"point_{method}_seed0.ckpt"), "--task", "point", "--method", method,
         "--set", *(f"{key}={json.dumps(value)}" for key, value in settings.items())])
    rows = [[cell.strip() for cell in line.split("|")[1:-1]] for line in capsys.readouterr().out.splitlines()[2:]]
    test, n_tasks = result["meta_test"], len(result["meta_test"]["tasks"])
    assert len(rows) == 3 * n_tasks
    for index, row in enumerate(rows):
        k, g = divmod(index, n_tasks)
        assert float(row[2]) == pytest.approx(test["per_task_deterministic"][k][g], abs=0.051)
        assert float(row[3]) == pytest.approx(test["per_task_stochastic"][k][g], abs=0.051)
        assert (row[4:] == ["", "", ""]) == (k == 2)  # the last round takes no step
        if k < 2:
            assert float(row[5]) >= 0
