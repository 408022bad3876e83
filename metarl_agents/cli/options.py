"""The options ``metarl-train`` and ``metarl-bench run`` share, generated from the run configuration.

Every field of :class:`~metarl_agents.training.config.RunConfig` is one option, spelled and explained where
the field is declared (its ``option`` and ``doc``): ``--frames``, ``--eval-every``, ``--n-eval-tasks``,
``--final-eval-tasks``, ``--lr``, ``--n-envs``, ``--protocol``, ``--stop-at-return``, ``--patience``,
``--device``, ``--threads``, ``--env-kwarg KEY=VALUE``, ``--policy-kwarg KEY=VALUE``; the trainer settings
without an option of their own are set with ``--override KEY=VALUE``, which takes every trainer setting
(``--override learning_rate=3e-3`` is ``--lr 3e-3``; a setting given both ways must agree). A grid
(``metarl-bench run``) takes its axes as lists: ``--envs``, ``--agents``, ``--seeds``, ``--lrs``.
Both hand the values to :func:`~metarl_agents.leaderboard.grid.build_grid`, which checks every one through
the configuration. A bad value ends the command with exit status 2 and one line naming the value and what
is allowed, before anything is written.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any, NoReturn

from metarl_agents.training.config import (
    FIELDS,
    META,
    OVERRIDABLE,
    TRAINER_SETTINGS,
    RunConfig,
    settings_help,
)
from metarl_agents.training.presets import tomllib

#: How ``metarl-bench run`` reads a grid axis given as a list (the field's help says what one value is).
_AXES: dict[str, tuple[type, str]] = {
    "env_id": (str, "several: one run each"),
    "agent": (str, "several: one run each"),
    "seed": (str, "one number N = the first N preset seeds; several numbers (or a comma list such as 7,) = those "
                  "seeds (default: the preset's seeds)"),
    "learning_rate": (float, "several: one run each (default: the preset's lr_grid)"),
}


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


def _required(name: str) -> bool:
    item = RunConfig.__dataclass_fields__[name]
    return item.default is dataclasses.MISSING and item.default_factory is dataclasses.MISSING


def _help(name: str) -> str:
    """The field's help text, with its default unless the text says it."""
    meta = META[name]
    if "default" in meta["doc"] or _required(name) or meta["kind"] is dict:
        return meta["doc"]
    if meta["preset"]:
        return f"{meta['doc']} (default: the preset's)"
    return meta["doc"] if meta["default"] is None else f"{meta['doc']} (default: {meta['default']})"


def add_run_options(parser: argparse.ArgumentParser, grid: bool = False) -> None:
    """One option per configuration field, with the field's name as its destination (``grid``: the axes as
    lists, as ``metarl-bench run`` takes them), ``--override`` and ``--no-progress``."""
    for name in FIELDS:
        meta = META[name]
        if meta["option"] is None:
            continue  # a trainer setting: --override
        if grid and meta["axis"]:
            kind, note = _AXES[name]
            parser.add_argument(meta["axis"], dest=name, nargs="+", type=kind, required=_required(name),
                                metavar=meta["axis"].lstrip("-")[:-1].upper(), help=f"{meta['doc']}; {note}")
        elif meta["kind"] is dict:
            parser.add_argument(meta["option"], dest=name, type=key_value, action="append", default=[],
                                metavar="KEY=VALUE", help=_help(name))
        else:
            kind = frames if meta["unit"] == "frames" else meta["kind"]
            parser.add_argument(meta["option"], dest=name, type=kind, choices=meta["choices"],
                                required=_required(name), help=_help(name))
    parser.add_argument("--override", dest="overrides", type=key_value, action="append", default=[],
                        metavar="KEY=VALUE",
                        help="replace a preset trainer setting (repeatable; reported as a non-paper setting): "
                             f"{settings_help()}; also {', '.join(n for n in OVERRIDABLE if META[n]['option'])}, "
                             "the same as their own options")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bars (a stdout that is not a terminal still gets one line per evaluation)")


def _pairs(option: str, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out and out[key] != value:
            raise ValueError(f"{option} sets {key} twice ({out[key]!r} and {value!r})")
        out[key] = value
    return out


def grid_settings(args: argparse.Namespace, grid: bool = False) -> dict[str, Any]:
    """The options as keyword arguments of :func:`~metarl_agents.leaderboard.grid.build_grid` (``grid``: the
    axes were given as lists; otherwise each is one value, the learning rate by default the preset's)."""
    overrides = _pairs("--override", args.overrides)
    unknown = sorted(set(overrides) - set(OVERRIDABLE))
    if unknown:
        raise ValueError(f"unknown override {', '.join(map(repr, unknown))}; allowed: {', '.join(OVERRIDABLE)}")
    values = {name: getattr(args, name) for name in FIELDS if META[name]["option"]}
    for name in sorted(set(overrides) & set(values)):  # a setting with an option of its own: both must agree
        given = overrides.pop(name)
        listed = grid and META[name]["axis"]
        if values[name] is not None and values[name] != ([given] if listed else given):
            spelling = META[name]["axis"] if listed else META[name]["option"]
            raise ValueError(f"{spelling} {values[name]} and --override {name}={given!r} disagree")
        values[name] = [given] if listed else given
    for name in TRAINER_SETTINGS:  # an option of a setting stored among the run's overrides (--n-envs)
        value = values.pop(name, None)
        if value is not None:
            overrides[name] = value
    for name in ("env_kwargs", "policy_kwargs"):
        values[name] = _pairs(META[name]["option"], values[name])
    axes = {META[name]["axis"].lstrip("-"): values.pop(name) for name in FIELDS if META[name]["axis"]}
    if not grid:  # one run: each axis one value
        from metarl_agents.training.config import preset_settings

        seed = META["seed"]["default"] if axes["seeds"] is None else axes["seeds"]
        lr = preset_settings(axes["envs"])["learning_rate"] if axes["lrs"] is None else axes["lrs"]
        axes = {"envs": [axes["envs"]], "agents": [axes["agents"]], "seeds": [f"{seed},"], "lrs": [lr]}
    return {**axes, "overrides": overrides, **values}


def fail(prog: str, message: object) -> NoReturn:
    """End the command: one line on stderr, exit status 2."""
    print(f"{prog}: error: {' '.join(str(message).split())}", file=sys.stderr)
    raise SystemExit(2)
