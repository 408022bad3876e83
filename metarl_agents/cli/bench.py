"""``metarl-bench``: run a leaderboard grid into a result store, and report on the store.

    metarl-bench run --envs MetaTMaze-v0 --agents SplAgger RNN --seeds 3 --frames 1.5e6 --workers 2
    metarl-bench report          # ./leaderboard_report/leaderboard.md + index.html + curves + CSV/JSON
    metarl-bench merge --db metarl_results.db other_machine.db   # add the finished runs of another store
    metarl-bench merge --db metarl_results.db study.db --envs MetaTMaze-v0 --agents RNN Max   # a part of it
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from metarl_agents.cli.options import OneLineParser, add_run_options, grid_settings
from metarl_agents.leaderboard.grid import format_frames
from metarl_agents.leaderboard.lock import StoreInUse
from metarl_agents.leaderboard.meta_gradient import (
    MetaGradientTrainer,
    add_iteration_options,
    build_meta_gradient_grid,
    uses_meta_gradient_agents,
)
from metarl_agents.leaderboard.runner import ClusterLost
from metarl_agents.leaderboard.store import StoreError
from metarl_agents.training.config import META

DEFAULT_DB = "metarl_results.db"
DEFAULT_REPORT_DIR = "leaderboard_report"


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="metarl-bench", description="metarl leaderboard benchmark")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    run = commands.add_parser(
        "run", help="train a grid of env x agent x seed x lr into the result store",
        description="Train every (env, agent, seed, lr) of the grid; finished runs are skipped and "
                    "unfinished ones resume from their last checkpoint. Unset options come from each "
                    "env's preset (metarl_agents/training/presets/<env>.toml).",
    )
    add_run_options(run, grid=True)
    add_iteration_options(run)
    run.add_argument("--db", default=DEFAULT_DB, help=f"result database (default: ./{DEFAULT_DB})")
    run.add_argument("--backend", choices=("local", "ray"), default="local")
    run.add_argument("--workers", type=int, default=1, help="local runs in parallel (default: 1)")
    run.add_argument("--address", help="Ray cluster address, e.g. auto (default: start a local Ray instance)")
    run.add_argument("--checkpoints", metavar="WHERE",
                     help="where run checkpoints live: a folder every node reaches at the same path, or 'driver' "
                          "(each checkpoint is sent to this process, through Ray's object store, and kept beside "
                          "the store); use the same value when re-running (default: DB.checkpoints/ beside the store)")
    run.add_argument("--gpus-per-run", type=float, metavar="F",
                     help="GPUs each Ray task reserves, a fraction to share one GPU (0.25 = four runs per GPU) or "
                          "a whole number; with --device cuda (Ray backend only)")
    run.add_argument("--restart-failed", action="store_true",
                     help="train failed runs again from scratch, discarding their checkpoint and evaluation points "
                          "(for a damaged or missing checkpoint); without it failed runs resume")

    report = commands.add_parser("report", help="write the leaderboard from the result store")
    report.add_argument("--db", default=DEFAULT_DB, help=f"result database (default: ./{DEFAULT_DB})")
    report.add_argument("--out", default=DEFAULT_REPORT_DIR, help=f"output folder (default: ./{DEFAULT_REPORT_DIR})")
    report.add_argument("--envs", nargs="+", metavar="ENV", help="only these environments")
    report.add_argument("--markdown", metavar="FILE",
                        help="write the markdown there instead of OUT/leaderboard.md (plots stay in OUT, linked)")

    merge = commands.add_parser(
        "merge", help="add the finished runs of stores trained elsewhere to a result store",
        description="Add the finished runs of each SOURCE store (say, one trained on another machine and copied "
                    "here) to the store at --db, in one transaction; the sources are only read. A run the "
                    "destination lacks, or has not started, is imported without its checkpoint (checkpoints "
                    "never travel). A run both stores finished is skipped when its evaluation points are "
                    "identical and otherwise reported as a conflict: finished results in --db are never "
                    "overwritten. Unfinished source runs are skipped (they resume where their checkpoint is).",
    )
    merge.add_argument("sources", nargs="+", metavar="SOURCE", help="result stores to take finished runs from")
    merge.add_argument("--db", default=DEFAULT_DB, help=f"destination result database (default: ./{DEFAULT_DB})")
    merge.add_argument("--replace-unfinished", action="store_true",
                       help="let a finished source run replace a run that --db has started but not finished (its "
                            "checkpoint stays on disk, unused); without it that is reported as a conflict")
    merge.add_argument("--envs", nargs="+", metavar="ENV", help="only the source runs of these environments")
    merge.add_argument("--agents", nargs="+", metavar="AGENT", help="only the source runs of these agents")
    return parser


def _run(args: argparse.Namespace) -> int:
    from metarl_agents.leaderboard import runner
    from metarl_agents.leaderboard.grid import build_grid

    if args.backend != "ray" and args.address:
        raise ValueError("--address only applies to --backend ray")
    settings = grid_settings(args, grid=True)
    if uses_meta_gradient_agents(settings["agents"]):  # BO-MRL, MAML-TRPO: a budget in meta-iterations
        device, threads = (settings.pop(name) or META[name]["default"] for name in ("device", "threads"))
        specs = build_meta_gradient_grid(**settings, iterations=args.iterations,
                                         eval_every_iterations=args.eval_every_iterations)
        trainer = MetaGradientTrainer(threads=threads, device=device)
        configs = [trainer.config(spec) for spec in specs]
    else:
        if args.iterations is not None or args.eval_every_iterations is not None:
            raise ValueError("--iterations and --eval-every-iterations apply to the meta-gradient agents only; "
                             f"{', '.join(settings['agents'])} train by frames (--frames, --eval-every)")
        # Every run's full configuration (its device and threads checked too) before anything is written.
        specs = build_grid(**settings)
        configs = [spec.config() for spec in specs]
        device, threads = configs[0].device, configs[0].threads
        trainer = runner.MetaPPOTrainer(device=device, threads=threads)
    if args.gpus_per_run is not None and not device.startswith(("cuda", "auto")):
        raise ValueError(f"--gpus-per-run {args.gpus_per_run:g} needs --device cuda (got --device {device})")
    budgets = sorted({(s.env_id, s.frames, s.paper_frames) for s in specs})
    for env_id, frames, paper in budgets:
        note = f" (REDUCED BUDGET; paper: {format_frames(paper)})" if frames < paper else ""
        print(f"{env_id}: {format_frames(frames)} frames per run{note}")
    for env_id in dict.fromkeys(s.env_id for s in specs):
        config = next(c for c in configs if c.env_id == env_id)
        print(f"# configuration of the {env_id} runs (agent, seed and learning_rate vary)\n{config.describe()}")
    print(f"{len(specs)} runs -> {args.db} ({args.backend} backend)")
    summary = runner.run_grid(specs, args.db, backend=args.backend, workers=args.workers, address=args.address,
                              trainer=trainer, show_progress=False if args.no_progress else None,
                              restart_failed=args.restart_failed, checkpoints=args.checkpoints,
                              gpus_per_run=args.gpus_per_run)
    print(f"done: {len(summary.finished)} trained, {len(summary.skipped)} already finished, "
          f"{len(summary.failed)} failed")
    for key, error in summary.failed.items():
        print(f"FAILED {key}: {error}", file=sys.stderr)
    if summary.failed:
        print("re-run the same command to resume the failed runs from their last checkpoint, or add "
              "--restart-failed to train them again from scratch", file=sys.stderr)
    return 0 if summary.ok else 1


def _report(args: argparse.Namespace) -> int:
    from metarl_agents.leaderboard.report import write_report

    path = write_report(args.db, args.out, args.envs, args.markdown)
    page = Path(args.out) / "index.html"
    print(f"leaderboard written to {path} (curves, CSV and JSON in {args.out}); open {page} in a browser")
    return 0


def _merge(args: argparse.Namespace) -> int:
    from metarl_agents.leaderboard.merge import merge_stores

    summary = merge_stores(args.db, args.sources, replace_unfinished=args.replace_unfinished,
                           envs=args.envs, agents=args.agents)
    for source in summary.sources:
        print("\n".join(source.lines()))
    print(f"{summary.written} runs written to {summary.destination}"
          + (f"; {summary.conflicts} conflicts left the destination's runs as they were" if summary.conflicts else ""))
    return 0


COMMANDS = {"run": _run, "report": _report, "merge": _merge}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (ValueError, StoreError, StoreInUse, FileNotFoundError, ClusterLost) as exc:
        parser.exit(2, f"metarl-bench {args.command}: error: {' '.join(str(exc).split())}\n")
    except OSError as exc:  # e.g. a report folder that cannot be created (--out /dev/full/x)
        where = f" ({exc.filename})" if exc.filename else ""
        parser.exit(2, f"metarl-bench {args.command}: error: {exc.strerror or exc}{where}\n")
    except KeyboardInterrupt:
        resume = "; re-run the same command to resume from the last checkpoints" if args.command == "run" else ""
        parser.exit(130, f"interrupted{resume}\n")


if __name__ == "__main__":
    raise SystemExit(main())
