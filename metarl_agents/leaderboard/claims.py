"""The SplAgger paper's claims, checked against the runs of a result store.

Each claim is an ordering of final returns (the last evaluation, with early-stopped runs carried forward)
between agents on one environment, judged on runs of the paper's configuration (its preset, with no env
kwargs, overrides or policy kwargs) at the paper's budget. Where an environment has runs at reduced
budgets only (MC-LS's 60 M frames are out of reach of a CPU), an ordering claim is judged at the largest
of them with enough seeds (:func:`claim_group`) and its verdict marked as such; a "fails to learn" claim
never is, since failing with fewer frames says nothing about the paper's budget. Orderings are judged on
the 68 % bootstrap intervals the leaderboard prints:

- *reproduced*: every comparison holds with separated intervals (for a "same or better" claim: no
  comparison is reversed);
- *refuted*: some comparison is reversed with separated intervals;
- *not separated*: neither (the means may be ordered either way; the intervals overlap);
- *not run*: the store has no finished runs of an agent the claim needs (or fewer than ``MIN_SEEDS``
  seeds of it).

Each agent is taken at its best learning rate, as in the leaderboard tables, except in a "fails to learn"
claim: a failure at the best learning rate alone could be a learning-rate artefact, so such a claim must
hold at every learning rate with ``MIN_SEEDS`` finished seeds, and its evidence lists each of them.

A second verdict judges the same ordering on each seed's mean over all evaluation points (the area under
the learning curve): with early stopping at the solved return, agents that all solve tie on the final
return, and only the mean over the run still tells which learned sooner, which is what the paper's
learning-curve figures show. A "fails to learn" claim has no such verdict.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from metarl_agents.leaderboard.report import Group, _ci, _markdown_table

MIN_SEEDS = 3
SOLVED_RETURN = {"MetaTMaze-v0": 15.5}  # the T-maze's optimum is 16: 15.5 means solved in (nearly) every task


@dataclass(frozen=True)
class Claim:
    """``winners`` beat every one of ``losers`` on ``env_id`` (or, with ``same_or_better``, are not
    separated below them); with no losers, ``winners`` stay below the environment's solved return (the
    paper's "fails to learn within the budget")."""

    text: str
    env_id: str
    winners: tuple[str, ...]
    losers: tuple[str, ...] = ()
    same_or_better: bool = False


CLAIMS = (
    Claim("Permutation-invariant aggregation helps: the aggregating agents beat the RNN on T-LS",
          "MetaTMaze-v0", ("SplAgger", "Max", "AMRL", "CNP"), ("RNN",)),
    Claim("Permutation-invariant aggregation helps: the aggregating agents beat the RNN on T-maze Latent",
          "MetaTMazeLatent-v0", ("SplAgger", "Max", "AMRL"), ("RNN",)),
    Claim("SplAgger has the highest return on T-LS", "MetaTMaze-v0", ("SplAgger",),
          ("RNN", "AMRL", "CNP", "Max", "PEARL")),
    Claim("SplAgger has the highest return on MC-LS", "MetaMinecraftLongShort-v0", ("SplAgger",), ("RNN", "Max")),
    Claim("The plain RNN fails to learn T-LS within the budget (its final return stays below 15.5 of 16)",
          "MetaTMaze-v0", ("RNN",)),
    Claim("Dropping AMRL's straight-through gradient helps: SplAgger beats AMRL on T-LS", "MetaTMaze-v0",
          ("SplAgger",), ("AMRL",)),
    Claim("On MC-LS max aggregation beats the RNN", "MetaMinecraftLongShort-v0", ("Max",), ("RNN",)),
    Claim("On the Planning Game a pure max aggregator does worse than the RNN", "MetaPlanningGame-v0", ("RNN",),
          ("Max",)),
    Claim("On Cheetah-Dir SplAgger's return is the same or better than RNN, CNP, AMRL and PEARL's",
          "MetaCheetahDir-v0", ("SplAgger",), ("RNN", "CNP", "AMRL", "PEARL"), same_or_better=True),
    Claim("On Cheetah-Vel SplAgger's return is the same or better than RNN, CNP, AMRL and PEARL's",
          "MetaCheetahVel-v0", ("SplAgger",), ("RNN", "CNP", "AMRL", "PEARL"), same_or_better=True),
)


@dataclass(frozen=True)
class Verdict:
    claim: Claim
    verdict: str
    evidence: str
    group: Group | None

    @property
    def reduced(self) -> bool:
        """Judged at a reduced budget (the environment has no paper-budget runs)."""
        return self.group is not None and self.group.reduced


METRICS = ("final", "over_run")


def claim_group(claim: Claim, groups: Sequence[Group]) -> Group | None:
    """The group a claim is judged on, among its environment's groups in the paper's configuration: at the
    paper's budget if there is one, else (for an ordering claim) at a reduced budget. Among those, a group
    with ``MIN_SEEDS`` seeds of every agent the claim needs comes first, so that a larger budget a sweep
    has only begun does not displace complete evidence; then the largest budget, then the most runs."""
    paper_config = [g for g in groups if g.env_id == claim.env_id and g.entries
                    and not (g.env_kwargs or g.overrides or g.policy_kwargs)]
    pool = [g for g in paper_config if not g.reduced] or (paper_config if claim.losers else [])
    if not pool:
        return None

    def preference(group: Group) -> tuple[bool, int, int]:
        seeds = {e.agent: len(e.seeds) for e in group.best_entries()}
        complete = all(seeds.get(agent, 0) >= MIN_SEEDS for agent in (*claim.winners, *claim.losers))
        return complete, group.frames, sum(len(e.seeds) for e in group.entries)

    return max(pool, key=preference)


def judge(claim: Claim, groups: Sequence[Group], metric: str = "final") -> Verdict:
    """The claim's verdict from its :func:`claim_group`, on the entries' ``metric`` interval ("final": last
    evaluation; "over_run": mean over the run)."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; allowed: {METRICS}")
    if not claim.losers and metric != "final":
        return Verdict(claim, "—", "judged on the final return only", None)
    group = claim_group(claim, groups)
    if group is None:
        where = "at the paper's budget" if not claim.losers else "in the paper's configuration"
        return Verdict(claim, "not run", f"no finished runs {where}", None)
    best = {e.agent: e for e in group.best_entries()}
    missing = [a for a in (*claim.winners, *claim.losers) if len(best[a].seeds if a in best else ()) < MIN_SEEDS]
    if missing:
        have = ", ".join(f"{a} {len(best[a].seeds) if a in best else 0}" for a in missing)
        return Verdict(claim, "not run", f"needs {MIN_SEEDS} finished seeds each; have {have}", group)
    if claim.losers:
        outcomes = [_compare(getattr(best[w], metric), getattr(best[loser], metric))
                    for w in claim.winners for loser in claim.losers]
        if claim.same_or_better:
            outcomes = ["holds" if outcome == "overlap" else outcome for outcome in outcomes]
        evidence = "; ".join(f"{a} {_ci(getattr(best[a], metric))} (lr {best[a].lr:g})"
                             for a in (*claim.winners, *claim.losers))
    else:
        solved = SOLVED_RETURN[claim.env_id]
        tried = sorted((e for e in group.entries if e.agent in claim.winners and len(e.seeds) >= MIN_SEEDS),
                       key=lambda e: (claim.winners.index(e.agent), -e.lr))
        outcomes = ["holds" if e.final[2] < solved else "reversed" if e.final[1] >= solved else "overlap"
                    for e in tried]
        evidence = "; ".join(f"{e.agent} {_ci(e.final)} (lr {e.lr:g})" for e in tried)
    verdict = ("refuted" if "reversed" in outcomes else "reproduced" if set(outcomes) == {"holds"}
               else "not separated")
    return Verdict(claim, verdict, evidence, group)


def _compare(winner: tuple[float, float, float], loser: tuple[float, float, float]) -> str:
    """"holds" if the winner's (mean, low, high) interval lies above the loser's, "reversed" if below,
    else "overlap"."""
    if winner[1] > loser[2]:
        return "holds"
    if winner[2] < loser[1]:
        return "reversed"
    return "overlap"


def claims_markdown(groups: Sequence[Group], figures: str = "") -> list[str]:
    """The "paper claims" section: one row per claim, with its verdicts, budget, numbers and figure; empty
    when no claim's environment has runs in the paper's configuration."""
    verdicts = [(judge(claim, groups, "final"), judge(claim, groups, "over_run")) for claim in CLAIMS]
    if all(final.group is None for final, _ in verdicts):
        return []
    lines = ["## Paper claims", "",
             "Each claim of the SplAgger paper as an ordering of returns (mean over seeds, 68 % bootstrap CI; "
             "each agent at its best learning rate; a \"fails\" claim at every learning rate with "
             f"{MIN_SEEDS} seeds), judged on runs of the paper's configuration at the paper's budget: "
             "*reproduced* = the ordering holds with separated intervals, *refuted* = reversed with separated "
             f"intervals, *not separated* = overlapping intervals, *not run* = fewer than {MIN_SEEDS} finished "
             "seeds. Where an environment has runs at reduced budgets only, an ordering claim is judged at the "
             f"largest of them with {MIN_SEEDS} seeds of each agent it needs, marked *at a reduced budget*: "
             "evidence about the early part of training, not a verdict on the paper's result. Judged twice: on "
             "the final return, and on each seed's mean over the run (the area under its learning curve, which "
             "separates agents that all solve but at different speeds).", ""]
    rows = []
    for final, over_run in verdicts:
        group = final.group
        budget = "—" if group is None else f"{group.frames:,} frames"
        if group is not None and group.reduced:
            budget += f" (REDUCED: {group.frames / group.paper_frames:.1%} of the paper's {group.paper_frames:,})"
        figure = f"[plot]({figures}{group.slug}.png)" if group is not None else "—"
        evidence = final.evidence if over_run.verdict in ("not run", "—") else \
            f"final: {final.evidence}. Over the run: {over_run.evidence}"
        marks = [f"**{v.verdict}**" + (" at a reduced budget" if v.reduced and v.verdict != "not run" else "")
                 for v in (final, over_run)]
        # Claim texts and evidence are built from this module's constants and numbers: no escaping needed.
        rows.append((final.claim.text, *marks, budget, evidence, figure))
    return lines + _markdown_table(
        ["claim", "final return", "mean over the run", "budget", "returns [68 % CI]", "figure"], rows) + [""]
