"""Turn a result store into a leaderboard: markdown tables, learning-curve PNGs, CSV, JSON and an HTML page.

Statistics follow the paper: per (agent, lr) the mean over seeds with a 68 % bootstrap confidence
interval (1,000 resamples of the seeds, fixed generator seed); each agent is shown at the learning
rate with the best mean-over-run return among those with the most finished seeds. Runs are grouped by
environment *and* configuration (budget, preset, evaluation protocol, env kwargs), so a reduced-budget
sweep is never ranked against a full one, and every group states its budget, machine and package
versions above its tables.
"""

from __future__ import annotations

import csv
import json
import os
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from metarl_agents.leaderboard import meta_gradient_agents
from metarl_agents.leaderboard.grid import format_frames
from metarl_agents.leaderboard.groups import Entry, Group, RawRun, build_entry, load_groups  # noqa: F401  (public here)
from metarl_agents.leaderboard.markdown import (
    EVERY_LR_HEADER,
    RANKED_HEADER,
    RANKINGS,
    entry_cells,
    escape_markdown,
    group_title,
    markdown_table,
    provenance_markdown,
)
from metarl_agents.leaderboard.stats import BOOTSTRAP_SEED, bootstrap_ci  # noqa: F401  (bootstrap_ci: public here)
from metarl_agents.leaderboard.stats import PAPER_CONFIDENCE as CONFIDENCE
from metarl_agents.leaderboard.stats import PAPER_RESAMPLES as N_RESAMPLES
from metarl_agents.leaderboard.store import ResultStore

# -- writing ---------------------------------------------------------------------------------------


def _plain(value: str) -> str:
    """A stored string as literal plot text (matplotlib reads ``$...$`` as math)."""
    return " ".join(value.split()).replace("$", r"\$")


def _group_markdown(group: Group, figures: str = "") -> list[str]:
    lines = [f"## {group_title(group, escape_markdown)}", "", *provenance_markdown(group), ""]
    if not group.entries:
        return lines + ["No finished runs yet.", ""]
    caption = f"_{group.label(escape_markdown)}, {group.budget_text()}; machine: {escape_markdown('; '.join(group.machines()))}_"
    for statistic, name in RANKINGS:
        lines += [f"### Ranked by {name} meta-episode return", "", caption, ""]
        rows = [_markdown_cells(entry_cells(e, rank)) for rank, e in enumerate(group.ranked(statistic), 1)]
        lines += markdown_table(RANKED_HEADER, rows)
        lines.append("")
    best = {id(e) for e in group.best_entries()}
    lines += ["### Every learning rate", "", caption, ""]
    rows = [_markdown_cells(entry_cells(e, best=id(e) in best)) for e in group.entries]
    lines += markdown_table(EVERY_LR_HEADER, rows)
    lines += ["", f"![{group.label(escape_markdown)} learning curves]({figures}{group.slug}.png)", ""]
    return lines


def _markdown_cells(cells: list[tuple[str, float | None]]) -> list[str]:
    """Cells of :func:`~.markdown.entry_cells` as markdown: the text columns (stored strings) escaped."""
    return [escape_markdown(text) if value is None else text for text, value in cells]


def label_frames_axis(ax: Any) -> None:
    """Frame ticks as the budgets are written ("100k", "1.5M"), not as matplotlib's 1e6 offset notation."""
    from matplotlib.ticker import FuncFormatter

    ax.xaxis.set_major_formatter(FuncFormatter(lambda frames, _: format_frames(int(frames)) if frames >= 0 else ""))


def _plot(group: Group, path: Path) -> str:
    """Draw the group's learning curves into the PNG at ``path``; return the same figure as SVG markup.

    The SVG keeps its text as text (searchable, selectable in the page) and takes its element ids from a
    hash salted with the group's slug, so that several figures inlined in one page never share an id and
    regenerating a page from the same store gives the same bytes.
    """
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    entries = sorted(group.best_entries(), key=lambda e: e.agent)
    # Matplotlib's default cycle repeats after 10 colours; a study of more agents would draw two in one colour.
    colours = plt.get_cmap("tab10" if len(entries) <= 10 else "tab20").colors
    fig, ax = plt.subplots(figsize=(8.4, 4.0))
    for index, entry in enumerate(entries):
        mean, low, high = bootstrap_ci(entry.curves)
        label = f"{_plain(entry.agent)} (lr {entry.lr:g}, {len(entry.seeds)} seed{'s' * (len(entry.seeds) != 1)})"
        (line,) = ax.plot(entry.frames, mean, label=label, color=colours[index % len(colours)])
        ax.fill_between(entry.frames, low, high, color=line.get_color(), alpha=0.25, linewidth=0)
        carried = entry.carried.any(axis=0)
        if carried.any():
            ax.plot(entry.frames[carried], mean[carried], "o", markerfacecolor="none", markersize=4,
                    color=line.get_color())
    title = f"{group.label(_plain)}, {format_frames(group.frames)} frames"
    if group.protocol == "paper":
        title += ", paper protocol"
    ylabel, paper = "meta-episode return", format_frames(group.paper_frames)
    if group.protocol == meta_gradient_agents.PROTOCOL:  # BO-MRL, MAML-TRPO: meta-iterations, K = 1 meta-test
        iterations = meta_gradient_agents.iteration_counts(group.config)[1]
        title = f"{group.label(_plain)}, {iterations} meta-iterations ({format_frames(group.frames)} frames)"
        ylabel, paper = "meta-test return (K = 1)", f"{meta_gradient_agents.PAPER_ITERATIONS} meta-iterations"
    if group.reduced:
        title += f"\nREDUCED BUDGET (paper {paper})"
    if any(entry.carried.any() for entry in group.entries):
        ax.plot([], [], "o", markerfacecolor="none", color="grey", label="includes carried values (stopped early)")
    ax.set(title=title, xlabel="frames", ylabel=ylabel)
    label_frames_axis(ax)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the curves, not over them
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    svg = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": group.slug}):
        fig.savefig(svg, format="svg", metadata={"Date": None})
    plt.close(fig)
    return svg.getvalue()


def _summary_rows(groups: list[Group]) -> list[dict[str, Any]]:
    rows = []
    for group in groups:
        best = {id(e) for e in group.best_entries()}
        rank = {statistic: {id(e): i for i, e in enumerate(group.ranked(statistic), 1)}
                for statistic in ("final", "over_run")}
        for e in group.entries:
            rows.append({
                "env_id": group.env_id, "group": group.slug, "frames_budget": group.frames,
                "paper_frames": group.paper_frames, "reduced_budget": group.reduced, "protocol": group.protocol,
                "agent": e.agent,
                "lr": e.lr, "best_lr": id(e) in best, "n_seeds": len(e.seeds), "seeds": e.seeds,
                "final_mean": e.final[0], "final_ci_low": e.final[1], "final_ci_high": e.final[2],
                "over_run_mean": e.over_run[0], "over_run_ci_low": e.over_run[1],
                "over_run_ci_high": e.over_run[2], "rank_final": rank["final"].get(id(e)),
                "rank_over_run": rank["over_run"].get(id(e)),
                "stopped_early": [f"{seed}@{frames}" for seed, frames in sorted(e.stopped.items())],
            })
    return rows


_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def csv_cell(value: Any) -> Any:
    """``value`` as a CSV cell that a spreadsheet shows as text and never evaluates.

    A cell starting with ``= + - @`` (or a tab or carriage return) is a formula to Excel, LibreOffice and
    Google Sheets, so an environment id such as ``=HYPERLINK(...)`` would run when the file is opened;
    such text gets a leading single quote, as OWASP's CSV-injection guidance recommends. Numbers, and
    text that is exactly a number (``-6.0``), stay numbers.
    """
    if isinstance(value, list):
        value = " ".join(map(str, value))
    if not isinstance(value, str) or not value.startswith(_FORMULA_STARTS) or _PLAIN_NUMBER.fullmatch(value):
        return value
    return "'" + value


def _write_csv(path: Path, rows: list[dict[str, Any]], columns: Sequence[str]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[csv_cell(column) for column in columns])
        writer.writeheader()
        for row in rows:
            writer.writerow({csv_cell(k): csv_cell(v) for k, v in row.items()})


def write_report(db_path: str | Path, out_dir: str | Path = "leaderboard_report",
                 envs: Sequence[str] | None = None, markdown: str | Path | None = None) -> Path:
    """Write leaderboard.md, one PNG per group, leaderboard.csv/.json, evaluations.csv and the self-contained
    page index.html (the same leaderboard with sortable tables and the curves inlined); return the .md.

    ``markdown`` puts the markdown file elsewhere (e.g. a committed ``LEADERBOARD.md``), linking to the
    plots in ``out_dir``. When the store has runs in the paper's configuration of an environment the
    SplAgger paper makes a claim about, a "paper claims" section with each claim's verdict comes first.
    """
    from metarl_agents.leaderboard.claims import claims_markdown, claims_tables
    from metarl_agents.leaderboard.html_page import render_page

    db_path, out_dir = Path(db_path), Path(out_dir)
    markdown = out_dir / "leaderboard.md" if markdown is None else Path(markdown)
    figures = Path(os.path.relpath(out_dir, markdown.parent or ".")).as_posix() + "/"
    figures = "" if figures == "./" else figures
    if not db_path.exists():
        raise FileNotFoundError(f"no result database at {db_path}; run `metarl-bench run` first or pass --db")
    with ResultStore(db_path, readonly=True) as store:
        groups = load_groups(store, envs)
        evaluations = [{"env_id": g.env_id, "group": g.slug, "frames_budget": g.frames, "reduced_budget": g.reduced,
                        "agent": r.agent, "lr": r.learning_rate, "seed": r.seed, "status": r.status, "frames": p.frames,
                        "meta_episode_return": p.meta_episode_return, "episode_returns": json.dumps(p.episode_returns)}
                       for g in groups for r in g.runs for p in store.evaluations(r.id)]
    if envs and not groups:
        raise ValueError(f"no runs for {', '.join(envs)} in {db_path}")
    out_dir.mkdir(parents=True, exist_ok=True)
    generated = time.strftime('%Y-%m-%d %H:%M:%S %Z')
    lines = ["# metarl leaderboard", "", f"Generated {generated} from `{db_path}` by `metarl-bench report`.", ""]
    if not groups:
        lines.append("The store holds no runs yet.")
    lines += claims_markdown(groups, figures)
    svgs = {}
    for group in groups:
        lines += _group_markdown(group, figures)
        if group.entries:
            svgs[group.slug] = _plot(group, out_dir / f"{group.slug}.png")
    markdown.parent.mkdir(parents=True, exist_ok=True)
    markdown.write_text("\n".join(lines) + "\n")
    summary = _summary_rows(groups)
    _write_csv(out_dir / "leaderboard.csv", summary, list(summary[0]) if summary else ["env_id"])
    _write_csv(out_dir / "evaluations.csv", evaluations, list(evaluations[0]) if evaluations else ["env_id"])
    provenance = [{"group": g.slug, "env_id": g.env_id, "frames_budget": g.frames, "paper_frames": g.paper_frames,
                   "reduced_budget": g.reduced, "protocol": g.protocol, "env_kwargs": g.env_kwargs, "overrides": g.overrides,
                   "policy_kwargs": g.policy_kwargs, "stopping_rules": g.stopping_rules(), "machines": g.machines(),
                   "versions": g.versions()} for g in groups]
    (out_dir / "leaderboard.json").write_text(json.dumps(
        {"db": str(db_path), "confidence": CONFIDENCE, "n_resamples": N_RESAMPLES, "bootstrap_seed": BOOTSTRAP_SEED,
         "groups": provenance, "entries": summary}, indent=2))
    # The page's figure links in the claims table point at plots beside the page (its own folder).
    page = render_page(groups, claims_tables(groups), svgs, source=str(db_path), generated=generated)
    (out_dir / "index.html").write_text(page, encoding="utf-8")
    return markdown
