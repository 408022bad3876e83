"""The options ``metarl-train`` and ``metarl-bench run`` share: one parser for one run configuration.

Both command lines spell a setting the same way (``--frames``, ``--eval-every``, ``--n-eval-tasks``,
``--final-eval-tasks``,
``--override KEY=VALUE``, ``--env-kwarg KEY=VALUE``, ``--policy-kwarg KEY=VALUE``, ``--stop-at-return``,
``--patience``, ``--device``, ``--threads``) and hand the values to the same configuration
(:class:`~metarl_agents.training.config.RunConfig`, through :func:`~metarl_agents.leaderboard.grid.build_grid`),
which checks every value. A bad value ends the command with exit status 2 and one line naming the value
and what is allowed, before anything is written.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, NoReturn

from metarl_agents.training.config import settings_help
from metarl_agents.training.presets import tomllib


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (``prog: error: ...``) and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def key_value(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with a TOML value (``3``, ``1e-3``, ``true``, ``[16, 16]``, ``"mlp"``; a bare word is a
    string), as an argparse type."""
    key, sep, value = text.partition("=")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        return key, value


def frames(text: str) -> int:
    """A frame count (1500000, 1.5e6, 200k, 1.5M), as an argparse type."""
    from metarl_agents.leaderboard.grid import parse_frames

    try:
        return parse_frames(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """The settings of a run that both command lines take (defaults: the env's preset)."""
    parser.add_argument("--frames", type=frames,
                        help="training frames per run, e.g. 200k or 1.5e6 (default: the preset's; less is labelled "
                             "REDUCED BUDGET in the store, the report and its file names)")
    parser.add_argument("--eval-every", dest="eval_every", type=frames, metavar="FRAMES",
                        help="frames between evaluations (default: preset eval_freq, at least 10 points per run, "
                             "in whole rollouts)")
    parser.add_argument("--n-eval-tasks", dest="n_eval_tasks", type=int, metavar="N",
                        help="tasks per evaluation: the same held-out tasks (seeds seed + 1000003 + i) at every "
                             "point, deterministic actions, one trial each (default: the preset's)")
    parser.add_argument("--final-eval-tasks", dest="n_final_eval_tasks", type=int, metavar="N",
                        help="tasks in each of the run's last 3 evaluations, whose mean is its final statistic "
                             "(the first --n-eval-tasks of them the same tasks as before; default: --n-eval-tasks; "
                             "the paper-claim runs use 64)")
    parser.add_argument("--n-envs", type=int, metavar="N", help="parallel envs (same as --override n_envs=N)")
    parser.add_argument("--override", dest="overrides", type=key_value, action="append", default=[],
                        metavar="KEY=VALUE",
                        help=f"replace a preset trainer setting (repeatable; reported as a non-paper setting): "
                             f"{settings_help()}")
    parser.add_argument("--env-kwarg", dest="env_kwargs", type=key_value, action="append", default=[],
                        metavar="KEY=VALUE", help="family kwarg, e.g. length=10 (repeatable; a non-paper setting)")
    parser.add_argument("--policy-kwarg", dest="policy_kwargs", type=key_value, action="append", default=[],
                        metavar="KEY=VALUE", help="policy kwarg, e.g. head=mlp or net_arch=[16] (repeatable)")
    parser.add_argument("--protocol", choices=("paper", "metarl"),
                        help="training protocol: paper (as the SplAgger reference trained; the paper presets' "
                             "default) or metarl (this trainer's own; what runs stored before protocols used)")
    parser.add_argument("--stop-at-return", type=float, metavar="R",
                        help="end a run after --patience consecutive evaluations with a meta-episode return >= R "
                             "(e.g. 15.5 on MetaTMaze-v0)")
    parser.add_argument("--patience", type=int, metavar="P",
                        help="evaluations >= --stop-at-return in a row before stopping (default: 1)")
    parser.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:N, mps or auto; an unavailable "
                                                        "device is an error (default: cpu)")
    parser.add_argument("--threads", type=int, metavar="N",
                        help="torch threads per run (default: 1, fastest for these small models with batch-16 "
                             "rollouts, and several times faster than torch's default on a busy machine)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (a stdout that is not a terminal still gets one line per evaluation)")


def _pairs(option: str, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out and out[key] != value:
            raise ValueError(f"{option} sets {key} twice ({out[key]!r} and {value!r})")
        out[key] = value
    return out


def grid_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The shared options as keyword arguments of :func:`~metarl_agents.leaderboard.grid.build_grid`."""
    overrides = _pairs("--override", args.overrides)
    if args.n_envs is not None:
        if overrides.get("n_envs", args.n_envs) != args.n_envs:
            raise ValueError(f"--n-envs {args.n_envs} and --override n_envs={overrides['n_envs']} disagree")
        overrides["n_envs"] = args.n_envs
    return {
        "frames": args.frames, "eval_every": args.eval_every, "n_eval_tasks": args.n_eval_tasks,
        "n_final_eval_tasks": args.n_final_eval_tasks,
        "env_kwargs": _pairs("--env-kwarg", args.env_kwargs), "overrides": overrides,
        "policy_kwargs": _pairs("--policy-kwarg", args.policy_kwargs), "stop_at_return": args.stop_at_return,
        "patience": args.patience, "protocol": args.protocol,
    }


def fail(prog: str, message: object) -> NoReturn:
    """End the command: one line on stderr, exit status 2."""
    print(f"{prog}: error: {' '.join(str(message).split())}", file=sys.stderr)
    raise SystemExit(2)
