"""Leaderboard report on a synthetic store: bootstrap CIs, best lr, rankings, budget labels, files."""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest

from metarl_agents.leaderboard.grid import RunSpec
from metarl_agents.leaderboard.report import Entry, Group, bootstrap_ci, write_report
from metarl_agents.leaderboard.store import ResultStore

FRAMES = [250, 500, 750, 1000]
SEED_OFFSET = {73: 0.3, 20: -0.1, 3: 0.0}
# (agent, lr) -> curve before the seed offset. SplAgger's best lr by mean over the run is 3e-4 although
# 1e-3 ends higher; RNN at its best lr (3e-4) ends above SplAgger but has the lower mean over the run.
CURVES = {
    ("SplAgger", 1e-3): [1.0, 2.0, 3.0, 4.0],
    ("SplAgger", 3e-4): [3.0, 3.0, 3.0, 3.0],
    ("RNN", 1e-3): [0.0, 0.0, 0.0, 5.0],
    ("RNN", 3e-4): [1.0, 1.0, 1.0, 3.5],
}
MACHINE = {"hostname": "bench-box", "cpu": "Test CPU 9000", "cpu_count": 2, "platform": "Linux-test"}
VERSIONS = {"metarl": "0.1.0", "torch": "2.13.0"}


def spec(agent, lr, seed, frames=1000):
    return RunSpec(env_id="MetaTMaze-v0", agent=agent, seed=seed, learning_rate=lr, frames=frames, paper_frames=1_500_000,
                   preset_name="MetaTMaze-v0", preset_hash="abc", eval_every=250, n_eval_tasks=16)


def add_run(store, run_spec, frames, returns, finished=True):
    run = store.register_run(run_spec.store_fields())
    store.mark_running(run.id, MACHINE, VERSIONS)
    for i, (f, r) in enumerate(zip(frames, returns, strict=True)):
        store.record_evaluation(run.id, f, r, [r / 4] * 4, 1.0 + i, f"c{f}",
                                finished=finished and i == len(frames) - 1)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("report")
    db = tmp_path / "r.db"
    with ResultStore(db) as store:
        for (agent, lr), curve in CURVES.items():
            for seed, offset in SEED_OFFSET.items():
                add_run(store, spec(agent, lr, seed), FRAMES, [v + offset for v in curve])
        # unfinished: must not count anywhere
        add_run(store, spec("SplAgger", 3e-3, 73), FRAMES[:2], [100.0, 100.0], finished=False)
        # registered but never started: no machine or versions to report
        store.register_run(spec("SplAgger", 3e-3, 20).store_fields())
        # the paper's budget is another group, never mixed with the reduced one
        add_run(store, spec("SplAgger", 1e-3, 73, frames=1_500_000), [750_000, 1_500_000], [10.0, 16.0])
    markdown = write_report(db, tmp_path / "out")
    return tmp_path / "out", markdown.read_text(), json.loads((tmp_path / "out" / "leaderboard.json").read_text())


def direct_ci(values):
    """The bootstrap written out plainly, with the same generator and seed."""
    values = np.asarray(values)
    rng = np.random.default_rng(0)
    picks = rng.integers(0, len(values), size=(1000, len(values)))
    means = np.array([values[row].mean() for row in picks])
    return values.mean(), np.percentile(means, 16), np.percentile(means, 84)


def test_bootstrap_ci_matches_direct_computation():
    values = np.array([3.0, 7.5, 4.25])
    mean, low, high = bootstrap_ci(values)
    assert (mean, low, high) == pytest.approx(direct_ci(values), abs=1e-12)
    assert low < mean < high
    columns = bootstrap_ci(np.stack([values, 2 * values], axis=1))  # per-column, same resamples
    assert columns[1] == pytest.approx([low, 2 * low]) and columns[2] == pytest.approx([high, 2 * high])
    assert bootstrap_ci(np.array([5.0])) == (5.0, 5.0, 5.0)


def test_entries_statistics_best_lr_and_rankings(report):
    _, _, data = report
    entries = {(e["agent"], e["lr"]): e for e in data["entries"] if e["frames_budget"] == 1000}
    assert set(entries) == set(CURVES)  # the unfinished lr 3e-3 run is not an entry
    for key, curve in CURVES.items():
        # the report orders seeds ascending before resampling
        per_seed = np.array([[v + SEED_OFFSET[seed] for v in curve] for seed in sorted(SEED_OFFSET)])
        entry = entries[key]
        assert entry["seeds"] == [3, 20, 73] and entry["n_seeds"] == 3
        assert (entry["final_mean"], entry["final_ci_low"], entry["final_ci_high"]) == pytest.approx(
            direct_ci(per_seed[:, -1]))
        assert (entry["over_run_mean"], entry["over_run_ci_low"], entry["over_run_ci_high"]) == pytest.approx(
            direct_ci(per_seed.mean(axis=1)))
    best = sorted(key for key, e in entries.items() if e["best_lr"])
    assert best == [("RNN", 3e-4), ("SplAgger", 3e-4)]
    assert entries["RNN", 3e-4]["rank_final"] == 1 and entries["SplAgger", 3e-4]["rank_final"] == 2
    assert entries["SplAgger", 3e-4]["rank_over_run"] == 1 and entries["RNN", 3e-4]["rank_over_run"] == 2
    assert entries["SplAgger", 1e-3]["rank_final"] is None
    assert all(e["reduced_budget"] for e in entries.values())
    full = [e for e in data["entries"] if e["frames_budget"] == 1_500_000]
    assert [(e["agent"], e["final_mean"], e["over_run_mean"], e["reduced_budget"]) for e in full] == [
        ("SplAgger", 16.0, 13.0, False)]


def test_markdown_states_budget_machine_and_versions_above_the_tables(report):
    out, text, _ = report
    # the larger budget comes first
    full = text[text.index("## MetaTMaze-v0 — 1.5M frames"):text.index("## MetaTMaze-v0 — 1k frames")]
    reduced = text[text.index("## MetaTMaze-v0 — 1k frames"):]
    assert "## MetaTMaze-v0 — 1k frames (REDUCED BUDGET; paper: 1.5M)" in reduced
    assert "1,000 frames per run — **REDUCED BUDGET** (paper: 1,500,000)" in reduced
    assert "Machine: bench-box: Test CPU 9000, 2 cores, Linux-test" in reduced
    assert "Versions: metarl 0.1.0, torch 2.13.0" in reduced
    assert "Runs: 12 finished, 2 unfinished (not counted)" in reduced
    assert "None" not in reduced  # the run that never started adds no empty machine line
    for table in ("### Ranked by final", "### Ranked by mean-over-run", "### Every learning rate"):
        caption = reduced[reduced.index(table):].splitlines()[2]
        assert "REDUCED BUDGET" in caption and "bench-box" in caption
    by_final = reduced[reduced.index("### Ranked by final"):reduced.index("### Ranked by mean-over-run")]
    assert by_final.index("| 1 | RNN | 0.0003 |") < by_final.index("| 2 | SplAgger | 0.0003 |")
    by_mean = reduced[reduced.index("### Ranked by mean-over-run"):reduced.index("### Every")]
    assert by_mean.index("| 1 | SplAgger |") < by_mean.index("| 2 | RNN |")
    assert "| SplAgger | 0.0003 (best) | 3.067 [" in reduced
    assert "REDUCED" not in full and "1,500,000 frames per run;" in full
    assert sorted(p.name for p in out.glob("*.png")) == [
        "MetaTMaze-v0__frames1.5M.png", "MetaTMaze-v0__frames1k-REDUCED.png"]
    assert "](MetaTMaze-v0__frames1k-REDUCED.png)" in reduced
    assert (out / "MetaTMaze-v0__frames1k-REDUCED.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_csv_exports(report):
    out, _, data = report
    with open(out / "leaderboard.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(data["entries"]) == 5
    assert {(r["agent"], float(r["lr"]), r["reduced_budget"]) for r in rows if r["frames_budget"] == "1000"} == {
        (agent, lr, "True") for agent, lr in CURVES}
    with open(out / "evaluations.csv") as handle:
        points = list(csv.DictReader(handle))
    assert len(points) == 12 * 4 + 2 + 2  # unfinished runs' points are exported too, with their status
    first = next(p for p in points if p["agent"] == "RNN" and p["lr"] == "0.001" and p["seed"] == "73")
    assert (first["frames"], float(first["meta_episode_return"]), first["status"]) == ("250", 0.3, "finished")
    assert json.loads(first["episode_returns"]) == pytest.approx([0.075] * 4)


def test_report_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no result database at"):
        write_report(tmp_path / "missing.db", tmp_path / "out")
    ResultStore(tmp_path / "empty.db").close()
    assert "The store holds no runs yet." in write_report(tmp_path / "empty.db", tmp_path / "out").read_text()
    with pytest.raises(ValueError, match="no runs for MetaPlanningGame-v0"):
        write_report(tmp_path / "empty.db", tmp_path / "out", envs=["MetaPlanningGame-v0"])


def test_hostile_stored_values_stay_inside_out_and_are_escaped(tmp_path):
    db, out = tmp_path / "store" / "r.db", tmp_path / "deep" / "out"
    hostile = RunSpec(env_id="../../escaped", agent="<img src=x>|`rm`|$x^2$", seed=1, learning_rate=1e-3, frames=1000,
                      paper_frames=1_500_000, preset_name="p", preset_hash="abc", eval_every=250, n_eval_tasks=16,
                      env_kwargs={"k": "`` ](http://evil) ``"})
    with ResultStore(db) as store:
        run = store.register_run(hostile.store_fields())
        store.mark_running(run.id, {"hostname": "h|x\n# injected", "cpu": "[c](http://evil)"}, VERSIONS)
        for frames in FRAMES:
            store.record_evaluation(run.id, frames, 1.0, [0.5, 0.5], 1.0, None, finished=frames == FRAMES[-1])
    before = {p for p in tmp_path.rglob("*")}
    text = write_report(db, out).read_text()
    new = {p for p in tmp_path.rglob("*") if p.is_file() and p.parent != db.parent} - before  # not db's -shm
    assert new and all(p.resolve().parent == out.resolve() for p in new)
    assert "## ../../escaped" in text and "\\<img src=x\\>\\|\\`rm\\`\\|" in text
    assert "h\\|x \\# injected" in text and "\\[c\\]\\(http://evil\\)" in text
    assert not re.search(r"(?<!\\)<img|\n# injected|(?<!\\)\]\(http", text.replace("`` ](http://evil) ``", ""))


def make_entry(agent, curve, lr=1e-3, seeds=(73,)):
    """An Entry whose seeds all follow ``curve`` (one evaluation per index, nothing carried)."""
    curves = np.array([curve] * len(seeds), dtype=float)
    return Entry(agent, lr, list(seeds), np.arange(len(curve)), curves, np.zeros_like(curves, dtype=bool))


def test_ranking_breaks_ties_by_the_other_statistic():
    """Agents that all solve end tied at the maximum; the faster learner (higher mean over the run) ranks first."""
    slow, fast = make_entry("Slow", [0, 8, 16]), make_entry("Fast", [8, 16, 16])
    best_final = make_entry("Late", [0, 0, 17])
    group = Group(config=spec("Slow", 1e-3, 73), entries=[slow, best_final, fast])
    assert [e.agent for e in group.ranked("final")] == ["Late", "Fast", "Slow"]
    assert [e.agent for e in group.ranked("over_run")] == ["Fast", "Slow", "Late"]
    tied = make_entry("Tied", [8, 16, 16])  # tied on both: the order given is kept (a stable sort)
    group.entries = [tied, fast]
    assert [e.agent for e in group.ranked("final")] == ["Tied", "Fast"]


def test_best_lr_is_chosen_among_the_lrs_with_the_most_seeds():
    """A second learning rate with one (better) seed does not displace a complete one until its seeds are in."""
    complete = make_entry("RNN", [1, 1, 2], lr=1e-3, seeds=(73, 20, 3))
    partial = make_entry("RNN", [2, 2, 2], lr=3e-4, seeds=(73,))
    group = Group(config=spec("RNN", 1e-3, 73), entries=[complete, partial])
    assert group.best_entries() == [complete]
    both_complete = make_entry("RNN", [2, 2, 2], lr=3e-4, seeds=(73, 20, 3))
    group.entries = [complete, both_complete]
    assert group.best_entries() == [both_complete]


def test_learning_curve_plot_gives_every_agent_its_own_colour(tmp_path, monkeypatch):
    """Matplotlib's default cycle has 10 colours; a 14-agent study must not draw two agents alike."""
    import matplotlib.pyplot as plt

    from metarl_agents.leaderboard import report as report_module

    drawn = []
    monkeypatch.setattr(plt, "close", drawn.append)  # keep the figure to inspect it
    agents = [f"Agent{i:02d}" for i in range(14)]
    group = Group(config=spec("Agent00", 1e-3, 73), entries=[make_entry(a, [0, i, 16]) for i, a in enumerate(agents)])
    report_module._plot(group, tmp_path / "curves.png")
    assert (tmp_path / "curves.png").stat().st_size > 0
    (figure,) = drawn
    curves = [line for line in figure.axes[0].get_lines() if line.get_label().startswith("Agent")]
    assert [line.get_label().split(" ")[0] for line in curves] == agents
    assert len({line.get_color() for line in curves}) == 14
    axis = figure.axes[0].xaxis
    assert [axis.get_major_formatter()(x, 0) for x in (0, 134_400, 1_500_000)] == ["0", "134.4k", "1.5M"]
    plt.close(figure)
