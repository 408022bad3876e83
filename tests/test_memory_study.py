"""The memory study's generator (benchmarks/memory_study/make_study.py) and its run script agree and report exactly."""

from __future__ import annotations

import importlib.util
import re
import shlex
import sys
from pathlib import Path

import pytest

from metarl_agents.leaderboard.grid import RunSpec
from metarl_agents.leaderboard.store import ResultStore
from metarl_agents.policies import POLICY_REGISTRY

STUDY = Path(__file__).parents[1] / "benchmarks" / "memory_study"


def load_generator():
    spec = importlib.util.spec_from_file_location("make_study", STUDY / "make_study.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_the_run_script_trains_the_grid_the_generator_reports():
    study = load_generator()
    script = (STUDY / "run_study.sh").read_text()
    agents = shlex.split(re.search(r"^AGENTS=\((.*)\)$", script, re.M).group(1))
    assert sorted(agents) == sorted(study.AGENTS) and len(agents) == 14
    assert all(agent in POLICY_REGISTRY for agent in agents)
    assert re.search(r"^for seed in (.*); do$", script, re.M).group(1).split() == [str(s) for s in study.SEEDS]
    assert [env for env in study.ENVS if f"--envs {env} " in script] == study.ENVS


def _store_run(store: ResultStore, agent: str, seed: int, returns: list[float], finished: bool = True) -> None:
    spec = RunSpec(env_id="MetaTMaze-v0", agent=agent, seed=seed, learning_rate=1e-3, frames=400, paper_frames=1_500_000,
                   preset_name="MetaTMaze-v0", preset_hash="abc", eval_every=100, stop_at_return=15.5, patience=3)
    record = store.register_run(spec.store_fields())
    for i, value in enumerate(returns):
        last = i == len(returns) - 1
        store.record_evaluation(record.id, 100 * (i + 1), value, [value / 4] * 4, float(i), checkpoint_path="c.pt",
                                finished=finished and last)


def test_tables_give_frames_to_the_first_solved_evaluation_and_list_what_is_missing(tmp_path):
    study = load_generator()
    db = tmp_path / "study.db"
    with ResultStore(db) as store:
        _store_run(store, "SplAgger-LRU", 73, [2.0, 15.5, 9.0, 16.0])
        _store_run(store, "LRU", 73, [2.0, 3.75, 9.0, 7.25])
        _store_run(store, "Max", 20, [16.0, 16.0, 16.0])
        _store_run(store, "RNN", 73, [2.0, 15.75], finished=False)  # still training: not reported
    results = study.collect(db)
    assert results == {
        ("MetaTMaze-v0", "SplAgger-LRU", 73): study.SeedResult(400, 200, 16.0, 16.0),
        ("MetaTMaze-v0", "LRU", 73): study.SeedResult(400, None, 9.0, 7.25),
        ("MetaTMaze-v0", "Max", 20): study.SeedResult(300, 100, 16.0, 16.0),
    }
    lines = study.study_markdown(results)
    assert lines[0].startswith("Finished runs: **3 of 126**")
    (lru,) = [line for line in lines if line.startswith("| LRU (LRU / SplAgger-LRU)")]
    assert lru.split(" | ")[1:3] == ["not solved (best 9.00)", "—"]
    assert lru.split(" | ")[4] == "**200** (best 16.00)"
    (max_row,) = [line for line in lines if line.startswith("| none (Max)")]
    assert max_row.split(" | ")[5] == "**100** (best 16.00)"
    remaining = lines[lines.index("Not finished yet:"):]
    (tls73,) = [line for line in remaining if line.startswith("- MetaTMaze-v0, seed 73: ")]
    assert tls73.split(": ")[1].split(", ") == [a for a in study.AGENTS if a not in ("LRU", "SplAgger-LRU")]
    assert "- MetaTMaze-v0, seed 20: " + ", ".join(a for a in study.AGENTS if a != "Max") in remaining
    assert "- MetaTMazeLatent-v0, seed 3: all 14" in remaining


def test_document_keeps_its_hand_written_text_and_refuses_missing_markers(tmp_path):
    study = load_generator()
    document = tmp_path / "STUDY.md"
    document.write_text(f"intro\n{study.BEGIN}\nold\n{study.END}\noutro\n")
    study.update_document(document, ["new", "table"])
    assert document.read_text() == f"intro\n{study.BEGIN}\nnew\ntable\n{study.END}\noutro\n"
    document.write_text("no markers\n")
    with pytest.raises(ValueError, match="must hold"):
        study.update_document(document, ["new"])
    assert document.read_text() == "no markers\n"


def test_pairs_figure_has_a_panel_per_memory_and_the_document_links_it(tmp_path, monkeypatch):
    """Each panel compares one memory alone with it under split max; Max and CNP are the references."""
    import matplotlib.pyplot as plt

    study = load_generator()
    db = tmp_path / "study.db"
    with ResultStore(db) as store:
        _store_run(store, "LRU", 73, [2.0, 3.75, 9.0, 7.25])
        _store_run(store, "SplAgger-LRU", 73, [2.0, 15.5, 16.0, 16.0])
        _store_run(store, "Max", 73, [16.0, 16.0, 16.0])
    drawn = []
    monkeypatch.setattr(plt, "close", drawn.append)
    figures = study.write_figures(db, tmp_path / "figures")
    assert figures == {"MetaTMaze-v0": tmp_path / "figures" / "MetaTMaze-v0.png"}
    assert figures["MetaTMaze-v0"].stat().st_size > 0
    (figure,) = drawn
    panels = {ax.get_title(): ax for ax in figure.axes}
    assert list(panels) == [f"{label} (seeds: {'1 / 1' if label == 'LRU' else 'none yet'})"
                            for label, _, _ in study.PAIRS]
    lru = [line.get_ydata() for line in panels["LRU (seeds: 1 / 1)"].get_lines()]
    # Max (carried to the budget after it stopped), then LRU alone, then LRU under split max
    assert [list(y) for y in lru] == [[16.0, 16.0, 16.0, 16.0], [2.0, 3.75, 9.0, 7.25], [2.0, 15.5, 16.0, 16.0]]
    assert [len(panel.get_lines()) for title, panel in panels.items() if "none yet" in title] == [1] * 5
    assert all(ax.xaxis.get_major_formatter()(1_500_000, 0) == "1.5M" for ax in figure.axes)  # every panel
    plt.close(figure)
    lines = study.study_markdown(study.collect(db), {"MetaTMaze-v0": "memory_study/figures/MetaTMaze-v0.png"})
    (image,) = [i for i, line in enumerate(lines) if line.startswith("![")]
    assert lines[image].endswith("(memory_study/figures/MetaTMaze-v0.png)")
    assert lines.index("#### MetaTMaze-v0 (3 of 42 runs finished)") < image < lines.index(
        "#### MetaTMazeLatent-v0 (0 of 42 runs finished)")  # under its own environment's table
