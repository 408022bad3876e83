"""The paper-claims verdicts: which claims, which runs, which statistic, which learning rate, which flags."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from metarl_agents.leaderboard.claims import (
    ABLATIONS,
    CLAIMS,
    PEARL,
    claims_markdown,
    claims_tables,
    judge,
)
from metarl_agents.leaderboard.grid import RunSpec, registered_agents
from metarl_agents.leaderboard.report import load_groups, write_report
from metarl_agents.leaderboard.store import ResultStore

BUDGET, EVERY = 1_500_000, 500_000
SEEDS = (73, 20, 3)
AMD = {"hostname": "vm", "cpu": "AMD EPYC", "cpu_count": 2, "platform": "Linux"}
XEON = {"hostname": "vm", "cpu": "Intel Xeon", "cpu_count": 16, "platform": "Linux"}
TORCH_13, TORCH_11 = {"torch": "2.13.0", "metarl": "0.1.0"}, {"torch": "2.11.0", "metarl": "0.1.0"}
# T-LS: each seed's last three evaluations average to these. SplAgger's 68 % interval [10.613, 11.333] lies
# above the baselines' [8.613, 9.667]; its 95 % interval [10, 12] overlaps theirs [8, 10.5].
HIGH, LOW = (10.0, 11.0, 12.0), (8.0, 9.0, 10.5)
T_LS = {"SplAgger": HIGH, "RNN": LOW, "AMRL": LOW, "CNP": LOW, PEARL: LOW}
CLAIM = {(claim.figure, claim.env_id, claim.winners, claim.losers): claim for claim in CLAIMS}
TLS_HIGHEST = CLAIM["Fig. 5", "MetaTMaze-v0", ("SplAgger",), ("RNN", "AMRL", "CNP", PEARL)]
MCLS_HIGHEST = CLAIM["Fig. 5", "MetaMinecraftLongShort-v0", ("SplAgger",), ("RNN", "AMRL", "CNP", PEARL)]
TLS_RNN_FAILS = CLAIM["Fig. 5", "MetaTMaze-v0", ("RNN",), ()]
MCLS_RNN_FAILS = CLAIM["Fig. 5", "MetaMinecraftLongShort-v0", ("RNN",), ()]
MAX_BEATS_RNN = CLAIM["Fig. 2", "MetaMinecraftLongShort-v0", ("Max",), ("RNN",)]
MAX_WORSE_PLANNING = CLAIM["Fig. 2", "MetaPlanningGame-v0", ("RNN",), ("Max",)]


def spec(env_id: str, agent: str, seed: int, lr: float = 1e-3, stop: bool = False, **changes) -> RunSpec:
    run = RunSpec(env_id=env_id, agent=agent, seed=seed, learning_rate=lr, frames=BUDGET, paper_frames=BUDGET,
                  preset_name=env_id, preset_hash="abc", eval_every=EVERY, n_eval_tasks=16,
                  stop_at_return=15.5 if stop else None, patience=1 if stop else None)
    return replace(run, **changes)


def add(store: ResultStore, run: RunSpec, points: dict[int, float], machine=AMD, versions=TORCH_13) -> None:
    record = store.register_run(run.store_fields())
    store.mark_running(record.id, machine, versions)
    for i, (frames, value) in enumerate(points.items()):
        store.record_evaluation(record.id, frames, value, [value], 1.0, None, finished=i == len(points) - 1)


def flat(value: float, frames: int = BUDGET, every: int = EVERY) -> dict[int, float]:
    """A curve at ``value`` on every evaluation of the budget (so its last three average to ``value``)."""
    return {f: value for f in [*range(every, frames, every), frames]}


def groups_of(path):
    with ResultStore(path, readonly=True) as store:
        return load_groups(store)


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    path = tmp_path_factory.mktemp("claims") / "r.db"
    with ResultStore(path) as store:
        for agent, values in T_LS.items():
            for seed, value in zip(SEEDS, values, strict=True):
                add(store, spec("MetaTMaze-v0", agent, seed), flat(value))
        for seed in SEEDS:  # stopped early at 500k: in the tables, never judged
            add(store, spec("MetaTMaze-v0", "Max", seed, stop=True), {EVERY: 16.0})
        # T-maze Latent: the RNN ahead of the aggregators (an ablation result, not a refuted claim)
        for agent, value in (("RNN", 15.5), ("SplAgger", 15.0), ("Max", 12.0)):
            for i, seed in enumerate(SEEDS):
                add(store, spec("MetaTMazeLatent-v0", agent, seed), flat(value + i / 10))
    return path


def test_the_claims_are_the_papers_figures_only_and_pearl_is_pearl_gru():
    assert {claim.figure for claim in CLAIMS} == {"Fig. 2", "Fig. 4", "Fig. 5"}
    assert [claim.figure for claim in CLAIMS].count("Fig. 5") == 4  # T-LS, MC-LS highest; RNN fails on both
    assert not any("Latent" in claim.env_id or "Agreement" in claim.env_id for claim in CLAIMS)
    assert [env for _, env in ABLATIONS] == ["MetaTMazeLatent-v0", "MetaTMazeAgreement-v0"]
    agents = {agent for claim in CLAIMS for agent in (*claim.winners, *claim.losers)}
    assert PEARL == "PEARL-GRU" and PEARL in agents and "PEARL" not in agents
    assert agents <= set(registered_agents())
    cheetah_dir = [claim for claim in CLAIMS if claim.env_id == "MetaCheetahDir-v0"]
    assert {claim.same_or_better for claim in cheetah_dir} == {True, False}  # same or better; PEARL much lower
    with pytest.raises(ValueError, match="solved return for 'MetaPlanningGame-v0'"):
        type(CLAIMS[0])("Fig. 9", "fails", "MetaPlanningGame-v0", ("RNN",))


def test_a_verdict_at_68_percent_says_whether_it_holds_at_95_percent(db):
    verdict = judge(TLS_HIGHEST, groups_of(db))
    assert (verdict.verdict, verdict.verdict_95) == ("reproduced", "not separated")
    assert verdict.text == "reproduced (68 %); not separated at 95 %"
    assert verdict.evidence.startswith(
        "SplAgger 11.000 [68 %: 10.613, 11.333; 95 %: 10.000, 12.000] (lr 0.001); "
        "RNN 9.167 [68 %: 8.613, 9.667; 95 %: 8.000, 10.500] (lr 0.001)")
    # P(SplAgger > RNN): 8 of the 9 seed pairs, the ninth (10 vs 10.5) lost
    assert verdict.improvement[0] == "P(SplAgger > RNN) = 0.89 [0.56, 1.00]"
    assert len(verdict.improvement) == 4
    fails = judge(TLS_RNN_FAILS, groups_of(db))
    assert fails.text == "reproduced (68 %); holds at 95 %"


def test_runs_stopped_early_are_not_judged_but_stay_in_the_tables(db):
    groups = groups_of(db)
    (t_ls,) = [g for g in groups if g.env_id == "MetaTMaze-v0"]
    (max_entry,) = [e for e in t_ls.entries if e.agent == "Max"]
    assert max_entry.stopped == {3: EVERY, 20: EVERY, 73: EVERY} and max_entry.trained_to_budget() is None
    claim = replace(TLS_HIGHEST, losers=("Max",))
    verdict = judge(claim, groups)
    assert verdict.verdict == "not run"
    assert verdict.evidence == ("needs 3 seeds trained to the budget at one learning rate; have Max 0, 3 stopped "
                                "early (not judged)")
    assert "stopped early, not judged: Max 3 seeds" in verdict.notes


def test_the_final_statistic_is_the_mean_of_the_last_three_real_evaluations(tmp_path):
    """A late collapse (15 -> 2) moves the statistic by a third of what it does to the last evaluation; an
    early-stopped seed's statistic uses its real evaluations, never the values carried forward."""
    path = tmp_path / "r.db"
    with ResultStore(path) as store:
        add(store, spec("MetaTMaze-v0", "AMRL", 20, eval_every=250_000),
            {250_000 * k: v for k, v in enumerate([1, 9, 15, 15, 15, 2], start=1)})
        add(store, spec("MetaTMaze-v0", "AMRL", 3, stop=True, eval_every=250_000),
            {250_000: 4.0, 500_000: 15.6, 750_000: 16.0})
    (group,) = groups_of(path)
    (entry,) = group.entries
    assert entry.seeds == [3, 20]
    np.testing.assert_allclose(entry.curves[:, -1], [16.0, 2.0])  # seed 3's 16 carried to the budget
    np.testing.assert_allclose(entry.last_means, [(4 + 15.6 + 16) / 3, (15 + 15 + 2) / 3])
    judged = entry.trained_to_budget()
    assert judged.seeds == [20] and judged.last_means.tolist() == [pytest.approx(32 / 3)]


def test_best_learning_rate_only_where_three_of_the_grid_ran(tmp_path):
    """Two rates: the RNN is judged at the preset's rate (1e-3) although 3e-4 did better, and the notes say
    "one learning rate"; with a third rate of the grid the best by mean over the run is taken."""
    path = tmp_path / "r.db"
    claim = replace(TLS_HIGHEST, losers=("RNN",))
    with ResultStore(path) as store:
        for lr, value in ((1e-3, 5.0), (3e-4, 9.0)):
            for seed in SEEDS:
                add(store, spec("MetaTMaze-v0", "RNN", seed, lr=lr), flat(value))
        for seed in SEEDS:
            add(store, spec("MetaTMaze-v0", "SplAgger", seed), flat(8.0))
        add(store, spec("MetaTMaze-v0", "RNN", 73, lr=3e-3), flat(14.0))  # one seed: does not count
    verdict = judge(claim, groups_of(path))
    assert verdict.verdict == "reproduced" and "RNN 5.000" in verdict.evidence
    assert "RNN: one learning rate (0.001; also ran 0.0003)" in verdict.notes
    assert "SplAgger: one learning rate (0.001)" in verdict.notes

    with ResultStore(path) as store:
        for seed in SEEDS[1:]:
            add(store, spec("MetaTMaze-v0", "RNN", seed, lr=3e-3), flat(1.0))
    verdict = judge(claim, groups_of(path))
    assert "RNN: best of 3 learning rates by mean over the run: 0.0003" in verdict.notes
    assert verdict.verdict == "refuted" and "RNN 9.000" in verdict.evidence


def test_a_fails_to_learn_claim_must_hold_at_every_learning_rate_with_enough_seeds(tmp_path):
    path = tmp_path / "lrs.db"
    with ResultStore(path) as store:
        for seed in SEEDS:
            add(store, spec("MetaTMaze-v0", "RNN", seed), flat(8.0))
        add(store, spec("MetaTMaze-v0", "RNN", 73, lr=1e-4), flat(16.0))  # one seed: too thin to count
    verdict = judge(TLS_RNN_FAILS, groups_of(path))
    assert verdict.verdict == "reproduced"
    assert verdict.evidence == "RNN 8.000 [68 %: 8.000, 8.000; 95 %: 8.000, 8.000] (lr 0.001)"
    with ResultStore(path) as store:
        for seed in SEEDS:
            add(store, spec("MetaTMaze-v0", "RNN", seed, lr=3e-4), flat(16.0))
    verdict = judge(TLS_RNN_FAILS, groups_of(path))
    assert verdict.text == "refuted (68 %); refuted at 95 % too"
    assert verdict.notes[0] == "RNN: every learning rate that ran with 3 seeds (0.001, 0.0003)"


def test_reduced_mc_ls_runs_are_judged_at_the_largest_complete_budget_and_say_what_they_are(tmp_path):
    """MC-LS anneals its learning rate to 0 over the run: a 400k run is a complete short schedule. A larger
    budget with one seed does not displace the complete evidence; "fails to learn" is never judged reduced."""
    path = tmp_path / "reduced.db"
    mc_ls, paper = "MetaMinecraftLongShort-v0", 60_000_000
    with ResultStore(path) as store:
        for agent, values in (("Max", (27.4, 27.4, 27.0)), ("RNN", (20.0, 20.5, 19.5))):
            for seed, value in zip(SEEDS, values, strict=True):
                run = spec(mc_ls, agent, seed, lr=3e-4, frames=400_000, paper_frames=paper, eval_every=100_000)
                add(store, run, flat(value, 400_000, 100_000))
        add(store, spec(mc_ls, "Max", 73, lr=3e-4, frames=1_500_000, paper_frames=paper), flat(27.4))
        for agent in ("Max", "RNN"):  # the Planning Game at a reduced budget with a constant learning rate
            for seed in SEEDS:
                run = spec("MetaPlanningGame-v0", agent, seed, lr=3e-4, frames=400_000, paper_frames=paper,
                           eval_every=100_000)
                add(store, run, flat(5.0 if agent == "Max" else 1.0, 400_000, 100_000))
    groups = groups_of(path)
    verdict = judge(MAX_BEATS_RNN, groups)
    assert verdict.group.frames == 400_000 and verdict.text == "reproduced (68 %) at a reduced budget; holds at 95 %"
    assert verdict.improvement == ("P(Max > RNN) = 1.00 [1.00, 1.00]",)
    assert judge(MCLS_RNN_FAILS, groups).evidence == "no finished runs at the paper's budget"
    assert judge(MAX_WORSE_PLANNING, groups).verdict == "refuted"
    (table, *_) = claims_tables(groups, "plots/")
    rows = {row[1]: dict(zip(table.header, row, strict=True)) for row in table.rows}
    assert rows[MAX_BEATS_RNN.text]["budget"] == (
        "400,000 frames (REDUCED: 0.7% of the paper's 60,000,000); the learning rate is annealed to 0 over these "
        "400k frames, so these are complete short runs, not the early part of a 60M run; metarl protocol")
    assert rows[MAX_WORSE_PLANNING.text]["budget"].endswith(
        "; a constant learning rate: the first 400k frames of the paper's run; metarl protocol")
    assert rows[MAX_BEATS_RNN.text]["plot"] == "plots/MetaMinecraftLongShort-v0__frames400k-REDUCED.png"
    assert rows[MCLS_HIGHEST.text]["verdict"] == "not run"


def test_final_evaluation_tasks_and_provenance_are_stated(tmp_path):
    """Runs with 64 final tasks are not flagged, runs with 16 are; a group whose runs trained on two
    machines with two torch versions is flagged, saying whether the judged runs differ."""
    path = tmp_path / "r.db"
    with ResultStore(path) as store:
        for agent, value in (("Max", 24.0), ("RNN", 20.0)):
            for i, seed in enumerate(SEEDS):
                machine, versions = (XEON, TORCH_11) if (agent, i) == ("RNN", 0) else (AMD, TORCH_13)
                run = spec("MetaMinecraftLongShort-v0", agent, seed, n_final_eval_tasks=64)
                add(store, run, flat(value + i / 10), machine, versions)
    verdict = judge(MAX_BEATS_RNN, groups_of(path))
    assert verdict.notes[0] == "mean of the last 3 evaluations, 64 held-out tasks each"
    assert verdict.notes[-1] == (
        "MIXED PROVENANCE in this group: machines AMD EPYC (2 cores): 5 runs, Intel Xeon (16 cores): 1 runs; "
        "torch 2.11.0: 1 runs, 2.13.0: 5 runs; the judged runs differ too (machines AMD EPYC (2 cores): 5 runs, "
        "Intel Xeon (16 cores): 1 runs; torch 2.11.0: 1 runs, 2.13.0: 5 runs)")


def test_ablations_are_results_and_the_report_shows_both_tables(db, tmp_path):
    groups = groups_of(db)
    claims, ablations = claims_tables(groups)
    assert all(len(row) == len(claims.header) for row in claims.rows) and len(claims.rows) == len(CLAIMS)
    assert ablations.title == "Ablations (results, not claims)"
    latent = [dict(zip(ablations.header, row, strict=True)) for row in ablations.rows if row[0] == "T-maze Latent"]
    assert [row["agent"] for row in latent] == ["RNN", "SplAgger", "Max"]
    assert latent[1]["final statistic: mean [68 % CI; 95 % CI]"].startswith("15.100 [")
    assert latent[2]["P(agent > RNN) [95 % CI]"] == "0.00 [0.00, 0.00]"
    assert [row[1:3] for row in ablations.rows if row[0] == "T-maze Agreement"] == [("—", "not run")]
    assert latent[0]["notes"].startswith(
        "mean of the last 3 evaluations, 16 held-out tasks each (FLAGGED: fewer than 64 tasks; these runs predate "
        "the longer final evaluations); RNN: one learning rate (0.001)")

    markdown = write_report(db, tmp_path / "plots", markdown=tmp_path / "LEADERBOARD.md").read_text()
    assert markdown.index("## Paper claims") < markdown.index("## Ablations (results, not claims)") < \
        markdown.index("## MetaTMaze-v0")
    row = next(line for line in markdown.splitlines() if line.startswith("| Fig. 5 | On T-LS, SplAgger has"))
    assert "| **reproduced** (68 %); not separated at 95 % |" in row
    assert "[plot](plots/MetaTMaze-v0__frames1.5M.png)" in row
    assert "refuted" not in "\n".join(line for line in markdown.splitlines() if "T-maze Latent" in line)
    assert claims_markdown([g for g in groups if g.env_id == "MetaTMazeLatent-v0"])[0] == \
        "## Ablations (results, not claims)"


def test_paper_protocol_runs_are_judged_once_complete_and_the_budget_names_the_protocol(tmp_path):
    """A claim stays on the metarl runs until the paper protocol has 3 seeds of every agent it names; then
    the paper protocol's runs are judged, although the metarl group has more runs."""
    path = tmp_path / "r.db"
    with ResultStore(path) as store:
        for agent, values in T_LS.items():
            for seed, value in zip(SEEDS, values, strict=True):
                add(store, spec("MetaTMaze-v0", agent, seed, protocol="metarl"), flat(value))
            add(store, spec("MetaTMaze-v0", agent, 5, protocol="metarl"), flat(values[1]))
        for agent in T_LS:  # two paper seeds of each agent, every one at 15
            for seed in SEEDS[:2]:
                add(store, spec("MetaTMaze-v0", agent, seed, protocol="paper"), flat(15.0))
    verdict = judge(TLS_HIGHEST, groups_of(path))
    assert verdict.group.protocol == "metarl" and verdict.verdict == "reproduced"
    (table, *_) = claims_tables(groups_of(path))
    row = dict(zip(table.header, table.rows[[c.text for c in CLAIMS].index(TLS_HIGHEST.text)], strict=True))
    assert row["budget"] == "1,500,000 frames; metarl protocol"

    with ResultStore(path) as store:  # the third paper seed: SplAgger no longer separated from the others
        for agent in T_LS:
            add(store, spec("MetaTMaze-v0", agent, SEEDS[2], protocol="paper"), flat(15.0))
    verdict = judge(TLS_HIGHEST, groups_of(path))
    assert verdict.group.protocol == "paper" and verdict.verdict == "not separated"
    assert "paper protocol" in claims_tables(groups_of(path))[0].intro


def test_the_protocols_table_puts_each_agents_two_protocols_side_by_side(tmp_path):
    path = tmp_path / "r.db"
    with ResultStore(path) as store:
        for seed in SEEDS:  # metarl: SplAgger stopped early on every seed, the RNN trained to the budget
            add(store, spec("MetaTMaze-v0", "SplAgger", seed, stop=True, protocol="metarl"), {EVERY: 16.0})
            add(store, spec("MetaTMaze-v0", "RNN", seed, protocol="metarl"), flat(2.0))
        add(store, spec("MetaTMaze-v0", "SplAgger", 73, protocol="paper"), flat(15.5))  # one paper seed each
        add(store, spec("MetaTMaze-v0", "RNN", 73, protocol="paper"), flat(4.0))
        add(store, spec("MetaTMaze-v0", "AMRL", 73, protocol="paper"), flat(8.0))
        add(store, spec("MetaTMazeLatent-v0", "RNN", 73, protocol="paper"), flat(15.0))  # no metarl runs: no row
    tables = {table.title: table for table in claims_tables(groups_of(path), "plots/")}
    table = tables["Training protocols compared"]
    rows = {row[1]: dict(zip(table.header, row, strict=True)) for row in table.rows}
    assert list(rows) == ["AMRL", "RNN", "SplAgger"] and {row["environment"] for row in rows.values()} == {"MetaTMaze-v0"}
    assert rows["RNN"]["metarl protocol"] == "2.000 [2.000, 2.000] (3 seeds, lr 0.001)"
    assert rows["RNN"]["paper protocol"] == "4.000 [4.000, 4.000] (1 seed, lr 0.001)"
    assert rows["RNN"]["paper − metarl"] == "+2.000"
    assert rows["RNN"]["P(paper > metarl) [95 % CI]"] == "1.00 [1.00, 1.00]"
    assert rows["SplAgger"]["metarl protocol"] == "stopped early (3 seeds)"
    assert rows["SplAgger"]["paper − metarl"] == "—"
    assert rows["AMRL"]["metarl protocol"] == "not run"
    assert rows["RNN"]["budget"] == "1,500,000 frames"
    assert rows["RNN"]["plot"] == "plots/MetaTMaze-v0__frames1.5M__paper-protocol.png"  # the paper protocol's group
