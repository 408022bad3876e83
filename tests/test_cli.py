"""Both command lines take the same options and refuse every bad value: exit status 2, one line naming the
value and what is allowed, nothing written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from metarl_agents.cli import bench, train

ROOT = Path(__file__).parents[1]

BAD = [  # (options, words of the message)
    (["--n-envs", "0"], ["n_envs", "got 0", "[1, 65536]"]),
    (["--override", "gamma=2"], ["gamma", "got 2", "[0, 1]"]),
    (["--override", "clip_range=-0.1"], ["clip_range", "got -0.1", "(0, 1]"]),
    (["--frames", "inf"], ["--frames", "'inf'", ">= 1"]),
    (["--threads", "0"], ["threads", "got 0", "[1, 1024]"]),
    (["--device", "bogus"], ["device", "'bogus'", "cpu, cuda, cuda:N, mps or auto"]),
    (["--override", "n_steps=0"], ["n_steps", "got 0", "[1, 1000000]"]),
    (["--override", "n_stepz=5"], ["n_stepz", "allowed: n_envs, n_steps"]),
    # --override takes every trainer setting, those with an option of their own included.
    (["--override", "learning_rate=0"], ["learning_rate", "got 0", "(0, 1]"]),
    (["--override", "protocol=reference"], ["protocol", "metarl, paper", "'reference'"]),
    (["--override", "frames=5"], ["unknown override 'frames'", "allowed: n_envs"]),  # not a trainer setting
    (["--n-eval-tasks", "0"], ["n_eval_tasks", "got 0"]),
    (["--final-eval-tasks", "0"], ["n_final_eval_tasks", "got 0", "[1, 65536] or none"]),
    (["--eval-every", "-5"], ["--eval-every", "'-5'"]),
    (["--env-kwarg", "length=1"], ["length"]),
    (["--policy-kwarg", "net_arch"], ["--policy-kwarg", "KEY=VALUE", "'net_arch'"]),
    (["--policy-kwarg", "bogus=1"], ["policy_kwargs", "bogus"]),
    (["--patience", "3"], ["patience=3", "stop_at_return"]),
    (["--stop-at-return", "nan"], ["stop_at_return", "nan", "finite"]),
]
BENCH_ONLY = [
    (["--seeds", "2000000"], ["--seeds", "2000000", "[1, 1000]"]),
    (["--lrs", "-1"], ["learning_rate", "-1.0", "(0, 1]"]),
    (["--lrs", "1e-3", "--override", "learning_rate=3e-3"], ["--lrs [0.001]", "learning_rate=0.003", "disagree"]),
]
TRAIN_ONLY = [
    (["--seed", "-1"], ["seed", "-1", "[0, 2147483647]"]),
    (["--lr", "0"], ["learning_rate", "0.0", "(0, 1]"]),
    (["--lr", "1e4"], ["learning_rate", "10000", "(0, 1]"]),
    (["--lr", "1e-3", "--override", "learning_rate=3e-3"], ["--lr 0.001", "learning_rate=0.003", "disagree"]),
]


def _check(capsys, run, tmp_path, words):
    with pytest.raises(SystemExit) as exit_info:
        run()
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, err
    assert err.count("\n") == 1 and "error: " in err, err  # one line
    assert all(word in err for word in words), err
    assert list(tmp_path.iterdir()) == []  # nothing written


@pytest.mark.parametrize(("options", "words"), BAD + TRAIN_ONLY, ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_metarl_train_refuses(capsys, tmp_path, options, words):
    argv = ["--env", "MetaTMaze-v0", "--agent", "RNN", "--out", str(tmp_path / "out"), *options]
    _check(capsys, lambda: sys.exit(train.main(argv)), tmp_path, words)


@pytest.mark.parametrize(("options", "words"), BAD + BENCH_ONLY, ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_metarl_bench_run_refuses(capsys, tmp_path, options, words):
    argv = ["run", "--envs", "MetaTMaze-v0", "--agents", "RNN", "--db", str(tmp_path / "r.db"), *options]
    _check(capsys, lambda: sys.exit(bench.main(argv)), tmp_path, words)


def test_cuda_without_cuda_is_refused_by_both(capsys, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    words = ["device 'cuda' is not available", "no CUDA device"]
    _check(capsys, lambda: sys.exit(train.main(["--env", "MetaTMaze-v0", "--agent", "RNN", "--out",
                                                str(tmp_path / "o"), "--device", "cuda"])), tmp_path, words)
    _check(capsys, lambda: sys.exit(bench.main(["run", "--envs", "MetaTMaze-v0", "--agents", "RNN", "--db",
                                                str(tmp_path / "r.db"), "--device", "cuda"])), tmp_path, words)


def test_both_command_lines_share_their_run_options():
    def options(parser):
        actions = parser._actions if parser is not bench.build_parser() else []
        return {s for a in actions for s in a.option_strings}

    run_parser = bench.build_parser()._subparsers._group_actions[0].choices["run"]
    shared = {"--frames", "--eval-every", "--n-eval-tasks", "--n-envs", "--override", "--env-kwarg", "--policy-kwarg",
              "--stop-at-return", "--patience", "--device", "--threads", "--no-progress"}
    assert shared <= options(train.build_parser()) and shared <= options(run_parser)


def test_the_leaderboard_package_runs_as_the_bench_command():
    result = subprocess.run([sys.executable, "-m", "metarl_agents.leaderboard", "run", "--help"],
                            capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0 and "--override KEY=VALUE" in result.stdout, result.stderr


@pytest.mark.parametrize("alias", ["--set", "--eval-freq", "--eval-tasks"])
def test_removed_option_aliases_are_refused(alias, capsys, tmp_path):
    """One spelling per setting: the old aliases are unknown options, not silently accepted."""
    with pytest.raises(SystemExit):
        train.build_parser().parse_args(["--env", "MetaTMaze-v0", "--agent", "RNN", "--out", str(tmp_path), alias, "1"])
    assert f"unrecognized arguments: {alias}" in capsys.readouterr().err


def _help(capsys, monkeypatch, main, argv):
    monkeypatch.setenv("COLUMNS", "100000")  # one line per option: each help text whole
    with pytest.raises(SystemExit):
        main([*argv, "--help"])
    return capsys.readouterr().out


@pytest.mark.parametrize("command", ["metarl-train", "metarl-bench run"])
def test_help_lists_every_run_configuration_field_exactly_once(capsys, monkeypatch, command):
    from metarl_agents.training.config import FIELDS, META

    text = _help(capsys, monkeypatch, train.main, []) if command == "metarl-train" else \
        _help(capsys, monkeypatch, bench.main, ["run"])
    counts = {name: text.count(META[name]["doc"]) for name in FIELDS}
    assert counts == dict.fromkeys(FIELDS, 1)
    for name in FIELDS:  # by its own option, or by name in the list of --override
        option = META[name]["axis"] if command != "metarl-train" and META[name]["axis"] else META[name]["option"]
        assert (f"  {option} " in text) if option else (f"{name} ({META[name]['doc']}: " in text), name


def test_override_learning_rate_is_the_lr_option(tmp_path):
    from metarl_agents.cli.options import grid_settings
    from metarl_agents.leaderboard.grid import build_grid

    def spec(parser, argv, grid):
        (run,) = build_grid(**grid_settings(parser.parse_args(argv), grid=grid))
        return run

    one = ["--env", "MetaTMaze-v0", "--agent", "RNN", "--out", str(tmp_path), "--seed", "3"]
    by_option = spec(train.build_parser(), [*one, "--lr", "3e-3"], grid=False)
    by_override = spec(train.build_parser(), [*one, "--override", "learning_rate=3e-3"], grid=False)
    both = spec(train.build_parser(), [*one, "--lr", "3e-3", "--override", "learning_rate=0.003"], grid=False)
    assert by_option == by_override == both and by_option.learning_rate == 3e-3 and by_option.overrides == {}
    grid = ["run", "--envs", "MetaTMaze-v0", "--agents", "RNN", "--seeds", "3,"]
    run = bench.build_parser()
    assert spec(run, [*grid, "--override", "learning_rate=3e-3"], grid=True).run_key == by_option.run_key
    assert spec(run, [*grid, "--lrs", "3e-3"], grid=True).run_key == by_option.run_key
    default = spec(train.build_parser(), one, grid=False)  # one run: the preset's learning rate
    assert (default.learning_rate, default.seed) == (1e-3, 3)
