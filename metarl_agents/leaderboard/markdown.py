"""The markdown pieces that the report, the claims and the HTML page share: escaping stored strings, tables,
confidence intervals, group titles and the provenance bullets."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from typing import Any

from metarl_agents.leaderboard import meta_gradient_agents
from metarl_agents.leaderboard.grid import format_frames
from metarl_agents.leaderboard.groups import Entry, Group
from metarl_agents.leaderboard.stats import BOOTSTRAP_SEED
from metarl_agents.leaderboard.stats import PAPER_CONFIDENCE as CONFIDENCE
from metarl_agents.leaderboard.stats import PAPER_RESAMPLES as N_RESAMPLES
from metarl_agents.training.config import FINAL_EVALUATIONS


def escape_markdown(value: Any) -> str:
    """A stored string as literal markdown text: no markup, links, HTML, table cells or line breaks."""
    text = " ".join(str(value).split())
    return re.sub(r"([\\`*_{}\[\]()<>#+!|~])", r"\\\1", text)


def code_span(value: str) -> str:
    """A stored string as an inline code span (fenced by more backticks than it contains)."""
    text = " ".join(value.split())
    fence = "`" * (max((len(run) for run in re.findall("`+", text)), default=0) + 1)
    return f"{fence} {text} {fence}"


def format_ci(stat: tuple[float, float, float], digits: int = 3) -> str:
    mean, low, high = stat
    return f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]


RANKED_HEADER = ("rank", "agent", "best lr", "final return", "mean over run", "seeds",
                 "stopped early (seed at frames)")
EVERY_LR_HEADER = ("agent", "lr", "final return", "mean over run", "seeds", "stopped early")
RANKINGS = (("final", "final"), ("over_run", "mean-over-run"))  # (statistic, its name in titles)


def entry_cells(entry: Entry, rank: int | None = None, best: bool = False) -> list[tuple[str, float | None]]:
    """An entry's row as ``(text, sort value)`` cells, the value None for a text column: a ranking's row
    (``rank``: its seeds counted) or the every-learning-rate table's (its seeds listed, ``best`` marking the
    agent's best learning rate). Both the markdown report and the HTML page lay it out."""
    seeds = " ".join(map(str, entry.seeds)) if rank is None else str(len(entry.seeds))
    ranked = [] if rank is None else [(str(rank), rank)]
    return [*ranked, (entry.agent, None), (f"{entry.lr:g}" + (" (best)" if best else ""), entry.lr),
            (format_ci(entry.final), entry.final[0]), (format_ci(entry.over_run), entry.over_run[0]),
            (seeds, len(entry.seeds)), (entry.stopped_text(), None)]


def group_title(group: Group, quote: Callable[[str], str] = str) -> str:
    """The group's heading: environment with its env kwargs (:meth:`Group.label`, stored strings passed
    through ``quote``), budget, the reduced-budget mark and, for runs trained as the reference trained, the
    paper protocol (the metarl groups, every group before protocols existed, keep their titles)."""
    if group.protocol == meta_gradient_agents.PROTOCOL:  # BO-MRL, MAML-TRPO: a budget in meta-iterations
        title = f"{group.label(quote)} — {meta_gradient_agents.title_budget(group.config, format_frames(group.frames))}"
        return title + " — BO-MRL protocol"
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
    meta_gradient = group.protocol == meta_gradient_agents.PROTOCOL  # BO-MRL, MAML-TRPO: their own budget, protocol
    lines = meta_gradient_agents.provenance_lines(group.config) if meta_gradient else []
    if not meta_gradient:
        lines.append(f"- Budget: {group.budget_text()}; evaluated at the first PPO update after every "
                     f"{group.eval_every:,} frames and at the end, on the same {group.n_eval_tasks} held-out tasks "
                     "each time "
                     + (f"(the last {FINAL_EVALUATIONS} on {group.config.n_final_eval_tasks}, the first "
                        f"{group.n_eval_tasks} of them the same) " if group.config.n_final_eval_tasks is not None else "")
                     + "(deterministic actions, one trial each), meta-episode return")
    for stop_at_return, patience in group.stopping_rules():
        with_rule = sum(r.patience == patience and r.stop_at_return == stop_at_return for r in group.runs)
        lines.append(f"- Early stopping ({with_rule} of {len(group.runs)} runs): a run ends after {patience} "
                     f"consecutive evaluations with a return >= {stop_at_return:g}; its last value is carried forward "
                     "to the budget (column 'stopped early'; hollow markers in the plot where a seed's value is "
                     "carried)")
    if not meta_gradient:
        lines.append(f"- Training protocol: {code_span(group.protocol)} "
                     + ("(as the SplAgger reference trained)" if group.protocol == "paper" else
                        "(MetaPPO's own training, not the reference's)") + "; the differences: benchmarks/PROTOCOL.md")
    departures = (("Environment overrides (not the paper's setting)", group.env_kwargs),
                  ("Preset overrides (not the paper's setting)", group.overrides),
                  ("Policy kwargs (not the paper's architecture)", group.policy_kwargs))
    lines += [f"- {what}: {code_span(json.dumps(values))}" for what, values in departures if values]
    lines += [f"- Machine: {escape_markdown(m)}" for m in group.machines()]
    lines += [f"- Versions: {escape_markdown(v)}" for v in group.versions()]
    lines.append(f"- Runs: {len(group.runs) - unfinished} finished, {unfinished} unfinished (not counted)")
    lines.append(f"- Mean over seeds with a {CONFIDENCE:.0%} bootstrap CI ({N_RESAMPLES:,} resamples, "
                 f"seed {BOOTSTRAP_SEED}); each agent at its best lr by mean over the run, among its lrs with "
                 "the most finished seeds; "
                 "ties in a ranking are broken by the other statistic")
    return lines
