"""``metarl-train``: train one agent on one environment from its preset, as a one-run leaderboard grid.

Example::

    metarl-train --env MetaTMaze-v0 --agent SplAgger --frames 1.5e6 --seed 73 --lr 1e-3 --out runs/tmaze

The run goes through the leaderboard's runner into ``DIR/metarl_results.db`` (its evaluation points,
configuration and checkpoints beside it, ``DIR/metarl_results.db.checkpoints/``), so it is evaluated with
the leaderboard's protocol and an interrupted run resumes from its last evaluation when the same command
runs again. At the end it writes the trained model as ``DIR/model.pt`` (``metarl_agents.load_model``: weights
and a JSON configuration, a file that cannot run code when loaded) and the evaluation curve as
``DIR/eval.csv`` and ``DIR/eval.json``. Options and their syntax are those of
``metarl-bench run``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from metarl_agents.cli.options import OneLineParser, add_run_options, fail, grid_settings
from metarl_agents.training.errors import CheckpointError

DB_NAME = "metarl_results.db"


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="metarl-train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=_out_dir, required=True, help="output directory")
    add_run_options(parser)
    return parser


def _out_dir(text: str) -> Path:
    """An output folder (argparse type): an empty name is refused rather than read as the current folder."""
    if not text.strip():
        raise argparse.ArgumentTypeError("--out needs a directory name, got an empty one (use . for the current "
                                         "directory)")
    return Path(text)


def _prepare_out(out: Path) -> None:
    """Create the output folder, or end the command with one line saying why it cannot be used."""
    if out.exists() and not out.is_dir():
        fail("metarl-train", f"--out {out} is a file, not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        fail("metarl-train", f"cannot create the output directory --out {out}: {exc.strerror or exc}")
    if not os.access(out, os.W_OK | os.X_OK):
        fail("metarl-train", f"the output directory --out {out} is not writable")


def _write_curve(out: Path, meta: dict[str, Any], points: list[Any]) -> None:
    curve = [{"frames": p.frames, "meta_episode_return": p.meta_episode_return, "episode_returns": p.episode_returns,
              "wall_time_s": p.wall_time_s} for p in points]
    (out / "eval.json").write_text(json.dumps({**meta, "curve": curve}, indent=1))
    n_episodes = max((len(p.episode_returns) for p in points), default=0)
    with (out / "eval.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["frames", "meta_episode_return", *[f"episode_{k}" for k in range(n_episodes)], "wall_time_s"])
        for p in points:
            writer.writerow([p.frames, p.meta_episode_return, *p.episode_returns, p.wall_time_s])


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from metarl_agents.leaderboard.grid import build_grid
    from metarl_agents.leaderboard.runner import MetaPPOTrainer

    try:
        (spec,) = build_grid(**grid_settings(args))
        config = spec.config()
        trainer = MetaPPOTrainer(device=config.device, threads=config.threads)
    except ValueError as exc:
        fail(parser.prog, exc)
    _prepare_out(args.out)
    print(f"# {spec.run_key}\n{config.describe()}")
    return _train(args.out, spec, trainer, config, show_progress=False if args.no_progress else None)


def _train(out: Path, spec: Any, trainer: Any, config: Any, show_progress: bool | None) -> int:
    from metarl_agents.leaderboard.runner import run_grid, stored_checkpoint
    from metarl_agents.leaderboard.store import ResultStore, StoreError
    from metarl_agents.training.model_file import save_model

    db = out / DB_NAME
    start = time.time()
    try:
        summary = run_grid([spec], db, trainer=trainer, show_progress=show_progress)
    except StoreError as exc:
        fail("metarl-train", exc)
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume from the last evaluation")
        return 130
    if not summary.ok:
        print(f"metarl-train: the run failed: {summary.failed[spec.run_key]}\nrun the same command again to resume "
              "from its last evaluation")
        return 1
    try:
        with ResultStore(db, readonly=True) as store:
            record = store.run_by_key(spec.run_key)
            points = store.evaluations(record.id)
        model = trainer.resume(spec, stored_checkpoint(db, spec.run_key, record.checkpoint_path))
        save_model(model, config, out / "model.pt")
    except (StoreError, CheckpointError, OSError) as exc:
        fail("metarl-train", exc)
    meta = {"run_key": spec.run_key, "config": config.as_dict(), "reduced_budget": spec.reduced,
            "paper_frames": spec.paper_frames, "env_kwargs": spec.env_kwargs, "overrides": spec.overrides,
            "learning_rate": config.learning_rate, "stop_at_return": spec.stop_at_return}
    _write_curve(out, meta, points)
    stopped = ""
    if spec.stop_at_return is not None and points[-1].frames < spec.frames:
        stopped = f" (reached {spec.stop_at_return} {spec.patience} time(s) in a row, stopped)"
    skipped = " (already finished)" if summary.skipped else ""
    print(f"{spec.env_id} {spec.agent} seed {spec.seed}: {points[-1].frames} frames in {time.time() - start:.0f} s"
          f"{skipped}, final meta-episode return {points[-1].meta_episode_return:.3f}{stopped} -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
