"""The SplAgger paper's claims, in the paper's words and from its figures, judged on a result store's runs.

Only what the paper's figures show is a claim: Fig. 2 (on MC-LS max aggregation beats the RNN; on the
Planning Game it does worse; the straight-through gradient hurts max), Fig. 4 (on Cheetah-Dir and Cheetah-Vel
SplAgger's return is the same or better than the baselines'; PEARL's is much lower on Cheetah-Dir) and
Fig. 5 (SplAgger has the highest return on T-LS and MC-LS; the plain RNN fails on both within the budget).
PEARL there is the reference code's PEARL, the ``PEARL-GRU`` agent. T-maze Latent and T-maze Agreement are
the paper's ablations (the conditions under which permutation variance remains useful): their runs are shown
as results (:data:`ABLATIONS`), never as a claim to reproduce or refute.

How a claim is judged (:func:`judge`):

- *Runs.* Runs of the paper's configuration (its preset: no env kwargs, overrides or policy kwargs), at
  the paper's budget, or, for an ordering claim on an environment with reduced-budget runs only, at the
  largest reduced budget with ``MIN_SEEDS`` seeds of every agent the claim needs (marked as such; a "fails
  to learn" claim is never judged at a reduced budget). A run stopped early by a solved-return rule is not
  judged: it was selected on its outcome. It stays in the store and in the leaderboard's tables, marked.
  Runs trained as the reference trained (the ``paper`` protocol) are judged once every agent the claim
  names has ``MIN_SEEDS`` seeds of them; until then MetaPPO's own (``metarl``) runs are (:func:`preference`).
- *Statistic.* Each seed's mean over its last ``FINAL_EVALUATIONS`` evaluations, which should each cover
  at least ``MIN_FINAL_TASKS`` held-out tasks; runs evaluated on fewer are judged on the same statistic,
  and the row says how many tasks it rests on.
- *Learning rates.* An agent is taken at its best learning rate (by mean over the run) only where at least
  ``MIN_LR_SEARCH`` of its preset grid's rates ran with ``MIN_SEEDS`` seeds; otherwise at one learning rate,
  the preset's default where it ran, and the row says so. A "fails to learn" claim must hold at every rate
  that ran with ``MIN_SEEDS`` seeds (a failure at one rate could be that rate's).
- *Verdicts.* On the paper's interval (mean over seeds, 68 % bootstrap, 1,000 resamples): *reproduced* when
  every comparison holds with separated intervals (for "same or better": none is reversed), *refuted* when
  one is reversed with separated intervals, *not separated* otherwise, *not run* with fewer than
  ``MIN_SEEDS`` judged seeds of an agent. The same rule on rliable's 95 % stratified-bootstrap intervals says
  whether the verdict holds at 95 %, and each comparison's probability of improvement P(X > Y) is given
  with its 95 % interval.
- *Provenance.* Judged runs of one claim trained on different machines or package versions are flagged.

:func:`protocols_table` sets each agent's runs under the two protocols side by side.
:func:`claims_tables` returns the tables as plain-text rows (for any renderer); :func:`claims_markdown`
writes them as markdown.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from metarl_agents.leaderboard.grid import format_frames
from metarl_agents.leaderboard.groups import Entry, Group
from metarl_agents.leaderboard.markdown import format_ci, markdown_table
from metarl_agents.leaderboard.meta_gradient_agents import PROTOCOL as META_GRADIENT_PROTOCOL
from metarl_agents.leaderboard.stats import (
    PAPER_CONFIDENCE,
    PAPER_RESAMPLES,
    RLIABLE_CONFIDENCE,
    RLIABLE_RESAMPLES,
    Interval,
    bootstrap_ci,
    probability_of_improvement_ci,
    stratified_bootstrap_ci,
)
from metarl_agents.leaderboard.store import RunRecord
from metarl_agents.training.config import FINAL_EVALUATIONS, preset_settings
from metarl_agents.training.presets import load_preset

MIN_SEEDS = 3
MIN_LR_SEARCH = 3  # grid learning rates that must have run before an agent is "at its best learning rate"
MIN_FINAL_TASKS = 64  # held-out tasks each of the last evaluations should cover
# A "fails to learn" claim: the final statistic stays below this. T-maze: 15.5 of the optimal 16 (at most one
# wrong episode in some tasks). MC-LS: 27.0 of the optimal 27.4 (guessing the end gives 20.4).
SOLVED_RETURN = {"MetaTMaze-v0": 15.5, "MetaMinecraftLongShort-v0": 27.0}

T_LS, MC_LS, PLANNING = "MetaTMaze-v0", "MetaMinecraftLongShort-v0", "MetaPlanningGame-v0"
CHEETAH_DIR, CHEETAH_VEL = "MetaCheetahDir-v0", "MetaCheetahVel-v0"
PEARL = "PEARL-GRU"  # the paper's PEARL: the reference code's GRU encoder + product of Gaussians
BASELINES = ("RNN", "AMRL", "CNP", PEARL)

VERDICTS = ("reproduced", "refuted", "not separated", "not run")


@dataclass(frozen=True)
class Claim:
    """``winners`` beat every one of ``losers`` on ``env_id`` (or, with ``same_or_better``, are not
    separated below them); with no losers, ``winners`` stay below the environment's solved return (the
    paper's "fails to learn within the budget"). ``figure`` names the paper's figure that shows it."""

    figure: str
    text: str
    env_id: str
    winners: tuple[str, ...]
    losers: tuple[str, ...] = ()
    same_or_better: bool = False

    def __post_init__(self) -> None:
        if not self.losers and self.env_id not in SOLVED_RETURN:
            raise ValueError(f"a 'fails to learn' claim needs a solved return for {self.env_id!r}; "
                             f"known: {', '.join(SOLVED_RETURN)}")


CLAIMS = (
    Claim("Fig. 2", "On MC-LS, max aggregation beats the RNN", MC_LS, ("Max",), ("RNN",)),
    Claim("Fig. 2", "On the Planning Game, max aggregation does worse than the RNN", PLANNING, ("RNN",), ("Max",)),
    Claim("Fig. 2", "The straight-through gradient hurts max aggregation: on MC-LS SplAgger (max without it) "
          "beats AMRL (max with it)", MC_LS, ("SplAgger",), ("AMRL",)),
    Claim("Fig. 4", "On Cheetah-Dir, SplAgger's return is the same or better than RNN, CNP, AMRL and PEARL's",
          CHEETAH_DIR, ("SplAgger",), ("RNN", "CNP", "AMRL", PEARL), same_or_better=True),
    Claim("Fig. 4", "On Cheetah-Vel, SplAgger's return is the same or better than RNN, CNP, AMRL and PEARL's",
          CHEETAH_VEL, ("SplAgger",), ("RNN", "CNP", "AMRL", PEARL), same_or_better=True),
    Claim("Fig. 4", "On Cheetah-Dir, PEARL's return is much lower than SplAgger, RNN, CNP and AMRL's", CHEETAH_DIR,
          ("SplAgger", "RNN", "CNP", "AMRL"), (PEARL,)),
    Claim("Fig. 5", "On T-LS, SplAgger has the highest return", T_LS, ("SplAgger",), BASELINES),
    Claim("Fig. 5", "On MC-LS, SplAgger has the highest return", MC_LS, ("SplAgger",), BASELINES),
    Claim("Fig. 5", f"The plain RNN fails to learn T-LS within the budget (stays below {SOLVED_RETURN[T_LS]:g} "
          "of the optimal 16)", T_LS, ("RNN",)),
    Claim("Fig. 5", f"The plain RNN fails to learn MC-LS within the budget (stays below {SOLVED_RETURN[MC_LS]:g} "
          "of the optimal 27.4)", MC_LS, ("RNN",)),
)

#: The paper's ablations: conditions where permutation variance remains useful. Results, not claims.
ABLATIONS = (("T-maze Latent", "MetaTMazeLatent-v0"), ("T-maze Agreement", "MetaTMazeAgreement-v0"))


# -- one agent's judged runs -------------------------------------------------------------------------


@dataclass(frozen=True)
class Judged:
    """One agent's runs as a claim judges them: an entry of seeds trained to the budget (or None), how its
    learning rate was chosen, and the seeds left out for stopping early."""

    agent: str
    entry: Entry | None
    lr_note: str
    stopped: int = 0  # seeds of the agent (any learning rate) that stopped early and are not judged
    trained: int = 0  # the most seeds trained to the budget at one learning rate

    @property
    def seeds(self) -> int:
        return 0 if self.entry is None else len(self.entry.seeds)

    @property
    def paper(self) -> Interval:
        """Mean of the seeds' final statistic with the paper's 68 % bootstrap interval."""
        assert self.entry is not None
        return tuple(float(x) for x in bootstrap_ci(self.entry.last_means, PAPER_RESAMPLES, PAPER_CONFIDENCE))

    @property
    def rliable(self) -> Interval:
        """The same mean with rliable's 95 % stratified-bootstrap interval."""
        assert self.entry is not None
        return stratified_bootstrap_ci([self.entry.last_means], RLIABLE_CONFIDENCE, RLIABLE_RESAMPLES)

    def text(self) -> str:
        mean, low, high = self.paper
        _, low95, high95 = self.rliable
        return f"{self.agent} {mean:.3f} [68 %: {low:.3f}, {high:.3f}; 95 %: {low95:.3f}, {high95:.3f}] (lr {self.entry.lr:g})"

    def shortfall(self) -> str:
        stopped = f", {self.stopped} stopped early (not judged)" if self.stopped else ""
        return f"{self.agent} {self.trained}{stopped}"


def judged_entries(group: Group, agent: str, min_seeds: int = MIN_SEEDS) -> list[Entry]:
    """The agent's entries without their early-stopped seeds, those with ``min_seeds`` seeds left."""
    kept = (entry.trained_to_budget() for entry in group.entries if entry.agent == agent)
    return [entry for entry in kept if entry is not None and len(entry.seeds) >= min_seeds]


def choose(group: Group, agent: str) -> Judged:
    """The agent's entry a claim is judged on, with the learning-rate rule of the module docstring."""
    entries = [entry for entry in group.entries if entry.agent == agent]
    stopped = sum(len(entry.stopped) for entry in entries)
    trained = max((len(entry.seeds) - len(entry.stopped) for entry in entries), default=0)
    eligible = judged_entries(group, agent)
    if not eligible:
        return Judged(agent, None, "", stopped, trained)
    grid = [float(lr) for lr in load_preset(group.env_id)["lr_grid"]]
    searched = sorted({entry.lr for entry in eligible if entry.lr in grid})
    if len(searched) >= MIN_LR_SEARCH:
        best = max((entry for entry in eligible if entry.lr in grid), key=lambda entry: entry.over_run[0])
        note = f"best of {len(searched)} learning rates by mean over the run: {best.lr:g}"
        return Judged(agent, best, note, stopped, trained)
    default = float(preset_settings(group.env_id)["learning_rate"])
    one = next((entry for entry in eligible if entry.lr == default), None) or \
        max(eligible, key=lambda entry: (len(entry.seeds), entry.lr))
    others = sorted({entry.lr for entry in eligible} - {one.lr})
    also = f"; also ran {', '.join(f'{lr:g}' for lr in others)}" if others else ""
    return Judged(agent, one, f"one learning rate ({one.lr:g}{also})", stopped, trained)


# -- the group a claim is judged on ------------------------------------------------------------------


def paper_groups(groups: Sequence[Group], env_id: str) -> list[Group]:
    """The environment's groups in the paper's configuration (preset settings, default architecture); the
    BO-MRL protocol's groups (its own agents and budget) are never the SplAgger paper's."""
    return [g for g in groups if g.env_id == env_id and g.entries and g.protocol != META_GRADIENT_PROTOCOL
            and not (g.env_kwargs or g.overrides or g.policy_kwargs)]


def preference(group: Group, agents: Sequence[str]) -> tuple[bool, bool, int, int]:
    """How strongly ``group`` is preferred as the evidence on ``agents`` (larger is better): a group with
    ``MIN_SEEDS`` judged seeds of every one of them first, so that a budget or protocol a sweep has only begun
    does not displace complete evidence; then runs trained as the reference trained (the ``paper`` protocol);
    then the largest budget; then the most runs."""
    complete = all(judged_entries(group, agent) for agent in agents)
    return complete, group.protocol == "paper", group.frames, sum(len(e.seeds) for e in group.entries)


def claim_group(claim: Claim, groups: Sequence[Group]) -> Group | None:
    """The group a claim is judged on: at the paper's budget if there is one, else (for an ordering claim)
    at a reduced budget; among those, the first by :func:`preference`."""
    candidates = paper_groups(groups, claim.env_id)
    pool = [g for g in candidates if not g.reduced] or (candidates if claim.losers else [])
    if not pool:
        return None
    return max(pool, key=lambda group: preference(group, (*claim.winners, *claim.losers)))


# -- verdicts ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """A claim's verdict on the paper's 68 % intervals (``verdict``) and on rliable's 95 % ones
    (``verdict_95``), with the numbers behind them."""

    claim: Claim
    verdict: str
    verdict_95: str
    evidence: str
    group: Group | None
    improvement: tuple[str, ...] = ()  # "P(X > Y) = p [low, high]" per comparison
    notes: tuple[str, ...] = ()
    judged: tuple[Judged, ...] = field(default=(), repr=False)

    @property
    def reduced(self) -> bool:
        """Judged at a reduced budget (the environment has no paper-budget runs)."""
        return self.group is not None and self.group.reduced

    @property
    def text(self) -> str:
        """The 68 % verdict and whether it holds at 95 %, e.g. "reproduced (68 %); holds at 95 %" or
        "reproduced (68 %); not separated at 95 %"."""
        if self.verdict == "not run":
            return "not run"
        head = f"{self.verdict} (68 %)" + (" at a reduced budget" if self.reduced else "")
        if self.verdict_95 != self.verdict:
            return f"{head}; {self.verdict_95} at 95 %"
        return head + {"reproduced": "; holds at 95 %", "refuted": "; refuted at 95 % too",
                       "not separated": "; not separated at 95 % either"}[self.verdict]


def judge(claim: Claim, groups: Sequence[Group]) -> Verdict:
    """The claim's verdicts from its :func:`claim_group`."""
    group = claim_group(claim, groups)
    if group is None:
        where = "at the paper's budget" if not claim.losers else "in the paper's configuration"
        return Verdict(claim, "not run", "not run", f"no finished runs {where}", None)
    if not claim.losers:
        return _judge_fails(claim, group)
    judged = {agent: choose(group, agent) for agent in (*claim.winners, *claim.losers)}
    missing = [j for j in judged.values() if j.entry is None]
    if missing:
        return _not_run(claim, group, missing, list(judged.values()))
    pairs = [(judged[w], judged[loser]) for w in claim.winners for loser in claim.losers]
    verdicts = []
    for interval in ("paper", "rliable"):
        outcomes = [_compare(getattr(w, interval), getattr(loser, interval)) for w, loser in pairs]
        if claim.same_or_better:
            outcomes = ["holds" if outcome == "overlap" else outcome for outcome in outcomes]
        verdicts.append(_verdict(outcomes))
    improvement = tuple(f"P({w.agent} > {loser.agent}) = {format_ci(improvement_interval(w, loser), 2)}"
                        for w, loser in pairs)
    evidence = "; ".join(j.text() for j in judged.values())
    return Verdict(claim, *verdicts, evidence, group, improvement, _notes(group, list(judged.values())),
                   tuple(judged.values()))


def _judge_fails(claim: Claim, group: Group) -> Verdict:
    """"Fails to learn": every learning rate with ``MIN_SEEDS`` judged seeds stays below the solved return."""
    solved = SOLVED_RETURN[claim.env_id]
    tried, notes = [], []
    for agent in claim.winners:
        entries = sorted(judged_entries(group, agent), key=lambda entry: -entry.lr)
        held = choose(group, agent)
        if not entries:
            return _not_run(claim, group, [held], [held])
        tried += [Judged(agent, entry, "every learning rate", held.stopped, held.trained) for entry in entries]
        rates = ", ".join(f"{entry.lr:g}" for entry in entries)
        notes.append(f"{agent}: every learning rate that ran with {MIN_SEEDS} seeds ({rates})")
    verdicts = [_verdict(["holds" if getattr(j, interval)[2] < solved
                          else "reversed" if getattr(j, interval)[1] >= solved else "overlap" for j in tried])
                for interval in ("paper", "rliable")]
    evidence = "; ".join(j.text() for j in tried)
    return Verdict(claim, *verdicts, evidence, group, (), (*notes, *_notes(group, tried, lr_notes=False)),
                   tuple(tried))


def _not_run(claim: Claim, group: Group, missing: Sequence[Judged], judged: Sequence[Judged]) -> Verdict:
    """Not run: the ``missing`` agents lack ``MIN_SEEDS`` seeds trained to the budget at one learning rate."""
    evidence = (f"needs {MIN_SEEDS} seeds trained to the budget at one learning rate; have "
                + "; ".join(j.shortfall() for j in missing))
    return Verdict(claim, "not run", "not run", evidence, group, notes=_notes(group, judged))


def _verdict(outcomes: list[str]) -> str:
    if "reversed" in outcomes:
        return "refuted"
    return "reproduced" if set(outcomes) == {"holds"} else "not separated"


def _compare(winner: Interval, loser: Interval) -> str:
    """"holds" if the winner's (mean, low, high) interval lies above the loser's, "reversed" if below,
    else "overlap"."""
    if winner[1] > loser[2]:
        return "holds"
    if winner[2] < loser[1]:
        return "reversed"
    return "overlap"


def improvement_interval(winner: Judged, loser: Judged) -> Interval:
    """P(winner > loser) over their seeds' final statistics, with its 95 % stratified-bootstrap interval."""
    return probability_of_improvement_ci([winner.entry.last_means], [loser.entry.last_means],
                                         RLIABLE_CONFIDENCE, RLIABLE_RESAMPLES)


# -- what a row must say besides the verdict -----------------------------------------------------------


def budget_text(group: Group, with_protocol: bool = True) -> str:
    """The budget, for a reduced one what those runs are (with the learning rate annealed to zero over the
    reduced budget, a complete short schedule, not the early part of a run at the paper's budget), then the
    training protocol unless ``with_protocol`` is false."""
    text = f"{group.frames:,} frames"
    if group.reduced:
        text += f" (REDUCED: {group.frames / group.paper_frames:.1%} of the paper's {group.paper_frames:,})"
        annealed = group.overrides.get("lr_anneal", preset_settings(group.env_id).get("lr_anneal", False))
        text += (f"; the learning rate is annealed to 0 over these {format_frames(group.frames)} frames, so these "
                 f"are complete short runs, not the early part of a {format_frames(group.paper_frames)} run" if annealed
                 else f"; a constant learning rate: the first {format_frames(group.frames)} frames of the paper's run")
    return text + (f"; {group.protocol} protocol" if with_protocol else "")


def statistic_text(judged: Sequence[Judged]) -> str:
    """The final statistic and the number of tasks it rests on (flagged below ``MIN_FINAL_TASKS``)."""
    records = [r for j in judged if j.entry is not None for r in j.entry.records]
    tasks = sorted({r.final_eval_tasks for r in records})
    if not tasks:
        return f"mean of the last {FINAL_EVALUATIONS} evaluations"
    counts = "/".join(map(str, tasks))
    text = f"mean of the last {FINAL_EVALUATIONS} evaluations, {counts} held-out tasks each"
    if tasks[0] < MIN_FINAL_TASKS:
        older = any(r.n_final_eval_tasks is None for r in records)
        text += (f" (FLAGGED: fewer than {MIN_FINAL_TASKS} tasks"
                 + ("; these runs predate the longer final evaluations)" if older else ")"))
    return text


def provenance_text(records: Sequence[RunRecord]) -> str:
    """"" when every run trained on one machine with one set of package versions, else what differs."""
    machines = Counter(f"{r.machine.get('cpu', '?')} ({r.machine.get('cpu_count', '?')} cores)" for r in records)
    packages = sorted({name for r in records for name in r.versions})
    differing = {name: Counter(r.versions.get(name, "?") for r in records) for name in packages}
    differing = {name: count for name, count in differing.items() if len(count) > 1}
    parts = ["machines " + ", ".join(f"{m}: {n} runs" for m, n in sorted(machines.items()))] if len(machines) > 1 else []
    parts += [f"{name} " + ", ".join(f"{v}: {n} runs" for v, n in sorted(count.items())) for name, count in differing.items()]
    return "; ".join(parts)


def _provenance_note(group: Group, judged: Sequence[Judged]) -> str:
    """A flag when the finished runs of the group a claim is judged on trained on different machines or
    package versions, saying whether the judged runs themselves differ."""
    mixed = provenance_text([r for r in group.runs if r.status == "finished"])
    if not mixed:
        return ""
    judged_mixed = provenance_text([r for j in judged if j.entry is not None for r in j.entry.records])
    scope = (f"the judged runs differ too ({judged_mixed})" if judged_mixed
             else "the judged runs share one machine and one set of versions")
    return f"MIXED PROVENANCE in this group: {mixed}; {scope}"


def _notes(group: Group, judged: Sequence[Judged], lr_notes: bool = True) -> tuple[str, ...]:
    notes = [statistic_text(judged)] if any(j.entry is not None for j in judged) else []
    if lr_notes:
        notes += [f"{j.agent}: {j.lr_note}" for j in judged if j.entry is not None]
    stopped = {j.agent: j.stopped for j in judged if j.stopped}
    if stopped:
        notes.append("stopped early, not judged: " + ", ".join(f"{a} {n} seeds" for a, n in stopped.items()))
    provenance = _provenance_note(group, judged)
    if provenance:
        notes.append(provenance)
    return tuple(notes)


# -- tables ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Table:
    """A titled table of plain-text cells (no markup), so that any renderer can lay it out: ``link_column``
    names the column whose cells are relative paths of plots ("" where there is none)."""

    title: str
    intro: str
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    link_column: str = "plot"
    emphasis_column: str = ""  # a column a renderer may set in bold

    def markdown_cells(self, row: Sequence[str]) -> list[str]:
        """A row's cells as markdown: the link column's path as a link to the plot (a dash where there is
        none), the verdict in the emphasis column in bold."""
        cells = []
        for column, cell in zip(self.header, row, strict=True):
            verdict = next((v for v in VERDICTS if cell.startswith(v)), "") if column == self.emphasis_column else ""
            if column == self.link_column:
                cell = f"[plot]({cell})" if cell else "—"
            elif verdict:
                cell = f"**{verdict}**{cell[len(verdict):]}"
            cells.append(cell)
        return cells


CLAIM_HEADER = ("figure", "claim", "verdict", "budget", "final statistic: mean [68 % CI; 95 % CI]",
                "probability of improvement [95 % CI]", "notes", "plot")
ABLATION_HEADER = ("ablation", "agent", "runs", "final statistic: mean [68 % CI; 95 % CI]", "P(agent > RNN) [95 % CI]",
                   "budget", "notes", "plot")


def claims_intro() -> str:
    return (
        "Each claim of the SplAgger paper, in its words, from the figure that shows it (PEARL is the reference "
        f"code's PEARL, agent {PEARL}). Judged on runs of the paper's configuration trained to the budget (runs "
        "stopped early at a solved return are left out: they were selected on their outcome). Final statistic: "
        f"each seed's mean over its last {FINAL_EVALUATIONS} evaluations (on {MIN_FINAL_TASKS} or more held-out "
        f"tasks each; rows on fewer are flagged), then the mean over seeds with the paper's {PAPER_CONFIDENCE * 100:.0f} % "
        f"bootstrap interval ({PAPER_RESAMPLES:,} resamples) and rliable's {RLIABLE_CONFIDENCE * 100:.0f} % stratified-"
        f"bootstrap interval ({RLIABLE_RESAMPLES:,} resamples). *reproduced* = every comparison holds with "
        "separated intervals (for \"same or better\": none is reversed), *refuted* = one is reversed with "
        "separated intervals, *not separated* = overlapping intervals, *not run* = fewer than "
        f"{MIN_SEEDS} seeds trained to the budget; the verdict is given on the 68 % intervals and says whether it "
        "holds on the 95 % ones. Probability of improvement: the chance that a seed of the first agent ends "
        "above a seed of the second (ties count one half). An agent is at its best learning rate (by mean over "
        f"the run) only where {MIN_LR_SEARCH} or more of its preset grid's rates ran; otherwise the notes say "
        "\"one learning rate\". A \"fails\" claim must hold at every learning rate that ran with "
        f"{MIN_SEEDS} seeds. Where an environment has runs at reduced budgets only, an ordering claim is judged at "
        f"the largest of them with {MIN_SEEDS} seeds of each agent, marked *at a reduced budget*; the budget "
        "column says what those runs are. A claim whose group of runs trained on different machines or package "
        "versions is flagged MIXED PROVENANCE. Runs trained as the reference trained (the paper protocol, "
        "benchmarks/PROTOCOL.md) are judged once every agent a claim names has "
        f"{MIN_SEEDS} seeds of them; until then the claim is judged on MetaPPO's own (metarl) runs, and the budget "
        "column names the protocol.")


def claims_table(groups: Sequence[Group], figures: str = "") -> Table | None:
    """One row per claim; None when no claim's environment has runs in the paper's configuration."""
    verdicts = [judge(claim, groups) for claim in CLAIMS]
    if all(v.group is None for v in verdicts):
        return None
    rows = tuple((v.claim.figure, v.claim.text, v.text, "—" if v.group is None else budget_text(v.group), v.evidence,
                  "; ".join(v.improvement) or "—", "; ".join(v.notes) or "—",
                  "" if v.group is None else f"{figures}{v.group.slug}.png") for v in verdicts)
    return Table("Paper claims", claims_intro(), CLAIM_HEADER, rows, emphasis_column="verdict")


def ablations_table(groups: Sequence[Group], figures: str = "") -> Table | None:
    """Each agent's final statistic on the paper's ablation environments: results, not claims to judge."""
    rows = []
    for name, env_id in ABLATIONS:
        candidates = paper_groups(groups, env_id)
        if not candidates:
            rows.append((name, "—", "not run", "—", "—", "—", "no finished runs in the paper's configuration", ""))
            continue
        pool = [g for g in candidates if not g.reduced] or candidates
        group = max(pool, key=lambda g: preference(g, sorted({e.agent for e in g.entries})))
        judged = [choose(group, agent) for agent in sorted({e.agent for e in group.entries})]
        rnn = next((j for j in judged if j.agent == "RNN" and j.entry is not None), None)
        for j in sorted(judged, key=lambda j: -j.paper[0] if j.entry is not None else float("inf")):
            if j.entry is None:
                rows.append((name, j.agent, j.shortfall(), "not run", "—", budget_text(group), "—", ""))
                continue
            mean, low, high = j.paper
            _, low95, high95 = j.rliable
            improvement = "—" if rnn is None or j is rnn else format_ci(improvement_interval(j, rnn), 2)
            rows.append((name, j.agent, f"{j.seeds} seeds", f"{mean:.3f} [{low:.3f}, {high:.3f}; {low95:.3f}, {high95:.3f}]",
                         improvement, budget_text(group), "; ".join(_notes(group, [j])) or "—",
                         f"{figures}{group.slug}.png"))
    if all(row[2] == "not run" for row in rows):
        return None
    intro = ("The paper's ablations: T-maze Latent and T-maze Agreement are conditions under which permutation "
             "variance remains useful, so they are shown as results (each agent's final statistic, as in the claims "
             "table), not as claims that aggregation beats the RNN.")
    return Table("Ablations (results, not claims)", intro, ABLATION_HEADER, tuple(rows))


PROTOCOLS_HEADER = ("environment", "agent", "metarl protocol", "paper protocol", "paper − metarl",
                    "P(paper > metarl) [95 % CI]", "budget", "plot")


def _protocol_cell(judged: Judged) -> str:
    if judged.entry is None:
        return f"stopped early ({judged.stopped} seeds)" if judged.stopped else "not run"
    mean, low, high = judged.paper
    seeds = f"{judged.seeds} seed" + ("s" if judged.seeds > 1 else "")
    return f"{mean:.3f} [{low:.3f}, {high:.3f}] ({seeds}, lr {judged.entry.lr:g})"


def protocols_table(groups: Sequence[Group], figures: str = "") -> Table | None:
    """Each agent trained under both protocols at one budget, side by side: how much training as the
    reference trained changes the final statistic. None when no budget has runs under both.

    Any number of seeds is shown (the cell says how many): the two protocols' runs are trained one at a
    time, and a first seed is already a measurement. Early-stopped seeds are left out, as in the claims."""
    rows = []
    for env_id in sorted({g.env_id for g in groups}):
        candidates = paper_groups(groups, env_id)
        for frames in sorted({g.frames for g in candidates}):
            by_protocol = {}
            for protocol in ("metarl", "paper"):
                pool = [g for g in candidates if g.frames == frames and g.protocol == protocol]
                if pool:
                    by_protocol[protocol] = max(pool, key=lambda g: sum(len(e.seeds) for e in g.entries))
            if len(by_protocol) < 2:
                continue
            metarl, paper = by_protocol["metarl"], by_protocol["paper"]
            for agent in sorted({e.agent for g in (metarl, paper) for e in g.entries}):
                before, after = _choose_any(metarl, agent), _choose_any(paper, agent)
                difference = improvement = "—"
                if before.entry is not None and after.entry is not None:
                    difference = f"{after.paper[0] - before.paper[0]:+.3f}"
                    improvement = format_ci(improvement_interval(after, before), 2)
                rows.append((env_id, agent, _protocol_cell(before), _protocol_cell(after), difference, improvement,
                             budget_text(paper, with_protocol=False), f"{figures}{paper.slug}.png"))
    if not rows:
        return None
    intro = ("The same agents, environment and budget trained under the two protocols of benchmarks/PROTOCOL.md: "
             "MetaPPO's own training (metarl) and the reference code's (paper). Each cell is the claims table's "
             f"final statistic (mean of the last {FINAL_EVALUATIONS} evaluations per seed, then the mean over seeds "
             f"with the paper's {PAPER_CONFIDENCE * 100:.0f} % bootstrap interval) over the seeds trained to the "
             "budget, at the agent's most-seeded learning rate; runs stopped early at a solved return are left out."
             f" With fewer than {MIN_SEEDS} seeds on a side a row is a first measurement, not a result. The plot "
             "is the paper protocol's group.")
    return Table("Training protocols compared", intro, PROTOCOLS_HEADER, tuple(rows))


def _choose_any(group: Group, agent: str) -> Judged:
    """:func:`choose` with any number of seeds: the agent's seeds trained to the budget at its most-seeded
    learning rate (the preset's default among equals)."""
    stopped = sum(len(entry.stopped) for entry in group.entries if entry.agent == agent)
    kept = judged_entries(group, agent, min_seeds=1)
    if not kept:
        return Judged(agent, None, "", stopped, 0)
    default = float(preset_settings(group.env_id)["learning_rate"])
    entry = max(kept, key=lambda e: (len(e.seeds), e.lr == default, e.lr))
    return Judged(agent, entry, "", stopped, len(entry.seeds))


def claims_tables(groups: Sequence[Group], figures: str = "") -> list[Table]:
    """The claims table, the ablations table and the protocols table, those that have rows."""
    tables = (claims_table(groups, figures), ablations_table(groups, figures), protocols_table(groups, figures))
    return [table for table in tables if table is not None]


def claims_markdown(groups: Sequence[Group], figures: str = "") -> list[str]:
    """The claims and ablations sections as markdown lines; empty when neither has runs."""
    lines: list[str] = []
    for table in claims_tables(groups, figures):
        rows = [table.markdown_cells(row) for row in table.rows]
        lines += [f"## {table.title}", "", table.intro, ""] + markdown_table(table.header, rows) + [""]
    return lines
