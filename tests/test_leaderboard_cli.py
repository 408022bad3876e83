"""``metarl-bench``: argument errors, grid building from presets, run + report through the CLI."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from leaderboard_fakes import FakeTrainer  # noqa: E402

import metarl_agents.leaderboard.runner as runner  # noqa: E402
from metarl_agents.cli.bench import main  # noqa: E402
from metarl_agents.leaderboard.grid import build_grid, parse_frames, parse_seeds  # noqa: E402
from metarl_agents.leaderboard.store import ResultStore  # noqa: E402


def run_cli(capsys, *argv):
    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))
    return exit_info.value.code, capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--envs", "MetaTMaze-v1", "--agents", "SplAgger"],
     "unknown env 'MetaTMaze-v1'; allowed: MetaTMaze-v0, MetaTMazeLongShort-v0, "),
    (["--envs", "MetaTMaze-v0", "--agents", "SplAgger", "LSTM", "GPT"],
     "unknown agent 'LSTM', 'GPT'; allowed: SplAgger, RNN, AMRL, CNP, Max, PEARL"),
    (["--envs", "MetaTMaze-v0", "--agents", "RNN", "--override", "n_stepz=5"],
     "unknown override 'n_stepz'; allowed: n_envs, n_steps, "),
    (["--envs", "MetaTMaze-v0", "--agents", "RNN", "--override", "frames=5"], "unknown override 'frames'"),
    (["--envs", "MetaTMaze-v0", "--agents", "RNN", "--seeds", "two"], "--seeds expects integers, got 'two'"),
    (["--envs", "MetaTMaze-v0", "--agents", "RNN", "--lrs", "0"], "learning_rate must be a finite number in (0, 1], got 0.0"),
    (["--envs", "MetaTMaze-v0", "--agents", "RNN", "--workers", "0"], "--workers must be >= 1, got 0"),
    (["--envs", "MetaTMaze-v0", "--agents", "RNN", "--address", "auto"], "--address only applies to --backend ray"),
    (["--envs", "MetaTMaze-v0", "--agents", "RNN", "--frames", "lots"], "frame count 'lots' is not a number"),
    (["--envs", "MetaTMaze-v0", "--agents", "RNN", "--env-kwarg", "[1]"], "expected KEY=VALUE, got '[1]'"),
    # A value listed twice would train one run twice at once (racing on its checkpoint), as --seeds 3 3 would.
    (["--envs", "MetaTMaze-v0", "--agents", "RNN", "--seeds", "3", "3"], "--seeds lists a seed twice: [3, 3]"),
    (["--envs", "MetaTMaze-v0", "--agents", "RNN", "RNN", "--workers", "2"], "--agents lists an agent twice: ['RNN', 'RNN']"),
    (["--envs", "MetaTMaze-v0", "MetaTMaze-v0", "--agents", "RNN"], "--envs lists an environment twice"),
    (["--envs", "MetaTMaze-v0", "--agents", "RNN", "--lrs", "1e-3", "0.001"], "--lrs lists a learning rate twice: [0.001, 0.001]"),
    (["--envs", "MetaTMaze-v0", "--agents", "RNN", "--lrs", "1e38"], "learning_rate must be a finite number in (0, 1], got 1e+38"),
    (["--envs", "MetaTMaze-v0", "--agents", "RNN", "--db", "/dev/full/x.db"], "cannot lock the result database /dev/full/x.db"),
    (["--envs", "MetaTMaze-v0", "--agents", "RNN", "--backend", "ray", "--gpus-per-run", "0.5"],
     "--gpus-per-run 0.5 needs --device cuda (got --device cpu)"),
    (["--envs", "MetaTMaze-v0", "--agents", "RNN", "--checkpoints", "/dev/null"],
     "--checkpoints /dev/null: not a folder"),
])
def test_run_rejects_bad_arguments_with_the_allowed_values(capsys, tmp_path, argv, message):
    code, err = run_cli(capsys, "run", "--db", str(tmp_path / "r.db"), *argv)
    assert code == 2 and message in err
    assert not (tmp_path / "r.db").exists()


def test_foreign_database_is_refused_and_left_unchanged(capsys, tmp_path):
    db = tmp_path / "notes.db"
    db.write_text("my precious notes\n")
    code, err = run_cli(capsys, "run", "--db", str(db), "--envs", "MetaTMaze-v0", "--agents", "RNN")
    assert code == 2 and "is not an SQLite database" in err and "refusing to overwrite" in err
    code, err = run_cli(capsys, "report", "--db", str(db))
    assert code == 2 and "is not an SQLite database" in err
    assert db.read_text() == "my precious notes\n"


def test_the_runner_refuses_a_grid_that_lists_one_run_twice(tmp_path):
    (spec,) = build_grid(["MetaTMaze-v0"], ["RNN"], ["1"], [1e-3])
    with pytest.raises(ValueError, match="the grid lists run MetaTMaze-v0__RNN__seed73.* 2 times"):
        runner.run_grid([spec, spec], tmp_path / "r.db", workers=2, show_progress=False)
    assert list(tmp_path.iterdir()) == []


def test_grid_from_presets():
    specs = build_grid(["MetaTMaze-v0"], ["SplAgger", "RNN"], ["2"], frames=200_000)
    assert [(s.agent, s.seed, s.learning_rate) for s in specs] == [
        (agent, seed, lr) for agent in ("SplAgger", "RNN") for seed in (73, 20)
        for lr in (3e-3, 1e-3, 3e-4, 1e-4, 3e-5)]
    first = specs[0]
    assert (first.frames, first.paper_frames, first.reduced) == (200_000, 1_500_000, True)
    # >= 10 points for a reduced budget, in whole rollouts of 16 envs x 700 steps
    assert (first.eval_every, first.n_eval_tasks) == (11_200, 16)
    assert first.run_key.startswith("MetaTMaze-v0__SplAgger__seed73__lr0.003__frames200k-REDUCED__")
    (full,) = build_grid(["MetaTMaze-v0"], ["RNN"], ["73,"], [1e-3])
    assert (full.frames, full.reduced, full.eval_every) == (1_500_000, False, 44_800)
    (tiny,) = build_grid(["MetaTMaze-v0"], ["RNN"], ["1"], [1e-3], frames=1000, overrides={"n_steps": 8, "n_envs": 4})
    assert tiny.eval_every == 96 and tiny.overrides == {"n_steps": 8, "n_envs": 4}
    assert "frames1.5M__" in full.run_key and "REDUCED" not in full.run_key
    # the last three evaluations on 64 tasks: another run (its key says so), the earlier key unchanged
    (longer,) = build_grid(["MetaTMaze-v0"], ["RNN"], ["73,"], [1e-3], n_final_eval_tasks=64)
    assert (longer.n_eval_tasks, longer.n_final_eval_tasks, longer.final_eval_tasks) == (16, 64, 64)
    assert longer.run_key != full.run_key and full.n_final_eval_tasks is None and full.final_eval_tasks == 16


def test_seed_and_frame_parsing():
    preset = [73, 20, 3]
    assert parse_seeds(None, preset) == [73, 20, 3]
    assert parse_seeds(["2"], preset) == [73, 20]
    assert parse_seeds(["5"], preset) == [73, 20, 3, 0, 1]
    assert parse_seeds(["7,"], preset) == [7]
    assert parse_seeds(["73", "99"], preset) == parse_seeds(["73,99"], preset) == [73, 99]
    with pytest.raises(ValueError, match=r"--seeds count must be an integer in \[1, 1000\], got 0"):
        parse_seeds(["0"], preset)
    with pytest.raises(ValueError, match="lists a seed twice"):
        parse_seeds(["3", "3"], preset)
    assert [parse_frames(x) for x in ("200k", "1.5e6", "1.5M", 64, "2G")] == [200_000, 1_500_000, 1_500_000, 64, 2e9]
    with pytest.raises(ValueError, match="frame count must be >= 1"):
        parse_frames("0")


def test_run_then_report_through_the_cli(capsys, tmp_path, monkeypatch):
    log = str(tmp_path / "log")
    trainer_kwargs = {}
    monkeypatch.setattr(runner, "MetaPPOTrainer", lambda **kw: trainer_kwargs.update(kw) or FakeTrainer(log))
    db, out = tmp_path / "r.db", tmp_path / "report"
    argv = ["run", "--db", str(db), "--envs", "MetaTMaze-v0", "--agents", "SplAgger", "RNN", "--seeds", "2",
            "--lrs", "1e-3", "--frames", "1k", "--eval-every", "500", "--n-eval-tasks", "3", "--no-progress"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "MetaTMaze-v0: 1k frames per run (REDUCED BUDGET; paper: 1.5M)" in printed
    assert "done: 4 trained, 0 already finished, 0 failed" in printed
    assert trainer_kwargs == {"device": "cpu", "threads": 1}  # one torch thread per run unless --threads
    # stdout is not a terminal here: one line per evaluation (4 runs x 2 evaluations)
    assert len([line for line in printed.splitlines() if "/1k frames, return" in line]) == 8
    with ResultStore(db) as store:
        runs = store.runs()
        assert {(r.agent, r.seed, r.status, r.reduced, r.frames_budget, r.n_eval_tasks) for r in runs} == {
            (agent, seed, "finished", True, 1000, 3) for agent in ("SplAgger", "RNN") for seed in (73, 20)}
        assert all([p.frames for p in store.evaluations(r.id)] == [500, 1000] for r in runs)
    assert main(argv) == 0
    assert "done: 0 trained, 4 already finished, 0 failed" in capsys.readouterr().out

    assert main(["report", "--db", str(db), "--out", str(out)]) == 0
    assert f"leaderboard written to {out / 'leaderboard.md'}" in capsys.readouterr().out
    # the presets train under the paper protocol: its plot's name and title say so, apart from metarl runs'
    assert (out / "MetaTMaze-v0__frames1k-REDUCED__paper-protocol.png").exists()
    assert re.search(r"<text[^>]*>MetaTMaze-v0, 1k frames, paper protocol</text>", (out / "index.html").read_text())
    assert "REDUCED BUDGET" in (out / "leaderboard.md").read_text()


def test_python_dash_m_entry_point():
    result = subprocess.run([sys.executable, "-m", "metarl_agents.leaderboard", "run", "--help"],
                            capture_output=True, text=True, cwd=Path(__file__).parents[1], timeout=120)
    assert result.returncode == 0
    assert "--backend {local,ray}" in result.stdout and "REDUCED BUDGET" in result.stdout
