"""The leaderboard's SQLite store: round trip, refusal to touch foreign files, concurrent writers."""

from __future__ import annotations

import errno
import multiprocessing
import sqlite3

import pytest

from metarl_agents.leaderboard.grid import RunSpec
from metarl_agents.leaderboard.store import APPLICATION_ID, SCHEMA_VERSION, ResultStore, StoreError, explain


def make_spec(seed: int = 73, lr: float = 1e-3, agent: str = "SplAgger", frames: int = 1000) -> RunSpec:
    return RunSpec(env_id="MetaTMaze-v0", agent=agent, seed=seed, learning_rate=lr, frames=frames, paper_frames=1_500_000,
                   preset_name="MetaTMaze-v0", preset_hash="abc123", eval_every=250, n_eval_tasks=16,
                   env_kwargs={"length": 10})


def test_round_trip(tmp_path):
    db = tmp_path / "results.db"
    spec = make_spec()
    with ResultStore(db) as store:
        run = store.register_run(spec.store_fields())
        assert run.status == "pending" and run.frames_done == 0 and run.checkpoint_path is None
        assert store.register_run(spec.store_fields()).id == run.id  # idempotent
        store.mark_running(run.id, {"hostname": "h", "cpu_count": 2}, {"torch": "2"})
        store.record_evaluation(run.id, 300, 1.5, [0.5, 1.0], 2.0, "ck/a.f300.zip")
        store.record_evaluation(run.id, 1000, 3.25, [1.25, 2.0], 7.5, "ck/a.f1000.zip", finished=True)
    with ResultStore(db) as store:  # reopened: everything persisted
        (run,) = store.runs()
        assert (run.env_id, run.agent, run.seed, run.learning_rate) == ("MetaTMaze-v0", "SplAgger", 73, 1e-3)
        assert (run.frames_budget, run.paper_frames, run.reduced) == (1000, 1_500_000, True)
        assert run.env_kwargs == {"length": 10} and run.machine == {"hostname": "h", "cpu_count": 2}
        assert run.versions == {"torch": "2"} and run.run_key == spec.run_key
        assert (run.status, run.frames_done, run.checkpoint_frames, run.wall_time_s) == ("finished", 1000, 1000, 7.5)
        assert run.checkpoint_path == "ck/a.f1000.zip"
        points = store.evaluations(run.id)
        assert [(p.frames, p.meta_episode_return, p.episode_returns) for p in points] == [
            (300, 1.5, [0.5, 1.0]), (1000, 3.25, [1.25, 2.0])]
        assert store.runs(status="pending") == [] and len(store.runs(env_id="MetaTMaze-v0")) == 1
        with pytest.raises(ValueError, match="unknown run status 'done'"):
            store.runs(status="done")


def test_new_store_creates_its_folder(tmp_path):
    db = tmp_path / "new" / "nested" / "results.db"
    with ResultStore(db) as store:
        assert store.runs() == []
    assert db.is_file()


def test_schema_version_wal_and_application_id(tmp_path):
    db = tmp_path / "results.db"
    ResultStore(db).close()
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT app, version FROM schema_version").fetchall() == [("metarl-leaderboard", SCHEMA_VERSION)]
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    conn.close()


def test_failure_is_recorded_and_run_keys_separate_budgets(tmp_path):
    with ResultStore(tmp_path / "r.db") as store:
        run = store.register_run(make_spec().store_fields())
        store.mark_failed(run.id, "Traceback: boom", 3.0)
        failed = store.run_by_key(run.run_key)
        assert (failed.status, failed.error, failed.wall_time_s) == ("failed", "Traceback: boom", 3.0)
        other = store.register_run(make_spec(frames=2000).store_fields())
        assert other.id != run.id and "frames2k-REDUCED" in other.run_key


def _foreign_sqlite(path):
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE customers (name TEXT)")
    conn.execute("INSERT INTO customers VALUES ('ada')")
    conn.commit()
    conn.close()


def _corrupted_store(path):
    ResultStore(path).close()
    data = bytearray(path.read_bytes())
    data[100:] = b"\xde\xad" * ((len(data) - 100) // 2)  # our header, garbage pages
    path.write_bytes(bytes(data))


def _our_store_with_other_version(path):
    ResultStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE schema_version SET version = 99")
    conn.commit()
    conn.close()


def _empty_sqlite(path):
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 3")  # another program's empty database: a header, no tables
    conn.close()


def _foreign_wal_database(path):
    """Another program's database in WAL mode with committed rows still in its -wal file (it was killed)."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    conn.execute("CREATE TABLE customers (name TEXT)")
    conn.execute("INSERT INTO customers VALUES ('ada')")
    wal = path.with_name(path.name + "-wal").read_bytes()
    conn.close()  # checkpoints; put the WAL back as a crash would have left it
    path.with_name(path.name + "-wal").write_bytes(wal)


def _foreign_database_with_hot_journal(path):
    _foreign_sqlite(path)
    # A rollback journal left by a crashed writer: SQLite would roll it back (rewrite the file) on open.
    path.with_name(path.name + "-journal").write_bytes(b"\xd9\xd5\x05\xf9\x20\xa1\x63\xd7" + bytes(504))


def _sidecars(path):
    return {p.name: p.read_bytes() for p in path.parent.iterdir() if p.name.startswith(path.name)}


@pytest.mark.parametrize("make, message", [
    (lambda p: p.write_text("name,score\nada,3\n"), "not an SQLite database"),
    (lambda p: p.write_bytes(bytes(range(256)) * 8), "not an SQLite database"),
    (lambda p: p.write_bytes(b""), "empty file that metarl did not write"),
    (_empty_sqlite, r"not a metarl leaderboard store \(application_id 0x0"),
    (_foreign_sqlite, r"not a metarl leaderboard store \(application_id 0x0"),
    (_foreign_wal_database, r"not a metarl leaderboard store \(application_id 0x0"),
    (_foreign_database_with_hot_journal, r"not a metarl leaderboard store \(application_id 0x0"),
    (_corrupted_store, "is damaged .SQLite: (file is not a database|database disk image is malformed)"),
    (_our_store_with_other_version, "schema version 99"),
])
@pytest.mark.parametrize("readonly", [False, True])
def test_foreign_or_damaged_file_is_refused_and_left_unchanged(tmp_path, make, message, readonly):
    db = tmp_path / "results.db"
    make(db)
    before = _sidecars(db)
    with pytest.raises(StoreError, match=message) as error:
        ResultStore(db, readonly=readonly)
    assert "\n" not in str(error.value)
    after = _sidecars(db)
    assert after == before  # the file, its -wal / -journal: as they were, and nothing added beside them


def test_leftover_wal_without_a_database_is_not_adopted(tmp_path):
    db = tmp_path / "results.db"
    db.with_name("results.db-wal").write_bytes(b"someone's WAL")
    with pytest.raises(StoreError, match="results.db-wal beside it"):
        ResultStore(db)
    assert not db.exists()


def test_unwritable_store_and_full_disk_name_the_cause(tmp_path, monkeypatch):
    db = tmp_path / "results.db"
    ResultStore(db).close()
    monkeypatch.setattr("os.access", lambda path, mode: False)  # what an immutable (chattr +i) file answers
    with pytest.raises(StoreError, match="not writable .read-only or immutable."):
        ResultStore(db)
    with ResultStore(db, readonly=True) as store:  # reading is still fine
        assert store.runs() == []
    full = sqlite3.OperationalError("database or disk is full")
    assert explain(full, db, "write").endswith("no space left on the device holding it")
    assert "no space left" in explain(OSError(errno.ENOSPC, "No space left on device"), db, "create")


def test_directory_is_refused(tmp_path):
    with pytest.raises(StoreError, match="is a directory"):
        ResultStore(tmp_path)


def _writer(db: str, worker: int, n_runs: int, n_points: int) -> None:
    with ResultStore(db) as store:
        for i in range(n_runs):
            run = store.register_run(make_spec(seed=worker * 100 + i).store_fields())
            store.mark_running(run.id, {"worker": worker}, {})
            for k in range(1, n_points + 1):
                store.record_evaluation(run.id, 10 * k, worker + k / 100, [float(k)], float(k), f"c{k}",
                                        finished=k == n_points)


def test_concurrent_writers_from_several_processes(tmp_path):
    """Processes racing to create the schema and write lose nothing and never see 'database is locked'."""
    db = str(tmp_path / "results.db")
    n_workers, n_runs, n_points = 4, 3, 15
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_writer, args=(db, w, n_runs, n_points)) for w in range(n_workers)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    assert [p.exitcode for p in processes] == [0] * n_workers
    with ResultStore(db) as store:
        runs = store.runs()
        assert sorted(r.seed for r in runs) == sorted(w * 100 + i for w in range(n_workers) for i in range(n_runs))
        for run in runs:
            assert run.status == "finished" and run.machine == {"worker": run.seed // 100}
            points = store.evaluations(run.id)
            assert [p.frames for p in points] == [10 * k for k in range(1, n_points + 1)]
            assert [p.meta_episode_return for p in points] == [run.seed // 100 + k / 100 for k in range(1, n_points + 1)]


def test_version_1_store_is_read_as_is_and_upgraded_on_a_writable_open(tmp_path):
    """A store written before early stopping keeps every run and point; read-only opens do not change it."""
    import sqlite3

    from metarl_agents.leaderboard.grid import RunSpec

    db = tmp_path / "old.db"
    run = RunSpec(env_id="MetaTMaze-v0", agent="RNN", seed=3, learning_rate=1e-3, frames=1000, paper_frames=1000,
                  preset_name="MetaTMaze-v0", preset_hash="abc", eval_every=500)
    with ResultStore(db) as store:
        record = store.register_run(run.store_fields())
        store.record_evaluation(record.id, 500, 1.5, [1.5], 2.0, checkpoint_path=None, finished=True)
    conn = sqlite3.connect(db)
    conn.executescript("ALTER TABLE runs DROP COLUMN stop_at_return; ALTER TABLE runs DROP COLUMN patience; "
                       "ALTER TABLE runs DROP COLUMN policy_kwargs; ALTER TABLE runs DROP COLUMN resolved_config; "
                       "ALTER TABLE runs DROP COLUMN n_final_eval_tasks; "
                       "ALTER TABLE runs DROP COLUMN protocol; UPDATE schema_version SET version = 1;")
    conn.close()
    before = db.read_bytes()
    with ResultStore(db, readonly=True) as store:
        (old,) = store.runs()
        assert (old.run_key, old.status, old.stop_at_return, old.patience) == (run.run_key, "finished", None, None)
        assert old.protocol == "metarl"  # every run stored before protocols existed trained as metarl
    assert db.read_bytes() == before
    with ResultStore(db) as store:
        (upgraded,) = store.runs()
        assert upgraded == old and [p.frames for p in store.evaluations(upgraded.id)] == [500]
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT version FROM schema_version").fetchone()[0] == SCHEMA_VERSION == 5
    conn.close()


def test_snapshot_for_committing_keeps_finished_runs_only_and_leaves_the_live_store_alone(tmp_path):
    import importlib.util
    from pathlib import Path

    from metarl_agents.leaderboard.grid import RunSpec

    path = Path(__file__).parents[1] / "benchmarks" / "results" / "snapshot.py"
    module_spec = importlib.util.spec_from_file_location("snapshot", path)
    snapshot = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(snapshot)
    live, committed = tmp_path / "live.db", tmp_path / "committed.db"
    with ResultStore(live) as store:
        for seed, finished in ((1, True), (2, False)):
            run = RunSpec(env_id="MetaTMaze-v0", agent="RNN", seed=seed, learning_rate=1e-3, frames=1000, paper_frames=1000,
                          preset_name="MetaTMaze-v0", preset_hash="abc", eval_every=500)
            record = store.register_run(run.store_fields())
            store.record_evaluation(record.id, 500, float(seed), [1.0], 2.0, checkpoint_path="c.pt", finished=finished)
        before = [(r.run_key, r.status) for r in store.runs()]
        assert snapshot.snapshot(live, committed) == (1, 1)
        assert [(r.run_key, r.status) for r in store.runs()] == before
    with ResultStore(committed, readonly=True) as copy:
        (run,) = copy.runs()
        assert (run.seed, run.status, run.checkpoint_path) == (1, "finished", None)
        assert [(p.frames, p.meta_episode_return) for p in copy.evaluations(run.id)] == [(500, 1.0)]
