"""Early-stopped runs in the report (carried forward, flagged) and the paper-claims verdicts."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from metarl_agents.leaderboard.claims import CLAIMS, claims_markdown, judge
from metarl_agents.leaderboard.grid import RunSpec
from metarl_agents.leaderboard.report import load_groups, write_report
from metarl_agents.leaderboard.store import ResultStore

BUDGET, EVERY = 1_500_000, 500_000
SEEDS = (73, 20, 3)
# agent -> final return of each seed; SplAgger stops early (at 500k), the others train to the budget.
# AMRL's mean is below SplAgger's but their CIs overlap: "not separated", not "reproduced".
T_LS = {"SplAgger": (15.7, 15.8, 15.9), "AMRL": (15.7, 15.75, 15.8), "Max": (15.0, 15.1, 15.2),
        "CNP": (10.0, 11.0, 12.0), "PEARL": (1.0, 1.0, 1.0), "RNN": (2.0, 2.1, 2.2)}


def spec(env_id: str, agent: str, seed: int, stop: bool) -> RunSpec:
    return RunSpec(env_id=env_id, agent=agent, seed=seed, lr=1e-3, frames=BUDGET, paper_frames=BUDGET,
                   preset_name=env_id, preset_hash="abc", eval_every=EVERY, n_eval_tasks=16,
                   stop_at_return=15.5 if stop else None, patience=1 if stop else None)


def add(store: ResultStore, run: RunSpec, points: dict[int, float]) -> None:
    record = store.register_run(run.store_fields())
    for i, (frames, value) in enumerate(points.items()):
        store.record_evaluation(record.id, frames, value, [value], 1.0, None, finished=i == len(points) - 1)


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    path = tmp_path_factory.mktemp("claims") / "r.db"
    with ResultStore(path) as store:
        for agent, finals in T_LS.items():
            for seed, final in zip(SEEDS, finals, strict=True):
                stop = agent == "SplAgger"
                points = {EVERY: final} if stop else {EVERY: final / 2, 2 * EVERY: final, BUDGET: final}
                add(store, spec("MetaTMaze-v0", agent, seed, stop), points)
        for agent, final in (("RNN", 1.0), ("Max", 5.0)):  # the Planning Game claim, reversed
            for seed in SEEDS:
                add(store, spec("MetaPlanningGame-v0", agent, seed, False), {BUDGET: final})
        for seed in SEEDS[:2]:  # MC-LS: too few seeds for a verdict
            add(store, spec("MetaMinecraftLongShort-v0", "SplAgger", seed, False), {BUDGET: 3.0})
    return path


def test_early_stopped_seeds_are_carried_forward_and_flagged(db):
    with ResultStore(db, readonly=True) as store:
        (group,) = [g for g in load_groups(store) if g.env_id == "MetaTMaze-v0"]
    entry = {e.agent: e for e in group.entries}["SplAgger"]
    assert entry.frames.tolist() == [EVERY, 2 * EVERY, BUDGET]
    np.testing.assert_allclose(entry.curves, [[15.9] * 3, [15.8] * 3, [15.7] * 3])  # seeds sorted: 3, 20, 73
    assert entry.carried.tolist() == [[False, True, True]] * 3
    assert entry.stopped == {3: EVERY, 20: EVERY, 73: EVERY}
    rnn = {e.agent: e for e in group.entries}["RNN"]
    assert not rnn.carried.any() and rnn.stopped == {}
    assert entry.final[0] == pytest.approx(15.8)


def test_claims_are_judged_on_separated_intervals(db):
    with ResultStore(db, readonly=True) as store:
        groups = load_groups(store)
    verdicts = {claim.text: judge(claim, groups).verdict for claim in CLAIMS}
    assert verdicts == {
        CLAIMS[0].text: "reproduced",  # every aggregator far above the RNN
        CLAIMS[1].text: "not run",  # no T-maze Latent runs
        CLAIMS[2].text: "not separated",  # SplAgger and AMRL overlap
        CLAIMS[3].text: "not run",  # MC-LS: 2 seeds
        CLAIMS[4].text: "reproduced",  # RNN far below 15.5
        CLAIMS[5].text: "not separated",
        CLAIMS[6].text: "not run",
        CLAIMS[7].text: "refuted",  # Max above the RNN on the Planning Game
        CLAIMS[8].text: "not run",
        CLAIMS[9].text: "not run",
    }
    assert "SplAgger 2, RNN 0, Max 0" in judge(CLAIMS[3], groups).evidence


def test_over_the_run_separates_agents_that_solve_at_different_speeds(db):
    """SplAgger stopped at 500k with the final returns AMRL reaches only at 1M: tied finally, ahead over the run."""
    with ResultStore(db, readonly=True) as store:
        groups = load_groups(store)
    verdicts = {claim.text: judge(claim, groups, "over_run").verdict for claim in CLAIMS}
    assert verdicts[CLAIMS[2].text] == verdicts[CLAIMS[5].text] == "reproduced"
    assert verdicts[CLAIMS[4].text] == "—"  # "fails to learn" is about the final return only
    assert verdicts[CLAIMS[7].text] == "refuted"
    with pytest.raises(ValueError, match="unknown metric 'auc'"):
        judge(CLAIMS[0], groups, "auc")


def test_report_has_the_claims_section_and_links_plots_from_another_folder(db, tmp_path):
    markdown = write_report(db, tmp_path / "plots", markdown=tmp_path / "LEADERBOARD.md")
    text = markdown.read_text()
    assert markdown == tmp_path / "LEADERBOARD.md"
    assert text.index("## Paper claims") < text.index("## MetaTMaze-v0")
    row = next(line for line in text.splitlines() if line.startswith("| Dropping AMRL's straight-through"))
    assert "| **not separated** | **reproduced** |" in row and "Over the run: SplAgger 15.800" in row
    assert "(plots/MetaTMaze-v0__frames1.5M.png)" in text and (tmp_path / "plots" / "MetaTMaze-v0__frames1.5M.png").exists()
    assert "3 at 500,000, 20 at 500,000, 73 at 500,000" in text
    assert "Early stopping (3 of 18 runs): a run ends after 1 consecutive evaluations with a return >= 15.5" in text
    summary = json.loads((tmp_path / "plots" / "leaderboard.json").read_text())
    splagger = [e for e in summary["entries"] if e["agent"] == "SplAgger" and e["env_id"] == "MetaTMaze-v0"]
    assert splagger[0]["stopped_early"] == ["3@500000", "20@500000", "73@500000"]


def test_a_fails_to_learn_claim_must_hold_at_every_learning_rate_with_enough_seeds(tmp_path):
    """The RNN's best lr (by mean over the run) fails, but another lr with 3 seeds solves: refuted, since
    the failure is a learning-rate artefact. A third lr with one solving seed is too thin to count."""
    rnn_fails = CLAIMS[4]
    path = tmp_path / "lrs.db"
    with ResultStore(path) as store:
        for seed in SEEDS:  # lr 1e-3: flat at 8, the best mean over the run, never solved
            add(store, replace(spec("MetaTMaze-v0", "RNN", seed, False), lr=1e-3), {EVERY: 8.0, 2 * EVERY: 8.0, BUDGET: 8.0})
        add(store, replace(spec("MetaTMaze-v0", "RNN", 73, False), lr=1e-4), {EVERY: 0.0, 2 * EVERY: 0.0, BUDGET: 16.0})
    with ResultStore(path, readonly=True) as store:
        verdict = judge(rnn_fails, load_groups(store))
    assert verdict.verdict == "reproduced" and verdict.evidence == "RNN 8.000 [8.000, 8.000] (lr 0.001)"

    with ResultStore(path) as store:
        for seed in SEEDS:  # lr 3e-4: solves at the end, a lower mean over the run than lr 1e-3
            add(store, replace(spec("MetaTMaze-v0", "RNN", seed, False), lr=3e-4), {EVERY: 0.0, 2 * EVERY: 0.0, BUDGET: 16.0})
    with ResultStore(path, readonly=True) as store:
        groups = load_groups(store)
    (group,) = groups
    assert [e.lr for e in group.best_entries()] == [1e-3]
    verdict = judge(rnn_fails, groups)
    assert verdict.verdict == "refuted"
    assert verdict.evidence == "RNN 8.000 [8.000, 8.000] (lr 0.001); RNN 16.000 [16.000, 16.000] (lr 0.0003)"


def test_an_environment_with_reduced_budgets_only_is_judged_at_the_largest_complete_one_and_marked(tmp_path):
    """MC-LS at 400k and 100k frames of the paper's 60 M: ordering claims are judged at 400k (a group with
    env kwargs, even larger, is not the paper's configuration); "fails to learn" is never judged reduced."""
    path = tmp_path / "reduced.db"
    mc_ls, paper = "MetaMinecraftLongShort-v0", 60_000_000
    with ResultStore(path) as store:
        for frames, finals in ((400_000, {"Max": 24.0, "SplAgger": 22.0, "RNN": 19.0}),
                               (100_000, {"Max": 10.0, "SplAgger": 30.0, "RNN": 19.0})):
            for agent, final in finals.items():
                for i, seed in enumerate(SEEDS):
                    run = replace(spec(mc_ls, agent, seed, False), frames=frames, paper_frames=paper,
                                  eval_every=frames // 2)
                    add(store, run, {frames // 2: final / 2, frames: final + i / 10})
        for agent in ("Max", "RNN"):  # reversed, but on another maze: not the paper's configuration
            for seed in SEEDS:
                run = replace(spec(mc_ls, agent, seed, False), frames=800_000, paper_frames=paper,
                              env_kwargs={"n_rooms": 3})
                add(store, run, {800_000: 30.0 if agent == "RNN" else 1.0})
        # A larger budget a sweep has only begun: one seed of Max does not displace the 400k evidence.
        add(store, replace(spec(mc_ls, "Max", 73, False), frames=1_500_000, paper_frames=paper), {1_500_000: 27.0})
        for seed in SEEDS:  # T-LS at a reduced budget only: the RNN "fails" there, which proves nothing
            add(store, replace(spec("MetaTMaze-v0", "RNN", seed, False), frames=EVERY), {EVERY: 1.0})
        # Planning Game: a larger budget without seeds of the RNN gives way to a smaller complete one.
        for frames, agents in ((400_000, ("RNN", "Max")), (800_000, ("Max",))):
            for agent in agents:
                for seed in SEEDS:
                    run = replace(spec("MetaPlanningGame-v0", agent, seed, False), frames=frames, paper_frames=paper)
                    add(store, run, {frames: 5.0 if agent == "RNN" else 1.0})
    with ResultStore(path, readonly=True) as store:
        groups = load_groups(store)

    verdicts = {claim.text: judge(claim, groups) for claim in CLAIMS}
    planning = verdicts[CLAIMS[7].text]
    assert (planning.verdict, planning.group.frames) == ("reproduced", 400_000)
    max_beats_rnn, splagger_highest, rnn_fails = (verdicts[CLAIMS[i].text] for i in (6, 3, 4))
    assert (max_beats_rnn.verdict, max_beats_rnn.reduced, max_beats_rnn.group.frames) == ("reproduced", True, 400_000)
    assert max_beats_rnn.evidence == "Max 24.100 [24.061, 24.133] (lr 0.001); RNN 19.100 [19.061, 19.133] (lr 0.001)"
    assert (splagger_highest.verdict, splagger_highest.group.frames) == ("refuted", 400_000)
    assert (rnn_fails.verdict, rnn_fails.evidence, rnn_fails.reduced) == (
        "not run", "no finished runs at the paper's budget", False)
    assert judge(CLAIMS[0], groups).verdict == "not run"  # T-LS at a reduced budget: no aggregator ran

    row = next(line for line in claims_markdown(groups) if line.startswith("| On MC-LS max aggregation"))
    assert ("| **reproduced** at a reduced budget | **reproduced** at a reduced budget | 400,000 frames "
            "(REDUCED: 0.7% of the paper's 60,000,000) |") in row
    assert claims_markdown([g for g in groups if g.env_kwargs]) == []  # nothing in the paper's configuration
