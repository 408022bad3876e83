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
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from metarl_agents.leaderboard.grid import RunSpec, budget_label, format_frames
from metarl_agents.leaderboard.stats import BOOTSTRAP_SEED, bootstrap_ci
from metarl_agents.leaderboard.stats import PAPER_CONFIDENCE as CONFIDENCE
from metarl_agents.leaderboard.stats import PAPER_RESAMPLES as N_RESAMPLES
from metarl_agents.leaderboard.store import ResultStore, RunRecord
from metarl_agents.training.config import FINAL_EVALUATIONS

#: One run's stored curve: its record, evaluation frames and returns (before any carrying forward).
RawRun = tuple[RunRecord, np.ndarray, np.ndarray]


@dataclass
class Entry:
    """One (agent, lr) of a group: its finished seeds and their statistics."""

    agent: str
    lr: float
    seeds: list[int]
    frames: np.ndarray  # common evaluation frames
    curves: np.ndarray  # [seeds, points]
    carried: np.ndarray  # [seeds, points] True where an early-stopped seed's last value is carried forward
    stopped: dict[int, int] = field(default_factory=dict)  # seed -> frames of its last real evaluation
    raw: list[RawRun] = field(default_factory=list)  # the seeds' runs as stored, in the order of ``seeds``

    def stopped_text(self) -> str:
        return ", ".join(f"{seed} at {frames:,}" for seed, frames in sorted(self.stopped.items())) or "—"

    @cached_property
    def final(self) -> tuple[float, float, float]:
        """(mean, low, high) of the last evaluation's return."""
        return tuple(float(x) for x in bootstrap_ci(self.curves[:, -1]))

    @cached_property
    def over_run(self) -> tuple[float, float, float]:
        """(mean, low, high) of each seed's mean over all its evaluation points."""
        return tuple(float(x) for x in bootstrap_ci(self.curves.mean(axis=1)))

    @cached_property
    def last_means(self) -> np.ndarray:
        """Each seed's mean over its last ``FINAL_EVALUATIONS`` real evaluations (never carried values): a
        steadier final statistic than the last evaluation alone."""
        if self.raw:
            return np.array([returns[-FINAL_EVALUATIONS:].mean() for _, _, returns in self.raw])
        return self.curves[:, -FINAL_EVALUATIONS:].mean(axis=1)

    @cached_property
    def last_mean(self) -> tuple[float, float, float]:
        """(mean, low, high) over seeds of :attr:`last_means`."""
        return tuple(float(x) for x in bootstrap_ci(self.last_means))

    @property
    def records(self) -> list[RunRecord]:
        return [record for record, _, _ in self.raw]

    def trained_to_budget(self) -> Entry | None:
        """This entry without its early-stopped seeds (None if every seed stopped early): a run stopped once it
        reached a return, its last value carried forward, is selected on its outcome."""
        kept = [run for run in self.raw if run[0].seed not in self.stopped]
        if not kept:
            return None
        if len(kept) == len(self.raw):
            return self
        return build_entry(self.agent, self.lr, kept, self.raw[0][0].eval_every, self.raw[0][0].frames)


@dataclass
class Group:
    """All runs of one environment under one configuration: every :class:`RunSpec` field but those in
    ``RunSpec.UNGROUPED_FIELDS`` is shared (:meth:`RunSpec.group_key`); ``config`` is one of its runs' specs."""

    config: RunSpec
    runs: list[RunRecord] = field(default_factory=list)
    entries: list[Entry] = field(default_factory=list)
    slug: str = ""

    env_id = property(lambda self: self.config.env_id)
    frames = property(lambda self: self.config.frames)
    paper_frames = property(lambda self: self.config.paper_frames)
    eval_every = property(lambda self: self.config.eval_every)
    n_eval_tasks = property(lambda self: self.config.n_eval_tasks)
    env_kwargs = property(lambda self: self.config.env_kwargs)
    overrides = property(lambda self: self.config.overrides)
    policy_kwargs = property(lambda self: self.config.policy_kwargs)
    protocol = property(lambda self: self.config.protocol)
    reduced = property(lambda self: self.config.reduced)

    def label(self, quote: Callable[[str], str] = str) -> str:
        """The environment id with the group's env kwargs, e.g. "MetaTMaze-v0 (length=10)": the kwargs change
        the task, so a title without them would name a different environment. ``quote`` is applied to each
        stored string (id, kwarg names and values) and not to the punctuation around them."""
        if not self.env_kwargs:
            return quote(self.env_id)
        kwargs = ", ".join(f"{quote(str(key))}={quote(json.dumps(value))}" for key, value in sorted(self.env_kwargs.items()))
        return f"{quote(self.env_id)} ({kwargs})"

    def best_entries(self) -> list[Entry]:
        """Each agent at the learning rate with the highest mean-over-run return, among its learning rates
        with the most finished seeds.

        A sweep fills one learning rate after another, so a second rate often has one seed while the first
        has three; one lucky seed must not displace the complete evidence (and leave every claim about the
        agent short of seeds) until its own seeds are in.
        """
        best: dict[str, Entry] = {}
        for entry in self.entries:
            held = best.get(entry.agent)
            if held is None or (len(entry.seeds), entry.over_run[0]) > (len(held.seeds), held.over_run[0]):
                best[entry.agent] = entry
        return list(best.values())

    def ranked(self, statistic: str) -> list[Entry]:
        """Best entries by ``statistic`` ("final" or "over_run"), ties broken by the other one.

        Early-stopped runs make ties common: every agent that solves ends at the carried maximum, and then
        the agent that got there sooner (higher mean over the run) ranks first.
        """
        other = "over_run" if statistic == "final" else "final"
        return sorted(self.best_entries(), key=lambda e: (-getattr(e, statistic)[0], -getattr(e, other)[0]))

    def budget_text(self) -> str:
        text = f"{self.frames:,} frames per run"
        if self.reduced:
            text += f" — **REDUCED BUDGET** (paper: {self.paper_frames:,})"
        elif self.frames != self.paper_frames:
            text += f" (paper: {self.paper_frames:,})"
        return text

    def machines(self) -> list[str]:
        """The machines the group's runs trained on (runs not started yet have none)."""
        return sorted({
            f"{r.machine.get('hostname')}: {r.machine.get('cpu')}, {r.machine.get('cpu_count')} cores, "
            f"{r.machine.get('platform')}" for r in self.runs if r.machine
        })

    def stopping_rules(self) -> list[tuple[float, int]]:
        """The early-stopping rules of the group's runs (a stopped run's curve is carried to the budget, so
        runs with and without a rule stay comparable and share the group)."""
        return sorted({(r.stop_at_return, r.patience) for r in self.runs if r.patience is not None})

    def versions(self) -> list[str]:
        return sorted({", ".join(f"{k} {v}" for k, v in sorted(r.versions.items())) for r in self.runs if r.versions})


def load_groups(store: ResultStore, envs: Sequence[str] | None = None) -> list[Group]:
    """Group every run of the store; statistics use finished runs only."""
    groups: dict[str, Group] = {}
    for run in store.runs():
        if envs and run.env_id not in envs:
            continue
        group = groups.setdefault(run.group_key(), Group(run.spec()))
        group.runs.append(run)
    for group in groups.values():
        curves = defaultdict(list)
        for run in group.runs:
            points = store.evaluations(run.id)
            if run.status == "finished" and points:
                curves[run.agent, run.lr].append((run, np.array([p.frames for p in points]),
                                                  np.array([p.meta_episode_return for p in points])))
        group.entries = [build_entry(agent, lr, runs, group.eval_every, group.frames)
                         for (agent, lr), runs in sorted(curves.items())]
    _assign_slugs(list(groups.values()))
    return sorted(groups.values(), key=lambda g: (g.env_id, -g.frames))


def build_entry(agent: str, lr: float, runs: Sequence[RawRun], every: int, budget: int) -> Entry:
    """Align the seeds' curves on the evaluation frames of the shortest one (they normally coincide).

    A seed that stopped early (its last evaluation is before the budget) has its last value carried forward
    to the evaluation frames it skipped, so that its curve and its final return compare with full runs;
    those points are flagged as carried.
    """
    runs = sorted(runs, key=lambda run: run[0].seed)
    stopped = {run.seed: int(f[-1]) for run, f, _ in runs if f[-1] < budget}
    extended = [(run.seed, *_carry_forward(f, r, every, budget)) for run, f, r in runs]
    frames = min((f for _, f, _ in extended), key=len)
    curves = np.stack([np.interp(frames, f, r) for _, f, r in extended])
    carried = np.stack([frames > stopped.get(seed, np.inf) for seed, _, _ in extended])
    return Entry(agent, lr, [run.seed for run, _, _ in runs], frames, curves, carried, stopped, list(runs))


def _carry_forward(frames: np.ndarray, returns: np.ndarray, every: int, budget: int) -> tuple[np.ndarray, np.ndarray]:
    """The curve continued at its last value on the remaining multiples of ``every`` and at the budget."""
    if frames[-1] >= budget:
        return frames, returns
    extra = np.array([*range((int(frames[-1]) // every + 1) * every, budget, every), budget])
    return np.concatenate([frames, extra]), np.concatenate([returns, np.full(len(extra), returns[-1])])


def _assign_slugs(groups: list[Group]) -> None:
    """Filename-safe names that carry the budget label; configurations beyond the first get a suffix."""
    seen: dict[str, int] = defaultdict(int)
    for group in groups:
        base = _file_safe(f"{group.env_id}__{budget_label(group.frames, group.paper_frames)}")
        seen[base] += 1
        group.slug = base if seen[base] == 1 else f"{base}__config{seen[base]}"


def _file_safe(text: str) -> str:
    """A file name made from stored values that cannot leave the output folder or hide itself."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", text).lstrip(".")
    return name or "_"


# -- writing ---------------------------------------------------------------------------------------


def _md(value: Any) -> str:
    """A stored string as literal markdown text: no markup, links, HTML, table cells or line breaks."""
    text = " ".join(str(value).split())
    return re.sub(r"([\\`*_{}\[\]()<>#+!|~])", r"\\\1", text)


def _plain(value: str) -> str:
    """A stored string as literal plot text (matplotlib reads ``$...$`` as math)."""
    return " ".join(value.split()).replace("$", r"\$")


def _code(value: str) -> str:
    """A stored string as an inline code span (fenced by more backticks than it contains)."""
    text = " ".join(value.split())
    fence = "`" * (max((len(run) for run in re.findall("`+", text)), default=0) + 1)
    return f"{fence} {text} {fence}"


def _ci(stat: tuple[float, float, float]) -> str:
    mean, low, high = stat
    return f"{mean:.3f} [{low:.3f}, {high:.3f}]"


def _markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]


RANKED_HEADER = ("rank", "agent", "best lr", "final return", "mean over run", "seeds",
                 "stopped early (seed at frames)")
EVERY_LR_HEADER = ("agent", "lr", "final return", "mean over run", "seeds", "stopped early")
RANKINGS = (("final", "final"), ("over_run", "mean-over-run"))  # (statistic, its name in titles)


def group_title(group: Group, quote: Callable[[str], str] = str) -> str:
    """The group's heading: environment with its env kwargs (:meth:`Group.label`, stored strings passed
    through ``quote``), budget, the reduced-budget mark and, for runs trained as the reference trained, the
    paper protocol (the metarl groups, every group before protocols existed, keep their titles)."""
    title = f"{group.label(quote)} — {format_frames(group.frames)} frames"
    if group.reduced:
        title += f" (REDUCED BUDGET; paper: {format_frames(group.paper_frames)})"
    if group.protocol == "paper":
        title += " — paper protocol"
    return title


def provenance_markdown(group: Group) -> list[str]:
    """The markdown bullets stating how the group's numbers were made: budget, evaluation protocol, early
    stopping, non-paper settings, machines, versions, runs counted and the statistics."""
    unfinished = sum(r.status != "finished" for r in group.runs)
    lines = []
    lines.append(f"- Budget: {group.budget_text()}; evaluated at the first PPO update after every "
                 f"{group.eval_every:,} frames and at the end, on the same {group.n_eval_tasks} held-out tasks each time "
                 + (f"(the last {FINAL_EVALUATIONS} on {group.config.n_final_eval_tasks}, the first "
                    f"{group.n_eval_tasks} of them the same) " if group.config.n_final_eval_tasks is not None else "")
                 + "(deterministic actions, one trial each), meta-episode return")
    for stop_at_return, patience in group.stopping_rules():
        with_rule = sum(r.patience == patience and r.stop_at_return == stop_at_return for r in group.runs)
        lines.append(f"- Early stopping ({with_rule} of {len(group.runs)} runs): a run ends after {patience} "
                     f"consecutive evaluations with a return >= {stop_at_return:g}; its last value is carried forward "
                     "to the budget (column 'stopped early'; hollow markers in the plot where a seed's value is "
                     "carried)")
    lines.append(f"- Training protocol: {_code(group.protocol)} "
                 + ("(as the SplAgger reference trained)" if group.protocol == "paper" else
                    "(MetaPPO's own training, not the reference's)") + "; the differences: benchmarks/PROTOCOL.md")
    if group.env_kwargs:
        lines.append(f"- Environment overrides (not the paper's setting): {_code(json.dumps(group.env_kwargs))}")
    if group.overrides:
        lines.append(f"- Preset overrides (not the paper's setting): {_code(json.dumps(group.overrides))}")
    if group.policy_kwargs:
        lines.append(f"- Policy kwargs (not the paper's architecture): {_code(json.dumps(group.policy_kwargs))}")
    lines += [f"- Machine: {_md(m)}" for m in group.machines()]
    lines += [f"- Versions: {_md(v)}" for v in group.versions()]
    lines.append(f"- Runs: {len(group.runs) - unfinished} finished, {unfinished} unfinished (not counted)")
    lines.append(f"- Mean over seeds with a {CONFIDENCE:.0%} bootstrap CI ({N_RESAMPLES:,} resamples, "
                 f"seed {BOOTSTRAP_SEED}); each agent at its best lr by mean over the run, among its lrs with "
                 "the most finished seeds; "
                 "ties in a ranking are broken by the other statistic")
    return lines


def _group_markdown(group: Group, figures: str = "") -> list[str]:
    lines = [f"## {group_title(group, _md)}", "", *provenance_markdown(group), ""]
    if not group.entries:
        return lines + ["No finished runs yet.", ""]
    caption = f"_{group.label(_md)}, {group.budget_text()}; machine: {_md('; '.join(group.machines()))}_"
    for statistic, name in RANKINGS:
        lines += [f"### Ranked by {name} meta-episode return", "", caption, ""]
        rows = [(rank, _md(e.agent), f"{e.lr:g}", _ci(e.final), _ci(e.over_run), len(e.seeds), e.stopped_text())
                for rank, e in enumerate(group.ranked(statistic), 1)]
        lines += _markdown_table(RANKED_HEADER, rows)
        lines.append("")
    best = {id(e) for e in group.best_entries()}
    lines += ["### Every learning rate", "", caption, ""]
    rows = [(_md(e.agent), f"{e.lr:g}" + (" (best)" if id(e) in best else ""), _ci(e.final), _ci(e.over_run),
             " ".join(map(str, e.seeds)), e.stopped_text()) for e in group.entries]
    lines += _markdown_table(EVERY_LR_HEADER, rows)
    lines += ["", f"![{group.label(_md)} learning curves]({figures}{group.slug}.png)", ""]
    return lines


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
        label = f"{_plain(entry.agent)} (lr {entry.lr:g}, {len(entry.seeds)} seeds)"
        (line,) = ax.plot(entry.frames, mean, label=label, color=colours[index % len(colours)])
        ax.fill_between(entry.frames, low, high, color=line.get_color(), alpha=0.25, linewidth=0)
        carried = entry.carried.any(axis=0)
        if carried.any():
            ax.plot(entry.frames[carried], mean[carried], "o", markerfacecolor="none", markersize=4,
                    color=line.get_color())
    title = f"{group.label(_plain)}, {format_frames(group.frames)} frames"
    if group.reduced:
        title += f"\nREDUCED BUDGET (paper {format_frames(group.paper_frames)})"
    if any(entry.carried.any() for entry in group.entries):
        ax.plot([], [], "o", markerfacecolor="none", color="grey", label="includes carried values (stopped early)")
    ax.set(title=title, xlabel="frames", ylabel="meta-episode return")
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
    from metarl_agents.leaderboard.claims import claims_markdown
    from metarl_agents.leaderboard.html_page import render_page

    db_path, out_dir = Path(db_path), Path(out_dir)
    markdown = out_dir / "leaderboard.md" if markdown is None else Path(markdown)
    figures = Path(os.path.relpath(out_dir, markdown.parent or ".")).as_posix() + "/"
    figures = "" if figures == "./" else figures
    if not db_path.exists():
        raise FileNotFoundError(f"no result database at {db_path}; run `metarl-bench run` first or pass --db")
    with ResultStore(db_path, readonly=True) as store:
        groups = load_groups(store, envs)
        evaluations = [
            {"env_id": g.env_id, "group": g.slug, "frames_budget": g.frames, "reduced_budget": g.reduced,
             "agent": r.agent, "lr": r.lr, "seed": r.seed, "status": r.status, "frames": p.frames,
             "meta_episode_return": p.meta_episode_return, "episode_returns": json.dumps(p.episode_returns)}
            for g in groups for r in g.runs for p in store.evaluations(r.id)
        ]
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
    page = render_page(groups, claims_markdown(groups), svgs, source=str(db_path), generated=generated)
    (out_dir / "index.html").write_text(page, encoding="utf-8")
    return markdown
