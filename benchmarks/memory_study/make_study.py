"""Regenerate the tables of benchmarks/MEMORY_STUDY.md from the study's result store.

    python benchmarks/memory_study/make_study.py [--db benchmarks/memory_study/study.db]

Two things are written:

* the leaderboard report of the store (``metarl-bench report``: ranked tables with bootstrap intervals and a
  learning-curve plot per environment) as ``benchmarks/memory_study/LEADERBOARD.md`` and ``report/`` (with
  the page ``report/index.html``);
* between the ``<!-- study:begin -->`` and ``<!-- study:end -->`` markers of ``benchmarks/MEMORY_STUDY.md``,
  the study's own view: every memory next to its split-max version, seed by seed (frames to the first
  evaluation >= 15.5 on T-LS, best and final return), one figure per environment with a panel per memory
  (``figures/``), and how much of the grid has finished. The text around the markers is the hand-written
  part and is left as it is.

The grid (agents, seeds, environments) is the one of ``run_study.sh``, which a test keeps in step.
"""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass
from pathlib import Path

from metarl_agents.leaderboard.grid import format_frames
from metarl_agents.leaderboard.report import Group, bootstrap_ci, label_frames_axis, load_groups, write_report
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


def plot_pairs(group: Group, path: Path) -> None:
    """One panel per memory: alone against split max, with Max and CNP drawn thin in every panel.

    The study's question is asked pair by pair, and one plot of all 14 agents hides the pairs in a tangle;
    a panel each puts the two curves to compare side by side on shared axes.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    entries = {entry.agent: entry for entry in group.best_entries()}
    fig, axes = plt.subplots(2, 3, figsize=(10.5, 6.0), sharex=True, sharey=True)
    styles = {"alone": dict(color="tab:blue"), "split max": dict(color="tab:red"),
              "Max": dict(color="0.35", linestyle=":", linewidth=1.2),
              "CNP": dict(color="0.35", linestyle="-.", linewidth=1.2)}
    for ax, (label, alone, split) in zip(axes.flat, PAIRS, strict=True):
        seeds = []
        for agent, style in [("Max", "Max"), ("CNP", "CNP"), (alone, "alone"), (split, "split max")]:
            entry = entries.get(agent)
            if entry is None:
                continue
            mean, low, high = bootstrap_ci(entry.curves)
            ax.plot(entry.frames, mean, **styles[style])
            if agent not in AGGREGATORS_ONLY:
                ax.fill_between(entry.frames, low, high, color=styles[style]["color"], alpha=0.2, linewidth=0)
                seeds.append(str(len(entry.seeds)))
        ax.set_title(f"{label} (seeds: {' / '.join(seeds) or 'none yet'})", fontsize="medium")
        ax.grid(alpha=0.3)
    handles = [plt.Line2D([], [], **style) for style in styles.values()]
    fig.legend(handles, ["memory alone", "memory + split max", "Max (no recurrence)", "CNP (no recurrence)"],
               loc="lower center", ncol=4, frameon=False)
    budget = f"{format_frames(group.frames)} frames per run"
    if group.reduced:
        budget += f", REDUCED BUDGET (paper {format_frames(group.paper_frames)})"
    fig.suptitle(f"{group.label()}, {budget}: mean over seeds, 68 % bootstrap band")
    label_frames_axis(axes.flat[0])  # the axes share x, and so their tick labels
    fig.supxlabel("frames", y=0.07)
    fig.supylabel("meta-episode return")
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_figures(db: Path, out_dir: Path) -> dict[str, Path]:
    """Draw :func:`plot_pairs` for every study environment with finished runs; return env -> figure path."""
    with ResultStore(db, readonly=True) as store:
        groups = [group for group in load_groups(store, ENVS) if group.entries]
    figures = {}
    for group in groups:
        if group.env_id in figures:  # another configuration of an env already drawn: not part of this study
            continue
        figures[group.env_id] = out_dir / f"{group.env_id}.png"
        plot_pairs(group, figures[group.env_id])
    return figures


def study_markdown(results: dict[tuple[str, str, int], SeedResult], figures: dict[str, str] | None = None) -> list[str]:
    """The pairs tables, a figure per environment (``figures``: env -> link) and the progress of the grid,
    as markdown lines."""
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
        if figures and env in figures:
            carried = " (a run stopped early carries its last value to the budget)" if env in SOLVED else ""
            lines += [f"![{env}: each memory alone and with split max{carried}]({figures[env]})", ""]
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
    figures = {env: Path(os.path.relpath(path, args.document.parent)).as_posix()
               for env, path in write_figures(args.db, HERE / "figures").items()}
    update_document(args.document, study_markdown(collect(args.db), figures))
    print(f"updated {args.document} and {HERE / 'LEADERBOARD.md'}")


if __name__ == "__main__":
    main()
