"""``metarl-bench merge``: adding the finished runs of stores trained on other machines to a result store."""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from metarl_agents.cli.bench import main
from metarl_agents.leaderboard import merge
from metarl_agents.leaderboard.grid import RunSpec
from metarl_agents.leaderboard.lock import StoreInUse
from metarl_agents.leaderboard.merge import merge_stores
from metarl_agents.leaderboard.store import ResultStore, StoreError


def spec(seed: int, agent: str = "RNN") -> RunSpec:
    return RunSpec(env_id="MetaTMaze-v0", agent=agent, seed=seed, learning_rate=1e-3, frames=1000, paper_frames=1000,
                   preset_name="MetaTMaze-v0", preset_hash="abc", eval_every=500, n_eval_tasks=2,
                   env_kwargs={"length": 4}, stop_at_return=9.5, patience=2)


def add_run(db: Path, run: RunSpec, returns: list[float], finished: bool = True, machine: str = "far",
            checkpoint: str | None = "ck.zip") -> str:
    """A run trained on ``machine`` with one evaluation point per return (500 frames apart)."""
    with ResultStore(db) as store:
        record = store.register_run(run.store_fields())
        store.mark_running(record.id, {"hostname": machine}, {"torch": "2.13.0"}, {"seed": run.seed, "n_envs": 4})
        for i, value in enumerate(returns, start=1):
            last = finished and i == len(returns)
            store.record_evaluation(record.id, 500 * i, value, [value, value / 2], 1.5 * i, checkpoint, finished=last)
    return run.run_key


def contents(db: Path) -> dict:
    """Every run (but its id) and its evaluation points, by run key."""
    with ResultStore(db, readonly=True) as store:
        return {r.run_key: ({**vars(r), "id": None}, [(p.frames, p.meta_episode_return, p.episode_returns,
                                                       p.wall_time_s) for p in store.evaluations(r.id)])
                for r in store.runs()}


def digest(db: Path) -> str:
    return hashlib.sha256(db.read_bytes()).hexdigest()


def test_import_into_an_empty_store_copies_finished_runs_exactly_without_checkpoints(tmp_path):
    source, dest = tmp_path / "far.db", tmp_path / "here.db"
    done = [add_run(source, spec(seed), [1.0 + seed, 2.5 + seed]) for seed in (1, 2)]
    live = add_run(source, spec(3), [4.0], finished=False)
    with ResultStore(source) as store:
        queued = store.register_run(spec(4).store_fields()).run_key
    before = digest(source)

    summary = merge_stores(dest, [source])

    (result,) = summary.sources
    assert result.imported == done and result.replaced == {} and result.conflicts == {} and result.identical == []
    assert result.unfinished == {live: "running at 500 of 1000 frames; it resumes where its checkpoint is",
                                 queued: "pending at 0 of 1000 frames; not started there"}
    assert digest(source) == before
    expected = {key: ({**run, "checkpoint_path": None, "checkpoint_frames": None}, points)
                for key, (run, points) in contents(source).items() if key in done}
    assert contents(dest) == expected
    (run, _) = expected[done[0]]
    assert (run["machine"], run["versions"], run["resolved_config"]) == (
        {"hostname": "far"}, {"torch": "2.13.0"}, {"seed": 1, "n_envs": 4})
    assert (run["status"], run["wall_time_s"], run["stop_at_return"]) == ("finished", 3.0, 9.5)
    # created_at and the evaluations' created_at travel too: the rows are the source's rows
    columns = "run_key, created_at, updated_at"
    assert (_rows(dest, f"SELECT {columns} FROM runs ORDER BY run_key")
            == _rows(source, f"SELECT {columns} FROM runs WHERE status = 'finished' ORDER BY run_key"))
    assert len(_rows(dest, "SELECT created_at FROM evaluations")) == 4


def _rows(db: Path, sql: str) -> list[tuple]:
    conn = sqlite3.connect(f"{db.absolute().as_uri()}?mode=ro", uri=True)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_pending_run_is_replaced_identical_skipped_and_differing_finished_run_kept_bit_for_bit(tmp_path):
    source, dest = tmp_path / "far.db", tmp_path / "here.db"
    pending, same, clash = spec(1), spec(2), spec(3)
    for run in (pending, same, clash):
        add_run(source, run, [1.0, 2.0 + run.seed])
    with ResultStore(dest) as store:
        store.register_run(pending.store_fields())
    add_run(dest, same, [1.0, 4.0], machine="here")  # same results, trained again here: other wall times too
    with ResultStore(dest) as store:
        store.record_evaluation(store.run_by_key(same.run_key).id, 1000, 4.0, [4.0, 2.0], 9.0, None, finished=True)
    add_run(dest, clash, [1.0, 7.0], machine="here")
    ours_before = contents(dest)

    (result,) = merge_stores(dest, [source]).sources

    assert result.imported == [] and result.identical == [same.run_key]
    assert result.replaced == {pending.run_key: "ours was pending and had not started"}
    assert result.conflicts == {
        clash.run_key: "both stores finished this run with different evaluation points; kept ours"}
    after = contents(dest)
    assert after[same.run_key] == ours_before[same.run_key]
    assert after[clash.run_key] == ours_before[clash.run_key]
    assert after[pending.run_key][0]["machine"] == {"hostname": "far"}
    assert [p[1] for p in after[pending.run_key][1]] == [1.0, 3.0]
    # merging again changes nothing: every run is now identical
    again = digest(dest)
    (result,) = merge_stores(dest, [source]).sources
    assert result.identical == [pending.run_key, same.run_key] and list(result.conflicts) == [clash.run_key]
    assert contents(dest) == after and digest(dest) == again


def test_started_unfinished_run_is_kept_unless_replace_unfinished(tmp_path):
    source, dest = tmp_path / "far.db", tmp_path / "here.db"
    run = spec(5)
    add_run(source, run, [1.0, 2.0])
    add_run(dest, run, [0.5], finished=False, machine="here", checkpoint="here/ck.f500.zip")
    ours = contents(dest)

    (result,) = merge_stores(dest, [source]).sources
    assert result.conflicts == {run.run_key: "ours is running at 500 frames; kept ours (--replace-unfinished "
                                             "takes the finished run instead)"}
    assert contents(dest) == ours

    (result,) = merge_stores(dest, [source], replace_unfinished=True).sources
    assert result.conflicts == {} and result.replaced == {
        run.run_key: "ours is running at 500 frames (--replace-unfinished); its checkpoint here/ck.f500.zip stays "
                     "on disk but is no longer used"}
    ((record, points),) = contents(dest).values()
    assert (record["status"], record["machine"], record["checkpoint_path"]) == ("finished", {"hostname": "far"}, None)
    assert [p[0] for p in points] == [500, 1000]


def _set_preset_hash(db: Path, value: str) -> None:
    """What a buggy version might write: a run key that the stored configuration does not give."""
    conn = sqlite3.connect(db)
    conn.execute("UPDATE runs SET preset_hash = ?", (value,))
    conn.commit()
    conn.close()


def test_differing_stored_configuration_is_a_conflict(tmp_path):
    source, dest = tmp_path / "far.db", tmp_path / "here.db"
    key = add_run(source, spec(1), [1.0])
    with ResultStore(dest) as store:
        store.register_run(spec(1).store_fields())
    _set_preset_hash(dest, "zzz")
    before = digest(dest)
    (result,) = merge_stores(dest, [source]).sources
    assert result.conflicts == {key: "the stored configuration differs (preset_hash); kept ours"}
    assert digest(dest) == before
    assert _rows(dest, "SELECT run_key, status, preset_hash FROM runs") == [(key, "pending", "zzz")]

    _set_preset_hash(source, "zzz")  # a source run whose key its configuration does not give is never imported
    for destination in (dest, tmp_path / "new.db"):
        (result,) = merge_stores(destination, [source]).sources
        assert result.conflicts[key].startswith("its stored configuration gives another run key (MetaTMaze-v0__RNN__")
    assert digest(dest) == before and _rows(tmp_path / "new.db", "SELECT * FROM runs") == []


def test_merge_into_a_store_a_live_sweep_holds_is_refused(tmp_path):
    source, dest = tmp_path / "far.db", tmp_path / "here.db"
    add_run(source, spec(1), [1.0])
    ResultStore(dest).close()
    before = digest(dest)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from metarl_agents.leaderboard.lock import SweepLock\n"
                               f"SweepLock({str(dest)!r}).acquire(); print('held', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(StoreInUse, match=rf"in use by another sweep \(host .*, pid {holder.pid}, "):
            merge_stores(dest, [source])
    finally:
        holder.communicate("")
    assert digest(dest) == before


def _damage(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[4096:] = b"\xff" * (len(data) - 4096)  # every page but the header page
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("make_bad, message", [
    (_damage, "is damaged"),
    (lambda path: path.write_text("not a store"), "is not an SQLite database"),
])
def test_bad_source_gives_a_clear_error_and_leaves_everything_unchanged(tmp_path, make_bad, message):
    good, bad, dest = tmp_path / "good.db", tmp_path / "bad.db", tmp_path / "here.db"
    add_run(good, spec(1), [1.0])
    add_run(bad, spec(2), [2.0])
    make_bad(bad)
    add_run(dest, spec(3), [3.0])
    hashes = {path: digest(path) for path in (good, bad, dest)}
    with pytest.raises(StoreError, match=message):
        merge_stores(dest, [good, bad])
    assert {path: digest(path) for path in (good, bad, dest)} == hashes
    with pytest.raises(StoreError, match=message):
        merge_stores(tmp_path / "new.db", [good, bad])
    assert not (tmp_path / "new.db").exists()


def test_a_failure_part_way_leaves_the_destination_as_it_was(tmp_path, monkeypatch):
    source, dest = tmp_path / "far.db", tmp_path / "here.db"
    for seed in (1, 2, 3):
        add_run(source, spec(seed), [1.0, 2.0])
    add_run(dest, spec(4), [3.0])
    read = merge._read_source

    def third_run_breaks(path, destination):
        runs = read(path, destination)
        runs[2].raw[1][1]["meta_episode_return"] = None  # NOT NULL: fails after two runs were written
        return runs

    monkeypatch.setattr(merge, "_read_source", third_run_breaks)
    before = digest(dest)
    with pytest.raises(StoreError, match="NOT NULL constraint failed: evaluations.meta_episode_return"):
        merge_stores(dest, [source])
    assert digest(dest) == before and list(contents(dest)) == [spec(4).run_key]


def test_older_schema_source_is_read_with_the_upgrade_defaults(tmp_path):
    source, dest = tmp_path / "old.db", tmp_path / "here.db"
    key = add_run(source, spec(1), [1.0, 2.0])
    conn = sqlite3.connect(source)
    conn.executescript("ALTER TABLE runs DROP COLUMN policy_kwargs; ALTER TABLE runs DROP COLUMN resolved_config; "
                       "UPDATE schema_version SET version = 2;")
    conn.close()
    before = digest(source)
    (result,) = merge_stores(dest, [source]).sources
    assert result.imported == [key] and digest(source) == before
    record = contents(dest)[key][0]
    assert (record["policy_kwargs"], record["resolved_config"], record["patience"]) == ({}, None, 2)


def test_source_that_is_the_destination_is_refused(tmp_path):
    dest = tmp_path / "here.db"
    add_run(dest, spec(1), [1.0])
    with pytest.raises(ValueError, match="is the destination store itself"):
        merge_stores(dest, [tmp_path / "." / "here.db"])


def test_cli_round_trip_and_report_of_the_merged_store(tmp_path, capsys):
    far, other, dest, out = tmp_path / "far.db", tmp_path / "other.db", tmp_path / "here.db", tmp_path / "report"
    imported = [add_run(far, spec(seed, agent), [2.0, 3.0 + seed]) for seed in (1, 2) for agent in ("RNN", "Max")]
    live = add_run(far, spec(3), [1.0], finished=False)
    clash = add_run(other, spec(1), [5.0, 5.0])

    assert main(["merge", "--db", str(dest), str(far), str(other)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == f"{far}: 4 imported, 0 replaced, 0 identical, 0 conflicts, 1 unfinished skipped"
    assert printed[1:5] == [f"  imported {key}" for key in imported]
    assert printed[5] == f"  skipped {live}: running at 500 of 1000 frames; it resumes where its checkpoint is"
    assert printed[6] == f"{other}: 0 imported, 0 replaced, 0 identical, 1 conflicts, 0 unfinished skipped"
    assert printed[7] == (f"  CONFLICT {clash}: both stores finished this run with different evaluation points; "
                          "kept ours")
    assert printed[8] == f"4 runs written to {dest}; 1 conflicts left the destination's runs as they were"

    assert main(["report", "--db", str(dest), "--out", str(out)]) == 0
    rows = [line.split(",")[4:10] for line in (out / "evaluations.csv").read_text().splitlines()[1:]]
    assert sorted(rows) == sorted([agent, "0.001", str(seed), "finished", str(frames), str(value)]
                                  for agent in ("RNN", "Max") for seed in (1, 2)
                                  for frames, value in ((500, 2.0), (1000, 3.0 + seed)))
    markdown = (out / "leaderboard.md").read_text()
    assert "- Runs: 4 finished, 0 unfinished" in markdown and "- Machine: far" in markdown

    with pytest.raises(SystemExit) as exit_info:
        main(["merge", "--db", str(dest), str(tmp_path / "missing.db")])
    assert exit_info.value.code == 2
    assert f"metarl-bench merge: error: source store {tmp_path / 'missing.db'} does not exist" in capsys.readouterr().err


def test_a_source_with_columns_the_destination_lacks_is_refused_and_nothing_is_written(tmp_path):
    """Column names reach the INSERT statement, so a source's extra (possibly crafted) column is refused."""
    source, dest = tmp_path / "far.db", tmp_path / "here.db"
    add_run(source, spec(1), [1.0])
    add_run(dest, spec(2), [2.0])
    with sqlite3.connect(source) as conn:
        conn.execute('ALTER TABLE runs ADD COLUMN "x) VALUES (1); DROP TABLE runs; --" TEXT')
    before = digest(dest)

    with pytest.raises(StoreError, match="columns this store lacks"):
        merge_stores(dest, [source])
    assert digest(dest) == before


def test_envs_and_agents_take_a_part_of_the_sources_and_a_misspelt_name_is_refused(tmp_path, capsys):
    source, dest = tmp_path / "study.db", tmp_path / "here.db"
    latent = [replace(spec(seed, agent), env_id="MetaTMazeLatent-v0", preset_name="MetaTMazeLatent-v0")
              for seed in (1, 2) for agent in ("RNN", "Max", "SplAgger-minGRU")]
    for run in latent:
        add_run(source, run, [1.0, 2.0], checkpoint=None)  # a checkpoint would not travel
    add_run(source, spec(1, "Max"), [3.0, 4.0])
    before = digest(source)

    summary = merge_stores(dest, [source], envs=["MetaTMazeLatent-v0"], agents=["RNN", "Max"])
    wanted = [run.run_key for run in latent if run.agent in ("RNN", "Max")]
    assert summary.sources[0].imported == wanted
    assert sorted(contents(dest)) == sorted(wanted)
    assert contents(dest) == {key: value for key, value in contents(source).items() if key in wanted}
    assert digest(source) == before

    after = digest(dest)
    with pytest.raises(ValueError, match=r"no source run has agent 'Splagger'; the sources hold: Max, RNN, "
                                         r"SplAgger-minGRU"):
        merge_stores(dest, [source], agents=["Splagger"])
    with pytest.raises(SystemExit):
        main(["merge", "--db", str(dest), str(source), "--envs", "MetaTMaze-v1"])
    assert "no source run has environment 'MetaTMaze-v1'" in capsys.readouterr().err
    assert digest(dest) == after

    assert main(["merge", "--db", str(dest), str(source), "--envs", "MetaTMaze-v0"]) == 0
    assert "1 imported" in capsys.readouterr().out
    assert len(contents(dest)) == len(wanted) + 1
