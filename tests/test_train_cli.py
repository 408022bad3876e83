"""metarl-train: a tiny run writes the model and the evaluation curve."""

import csv
import json

import pytest

from metarl_agents.ppo import MetaPPO
from metarl_agents.train_cli import main


def test_tiny_run_writes_model_and_curve(tmp_path, capsys):
    argv = ["--env", "MetaTMaze-v0", "--agent", "RNN", "--frames", "640", "--seed", "3", "--lr", "3e-4",
            "--out", str(tmp_path), "--n-envs", "4", "--eval-freq", "320", "--eval-tasks", "4",
            "--set", "n_steps=40", "--env-kwarg", "length=10",
            "--policy-kwarg", "head=mlp", "--policy-kwarg", "encoder_hidden=16", "--policy-kwarg", "net_arch=[16]"]
    assert main(argv) == 0
    assert "final meta-episode return" in capsys.readouterr().out
    data = json.loads((tmp_path / "eval.json").read_text())
    assert data["learning_rate"] == 3e-4 and data["reduced_budget"] is True and data["env_kwargs"] == {"length": 10}
    assert [p["frames"] for p in data["curve"]] == [0, 320, 640]
    with (tmp_path / "eval.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [float(r["meta_episode_return"]) for r in rows] == [p["meta_episode_return"] for p in data["curve"]]
    model = MetaPPO.load(tmp_path / "model.zip")
    assert model.num_timesteps == 640 and model.n_steps == 40 and model.learning_rate == 3e-4
    assert (tmp_path / "progress.csv").exists()


def test_stop_at_return_ends_the_run_at_the_first_evaluation_that_reaches_it(tmp_path, capsys):
    argv = ["--env", "MetaTMaze-v0", "--agent", "CNP", "--frames", "6400", "--out", str(tmp_path), "--n-envs", "4",
            "--eval-freq", "320", "--eval-tasks", "2", "--set", "n_steps=40", "--env-kwarg", "length=10",
            "--policy-kwarg", "head=mlp", "--stop-at-return", "-100"]
    assert main(argv) == 0
    assert "stopped" in capsys.readouterr().out
    data = json.loads((tmp_path / "eval.json").read_text())
    assert [p["frames"] for p in data["curve"]] == [0] and data["stop_at_return"] == -100
    assert MetaPPO.load(tmp_path / "model.zip").num_timesteps == 4  # stopped at the next step of the 4 envs


@pytest.mark.parametrize(("flag", "value", "message"), [
    ("--set", "no_equals", "KEY=VALUE"),
    ("--set", "bogus_key=1", "unknown overrides"),
    ("--env-kwarg", "length=1", "length"),
])
def test_bad_arguments_exit_with_a_message(tmp_path, capsys, flag, value, message):
    argv = ["--env", "MetaTMaze-v0", "--agent", "RNN", "--out", str(tmp_path), flag, value]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
