"""metarl-train: a one-run grid through the leaderboard's runner (model, curve, store, resume after SIGKILL)."""

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from metarl_agents.cli.train import main
from metarl_agents.leaderboard.store import ResultStore, StoreError
from metarl_agents.training.model_file import load_model

ROOT = Path(__file__).parents[1]
TINY = ["--env", "MetaTMaze-v0", "--agent", "RNN", "--seed", "3", "--lr", "3e-4", "--n-envs", "4",
        "--override", "n_steps=40", "--env-kwarg", "length=10", "--policy-kwarg", "head=mlp",
        "--policy-kwarg", "encoder_hidden=16", "--policy-kwarg", "net_arch=[16]", "--no-progress"]


def test_tiny_run_writes_model_curve_and_store_and_is_skipped_when_run_again(tmp_path, capsys):
    argv = [*TINY, "--frames", "640", "--eval-every", "320", "--n-eval-tasks", "4", "--out", str(tmp_path)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "final meta-episode return" in printed and "n_steps = 40" in printed and 'device = "cpu"' in printed
    data = json.loads((tmp_path / "eval.json").read_text())
    assert data["learning_rate"] == 3e-4 and data["reduced_budget"] is True and data["env_kwargs"] == {"length": 10}
    assert data["config"]["policy_kwargs"] == {"head": "mlp", "encoder_hidden": 16, "net_arch": [16]}
    assert [p["frames"] for p in data["curve"]] == [320, 640]
    # stdout is captured, not a terminal: one log line per evaluation, as in a nohup or cluster-job log
    logged = re.findall(r"^MetaTMaze-v0 RNN seed=3 lr=0\.0003: (\d+)/640 frames, return (-?[\d.]+), \d+ frames/s, "
                        r"ETA \d+ s$", printed, re.M)
    assert logged == [(str(p["frames"]), f"{p['meta_episode_return']:.3f}") for p in data["curve"]]
    with (tmp_path / "eval.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [float(r["meta_episode_return"]) for r in rows] == [p["meta_episode_return"] for p in data["curve"]]
    assert not (tmp_path / "model.zip").exists()  # SB3's format runs code when loaded: not written
    model = load_model(tmp_path / "model.pt")
    assert model.num_timesteps == 640 and model.n_steps == 40 and model.learning_rate == 3e-4
    with ResultStore(tmp_path / "metarl_results.db", readonly=True) as store:
        (run,) = store.runs()
        assert run.status == "finished" and run.policy_kwargs == data["config"]["policy_kwargs"]
        assert run.resolved_config == data["config"] and run.eval_seed == 3 + 1_000_003
    assert main(argv) == 0
    assert "(already finished)" in capsys.readouterr().out


def test_stop_at_return_ends_the_run_at_the_first_evaluation_that_reaches_it(tmp_path, capsys):
    argv = [*TINY, "--frames", "6400", "--eval-every", "320", "--n-eval-tasks", "2", "--stop-at-return", "-100",
            "--out", str(tmp_path)]
    assert main(argv) == 0
    assert "stopped" in capsys.readouterr().out
    data = json.loads((tmp_path / "eval.json").read_text())
    assert [p["frames"] for p in data["curve"]] == [320] and data["stop_at_return"] == -100
    assert load_model(tmp_path / "model.pt").num_timesteps == 320


def _points(db: Path) -> list[tuple]:
    try:
        with ResultStore(db, readonly=True) as store:
            return [(p.frames, p.meta_episode_return, p.episode_returns) for r in store.runs() for p in store.evaluations(r.id)]
    except StoreError:  # not created yet
        return []


def test_resumes_after_sigkill_with_the_points_of_an_uninterrupted_run(tmp_path):
    argv = [*TINY, "--frames", "1280", "--eval-every", "160", "--n-eval-tasks", "2"]
    assert main([*argv, "--out", str(tmp_path / "whole")]) == 0
    expected = _points(tmp_path / "whole" / "metarl_results.db")
    assert [p[0] for p in expected] == [160 * k for k in range(1, 9)]

    out = tmp_path / "killed"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    process = subprocess.Popen([sys.executable, "-m", "metarl_agents.cli.train", *argv, "--out", str(out)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while len(_points(out / "metarl_results.db")) < 3 and process.poll() is None:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    assert 0 < len(_points(out / "metarl_results.db")) < len(expected)  # killed mid-run
    assert main([*argv, "--out", str(out)]) == 0
    assert _points(out / "metarl_results.db") == expected  # bit for bit
    assert load_model(out / "model.pt").num_timesteps == 1280


def test_an_unusable_output_directory_is_one_line_before_training(tmp_path, capsys):
    import pytest

    (tmp_path / "file").write_text("not a folder")
    for out, message in (("", "--out needs a directory name, got an empty one"),
                         ("/dev/full/x", "cannot create the output directory --out /dev/full/x: Not a directory"),
                         (str(tmp_path / "file" / "x"), "Not a directory"),
                         (str(tmp_path / "file"), "is a file, not a directory")):
        with pytest.raises(SystemExit) as exit_:
            main([*TINY, "--frames", "640", "--out", out])
        error = capsys.readouterr().err
        assert exit_.value.code == 2 and message in error and error.count("\n") == 1 and "Traceback" not in error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]
