"""Regenerate the tables of benchmarks/MEMORY_STUDY.md from the study's result store.

    python benchmarks/memory_study/make_study.py [--db benchmarks/memory_study/study.db]

Two things are written:

* the leaderboard report of the store (``metarl-bench report``: ranked tables with bootstrap intervals and a
  learning-curve plot per environment) as ``benchmarks/memory_study/LEADERBOARD.md`` and ``report/``;
* between the ``<!-- study:begin -->`` and ``<!-- study:end -->`` markers of ``benchmarks/MEMORY_STUDY.md``,
  the study's own view: every memory next to its split-max version, seed by seed (frames to the first
  evaluation >= 15.5 on T-LS, best and final return), and how much of the grid has finished. The text
  around the markers is the hand-written part and is left as it is.

The grid (agents, seeds, environments) is the one of ``run_study.sh``, which a test keeps in step.
"""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass
from pathlib import Path

from metarl_agents.leaderboard.report import write_report
from metarl_agents.leaderboard.store import ResultStore

HERE = Path(os.path.relpath(Path(__file__).resolve().parent))  # relative, as the report names its paths
#: each memory alone and under split max aggregation; the GRU pair is the paper's RNN and SplAgger
PAIRS = [("GRU", "RNN", "SplAgger"), ("minGRU", "minGRU", "SplAgger-minGRU"), ("LRU", "LRU", "SplAgger-LRU"),
         ("FFM", "FFM", "SplAgger-FFM"), ("S6", "S6", "SplAgger-S6"), ("GLA", "GLA", "SplAgger-GLA")]
#: the permutation-invariant baselines without any recurrence
AGGREGATORS_ONLY = ["Max", "CNP"]
AGENTS = [name for _, alone, split in PAIRS for name in (alone, split)] + AGGREGATORS_ONLY
ENVS = ["MetaTMaze-v0", "MetaTMazeLatent-v0", "MetaMinecraftLongShort-v0"]
SEEDS = [73, 20, 3]
SOLVED = {"MetaTMaze-v0": 15.5}  # the threshold a T-LS run stops at (3 evaluations in a row)
BEGIN, END = "<!-- study:begin -->", "<!-- study:end -->"


@dataclass(frozen=True)
class SeedResult:
    frames_done: int
    first_solved: int | None  # frames at the first evaluation >= the threshold
    best: float
    final: float


def collect(db: Path) -> dict[tuple[str, str, int], SeedResult]:
    """The finished runs of the store, keyed by (env, agent, seed)."""
    results = {}
    with ResultStore(db, readonly=True) as store:
        for run in store.runs(status="finished"):
            points = store.evaluations(run.id)
            if not points:
                continue
            threshold = SOLVED.get(run.env_id)
            solved = [p.frames for p in points if threshold is not None and p.meta_episode_return >= threshold]
            results[run.env_id, run.agent, run.seed] = SeedResult(
                run.frames_done, solved[0] if solved else None,
                max(p.meta_episode_return for p in points), points[-1].meta_episode_return)
    return results


def _cell(result: SeedResult | None, env: str) -> str:
    if result is None:
        return "—"
    if env in SOLVED:
        head = f"**{result.first_solved:,}**" if result.first_solved is not None else "not solved"
        return f"{head} (best {result.best:.2f})"
    return f"{result.final:.2f} (best {result.best:.2f})"


def study_markdown(results: dict[tuple[str, str, int], SeedResult]) -> list[str]:
    """The pairs tables and the progress of the grid, as markdown lines."""
    total = len(ENVS) * len(AGENTS) * len(SEEDS)
    lines = [f"Finished runs: **{len(results)} of {total}** ({len(AGENTS)} agents x {len(SEEDS)} seeds x "
             f"{len(ENVS)} environments).", ""]
    for env in ENVS:
        done = [key for key in results if key[0] == env]
        lines.append(f"#### {env} ({len(done)} of {len(AGENTS) * len(SEEDS)} runs finished)")
        lines.append("")
        if not done:
            lines += ["No finished runs yet.", ""]
            continue
        what = ("frames to the first evaluation >= 15.5 (best return)" if env in SOLVED
                else "final return (best return)")
        lines.append(f"Per seed: {what}; — = not finished yet.")
        lines.append("")
        header = ["memory", *[f"alone, seed {s}" for s in SEEDS], *[f"split max, seed {s}" for s in SEEDS]]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for label, alone, split in PAIRS:
            cells = [_cell(results.get((env, agent, seed)), env) for agent in (alone, split) for seed in SEEDS]
            lines.append(f"| {label} ({alone} / {split}) | " + " | ".join(cells) + " |")
        for agent in AGGREGATORS_ONLY:
            cells = [_cell(results.get((env, agent, seed)), env) for seed in SEEDS]
            lines.append(f"| none ({agent}) | — | — | — | " + " | ".join(cells) + " |")
        lines.append("")
    remaining = []
    for env in ENVS:
        for seed in SEEDS:
            missing = [agent for agent in AGENTS if (env, agent, seed) not in results]
            if missing:
                names = f"all {len(AGENTS)}" if len(missing) == len(AGENTS) else ", ".join(missing)
                remaining.append(f"- {env}, seed {seed}: {names}")
    if remaining:
        lines += ["Not finished yet:", "", *remaining, ""]
    return lines


def update_document(document: Path, lines: list[str]) -> None:
    """Replace the text between the markers of ``document`` (which must hold each marker once)."""
    text = document.read_text()
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        raise ValueError(f"{document} must hold {BEGIN} and then {END}, once each")
    generated = "\n".join([BEGIN, *lines, END])
    document.write_text(re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: generated, text, flags=re.S))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", type=Path, default=HERE / "study.db")
    parser.add_argument("--document", type=Path, default=HERE.parent / "MEMORY_STUDY.md")
    args = parser.parse_args()
    write_report(args.db, HERE / "report", markdown=HERE / "LEADERBOARD.md")
    update_document(args.document, study_markdown(collect(args.db)))
    print(f"updated {args.document} and {HERE / 'LEADERBOARD.md'}")


if __name__ == "__main__":
    main()
