"""The options ``metarl-train`` and ``metarl-bench run`` share, generated from the run configuration.

Each field of :class:`~metarl_agents.training.config.RunConfig` is one option, spelled and explained where
the field is declared (``--frames``, ``--lr``, ``--n-envs``, ``--env-kwarg KEY=VALUE``, ...); a grid takes
its axes as lists (``--envs``, ``--agents``, ``--seeds``, ``--lrs``). ``--override KEY=VALUE`` takes every
trainer setting, those with an option of their own too (``--override learning_rate=3e-3`` is ``--lr 3e-3``;
given both ways, they must agree). :func:`~metarl_agents.leaderboard.grid.build_grid` checks every value: a
bad one ends the command with exit status 2 and one line naming it, before anything is written.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, NoReturn

from metarl_agents.leaderboard.grid import parse_frames
from metarl_agents.training.config import META, OVERRIDABLE, TRAINER_SETTINGS, preset_settings
from metarl_agents.training.presets import tomllib
from metarl_agents.value_check import allowed_values

#: How ``metarl-bench run`` reads a list of seeds or learning rates (the field's help says what one value is).
_AXES = {"seed": (str, "one number N = the first N preset seeds; several numbers (or a comma list such as 7,) = "
                       "those seeds (default: the preset's seeds)"),
         "learning_rate": (float, "several: one run each (default: the preset's lr_grid)")}


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
    try:
        return parse_frames(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_run_options(parser: argparse.ArgumentParser, grid: bool = False) -> None:
    """One option per configuration field, the field's name its destination (``grid``: the axes as lists, as
    ``metarl-bench run`` takes them), then ``--override`` and ``--no-progress``."""
    for name, meta in META.items():
        required = meta["default"] is None and not meta["optional"]
        if grid and meta["axis"]:
            kind, note = _AXES.get(name, (str, "several: one run each"))
            parser.add_argument(meta["axis"], dest=name, nargs="+", type=kind, required=required,
                                metavar=meta["axis"][2:-1].upper(), help=f"{meta['doc']}; {note}")
        elif meta["kind"] is dict:
            parser.add_argument(meta["option"], dest=name, type=key_value, action="append", default=[],
                                metavar="KEY=VALUE", help=meta["doc"])
        elif meta["option"]:  # the others are set with --override; the help says the default unless the doc does
            default = "" if "default" in meta["doc"] or meta["default"] is None else \
                f" (default: {'the preset' if meta['preset'] else meta['default']})"
            parser.add_argument(meta["option"], dest=name, type=frames if meta["unit"] == "frames" else meta["kind"],
                                choices=meta["choices"], required=required, help=meta["doc"] + default)
    listed = "; ".join(f"{name} ({meta['doc']}: {allowed_values(meta)})" for name, meta in META.items()
                       if meta["trainer"] and not meta["option"])
    also = ", ".join(name for name in OVERRIDABLE if META[name]["option"])
    parser.add_argument("--override", dest="overrides", type=key_value, action="append", default=[],
                        metavar="KEY=VALUE", help="replace a preset trainer setting (repeatable; reported as a "
                                                  f"non-paper setting): {listed}; also {also}, as their own options")
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
    overrides = _pairs("--override", args.overrides)  # the grid checks their names (those of its trainer)
    values = {name: getattr(args, name) for name, meta in META.items() if meta["option"]}
    for name in sorted(set(overrides) & set(values) & set(OVERRIDABLE)):  # given both ways: they must agree
        value = overrides.pop(name)
        given, listed = ([value], True) if grid and META[name]["axis"] else (value, False)
        if values[name] not in (None, given):
            raise ValueError(f"{META[name]['axis' if listed else 'option']} {values[name]} and --override "
                             f"{name}={value!r} disagree")
        values[name] = given
    overrides.update({name: value for name in TRAINER_SETTINGS if (value := values.pop(name, None)) is not None})
    values.update({name: _pairs(META[name]["option"], values[name]) for name in ("env_kwargs", "policy_kwargs")})
    axes = {meta["axis"][2:]: values.pop(name) for name, meta in META.items() if meta["axis"]}
    if not grid:  # one run: each axis one value
        axes["seeds"] = f"{META['seed']['default'] if axes['seeds'] is None else axes['seeds']},"
        if axes["lrs"] is None:
            axes["lrs"] = preset_settings(axes["envs"])["learning_rate"]
        axes = {axis: [value] for axis, value in axes.items()}
    return {**axes, "overrides": overrides, **values}


def fail(prog: str, message: object) -> NoReturn:
    """End the command: one line on stderr, exit status 2."""
    print(f"{prog}: error: {' '.join(str(message).split())}", file=sys.stderr)
    raise SystemExit(2)
