"""Sweep progress in a log: one line per evaluation when stdout is not a terminal, none on a terminal."""

from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # leaderboard_fakes

from leaderboard_fakes import FakeTrainer, fake_return  # noqa: E402

from metarl_agents.leaderboard.grid import RunSpec  # noqa: E402
from metarl_agents.leaderboard.progress import GridProgress, format_duration  # noqa: E402
from metarl_agents.leaderboard.runner import run_grid  # noqa: E402


def spec(seed: int, frames: int = 4000, eval_every: int = 1000) -> RunSpec:
    return RunSpec(env_id="MetaTMaze-v0", agent="RNN", seed=seed, learning_rate=1e-3, frames=frames, paper_frames=1_500_000,
                   preset_name="MetaTMaze-v0", preset_hash="abc", eval_every=eval_every, n_eval_tasks=4)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_format_duration():
    assert [format_duration(s) for s in (0, 59.4, 754, 9000)] == ["0 s", "59 s", "12.6 min", "2.5 h"]


def test_evaluation_lines_give_rate_and_time_left_of_the_run_and_the_sweep(capsys):
    clock = FakeClock()
    first, second = spec(1), spec(2)
    display = GridProgress([(first, 0), (second, 2000)], n_runs=3, n_skipped=1, enabled=False, log_lines=True,
                           clock=clock)
    display.handle(("start", first.run_key, 0))
    clock.now += 10.0
    display.handle(("eval", first.run_key, 1000, 2.5))  # 1000 frames in 10 s; 3000 left in this run
    run_line = "MetaTMaze-v0 RNN seed=1 lr=0.001: 1k/4k frames, return 2.500, 100 frames/s, ETA 30 s"
    # The sweep trained 1000 frames in 10 s; 3000 + 2000 frames are left over both runs.
    assert capsys.readouterr().out == f"{run_line} (sweep: 1/3 runs done, ETA 50 s)\n"
    display.run_done(first.run_key, "finished", None)  # stopped early: nothing left of it
    capsys.readouterr()
    display.handle(("start", second.run_key, 2000))  # resumed at 2000 frames: the rate counts from there
    clock.now += 4.0
    display.handle(("eval", second.run_key, 3000, -1.0))
    assert capsys.readouterr().out == ("MetaTMaze-v0 RNN seed=2 lr=0.001: 3k/4k frames, return -1.000, "
                                       "250 frames/s, ETA 4 s\n")


def test_no_lines_when_switched_off(capsys):
    display = GridProgress([(spec(1), 0)], n_runs=1, n_skipped=0, enabled=False, log_lines=False)
    display.handle(("start", spec(1).run_key, 0))
    display.handle(("eval", spec(1).run_key, 1000, 2.5))
    assert capsys.readouterr().out == ""


def test_a_sweep_with_stdout_to_a_file_logs_every_evaluation(tmp_path, capsys):
    """capsys stands for a log file: stdout is not a terminal, so each evaluation gets its line."""
    assert not sys.stdout.isatty()
    specs = [spec(1, frames=1000, eval_every=250), spec(2, frames=1000, eval_every=250)]
    summary = run_grid(specs, tmp_path / "r.db", trainer=FakeTrainer(str(tmp_path / "log.txt")))
    assert summary.ok
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("MetaTMaze-v0 RNN")]
    pattern = re.compile(r"MetaTMaze-v0 RNN seed=(\d) lr=0\.001: ([\d.]+k?)/1k frames, return (-?[\d.]+), "
                         r"\d+ frames/s, ETA \d+ s")
    parsed = [pattern.match(line).groups() for line in lines]
    expected_frames = [300, 500, 800, 1000]  # the fake trainer's rollout boundaries past each 250
    expected = [(str(s.seed), f"{f / 1000:g}k" if f >= 1000 else str(f), f"{fake_return(s.seed, s.learning_rate, f):.3f}")
                for s in specs for f in expected_frames]
    assert parsed == expected
