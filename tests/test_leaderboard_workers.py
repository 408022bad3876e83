"""Workers never open the store: they send messages, the driver records them (both backends); checkpoint
locations (beside the store, a folder, the driver); the CUDA memory record and where a run ran."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # leaderboard_fakes, also for spawned workers

from leaderboard_fakes import FakeTrainer  # noqa: E402
from test_leaderboard_runner import assert_complete, grid, spec, stored  # noqa: E402

from metarl_agents.leaderboard.messages import Evaluated, Ledger, Started  # noqa: E402
from metarl_agents.leaderboard.progress import GridProgress  # noqa: E402
from metarl_agents.leaderboard.runner import cuda_memory, run_grid, train_one  # noqa: E402
from metarl_agents.leaderboard.store import ResultStore  # noqa: E402


class AuditedTrainer(FakeTrainer):
    """The fake trainer, in a worker process: before the run starts (its configuration is the first thing a
    worker asks for) an audit hook refuses any open of the store's files (database, journal, WAL, lock) and
    any SQLite connection, and logs each attempt; a probe checks that the hook is live."""

    db = ""
    driver_pid = 0

    def config(self, spec):
        if os.getpid() != self.driver_pid and not getattr(sys, "_metarl_audited", False):
            sys._metarl_audited = True
            store_files = os.path.realpath(self.db)

            def audit(event, args):
                path = args[0] if args and isinstance(args[0], str) else ""
                if event == "sqlite3.connect" or (event == "open" and path and (
                        os.path.realpath(path) == store_files or os.path.realpath(path).startswith(store_files + "-")
                        or os.path.realpath(path) == store_files + ".lock")):
                    with open(self.log + ".attempts", "a") as handle:
                        handle.write(f"{os.getpid()} {event} {os.path.basename(path)}\n")
                    raise PermissionError(f"worker opened the store: {event} {path}")

            sys.addaudithook(audit)
            try:
                open(self.db + "-probe", "w").close()
            except PermissionError:
                pass
        self._log("config", spec.run_key, os.getpid())
        return SimpleNamespace(as_dict=lambda: {"fake": True})


def test_pool_workers_never_open_the_store_and_the_store_is_the_inline_one(tmp_path):
    db, log = tmp_path / "r.db", str(tmp_path / "log")
    trainer = AuditedTrainer(log)
    trainer.db, trainer.driver_pid = str(db), os.getpid()
    specs = grid()[:4]
    summary = run_grid(specs, db, workers=2, trainer=trainer, show_progress=False)
    assert summary.ok, summary.failed
    worker_pids = {int(line[2]) for line in trainer.lines() if line[0] == "config"}
    assert worker_pids and os.getpid() not in worker_pids  # the runs' sessions ran in the pool's processes
    with open(log + ".attempts") as handle:  # the hook was live in each worker: only its probe was refused
        assert sorted(handle.read().split("\n")[:-1]) == sorted(f"{pid} open r.db-probe" for pid in worker_pids)
    assert_complete(db, specs)
    inline = tmp_path / "inline.db"
    run_grid(specs, inline, trainer=FakeTrainer(str(tmp_path / "log2")), show_progress=False)
    assert stored(db) == stored(inline)
    with ResultStore(db) as store:
        for run in store.runs():
            assert run.resolved_config == {"fake": True} and run.machine["cpu_count"] >= 1
            assert "torch" in run.versions and run.checkpoint_path == f"r.db.checkpoints/{run.run_key}.f1000.pt"


@pytest.mark.parametrize("where", ["folder", "driver"])
def test_checkpoint_locations_crash_and_resume(tmp_path, where):
    """A run that crashes resumes from its last checkpoint, wherever checkpoints live; the store names the
    file the same way (``<db>.checkpoints/<name>``)."""
    db, log = tmp_path / "r.db", str(tmp_path / "log")
    folder = tmp_path / "shared"
    choice = str(folder) if where == "folder" else "driver"
    specs = grid()[:2]
    crashing = FakeTrainer(log, crash_after_evals={specs[1].run_key: 2})
    summary = run_grid(specs, db, workers=2, trainer=crashing, show_progress=False, checkpoints=choice)
    assert list(summary.failed) == [specs[1].run_key]
    kept = folder if where == "folder" else tmp_path / "r.db.checkpoints"
    assert sorted(p.name for p in kept.iterdir()) == sorted([f"{specs[0].run_key}.f1000.pt",
                                                            f"{specs[1].run_key}.f500.pt"])
    if where == "folder":
        assert not (tmp_path / "r.db.checkpoints").exists()
    open(log, "w").close()
    summary = run_grid(specs, db, trainer=FakeTrainer(log), show_progress=False, checkpoints=choice)
    assert summary.ok and summary.finished == [specs[1].run_key]
    assert ["resume", specs[1].run_key, "500"] in FakeTrainer(log).lines()
    assert_complete(db, specs)
    assert sorted(p.name for p in kept.iterdir()) == sorted(f"{s.run_key}.f1000.pt" for s in specs)
    with ResultStore(db) as store:
        assert store.run_by_key(specs[1].run_key).checkpoint_path == f"r.db.checkpoints/{specs[1].run_key}.f1000.pt"


def test_a_missing_checkpoint_in_another_location_says_where_it_looked(tmp_path):
    db, log, run = tmp_path / "r.db", str(tmp_path / "log"), spec()
    run_grid([run], db, trainer=FakeTrainer(log, crash_after_evals={run.run_key: 2}), show_progress=False,
             checkpoints=str(tmp_path / "shared"))
    summary = run_grid([run], db, trainer=FakeTrainer(log), show_progress=False)  # forgot --checkpoints
    assert "is missing from" in summary.failed[run.run_key] and "--restart-failed" in summary.failed[run.run_key]


def test_ledger_records_each_message_and_the_cuda_footprint(tmp_path):
    run = spec()
    with ResultStore(tmp_path / "r.db") as store:
        store.register_run(run.store_fields())
        ledger = Ledger(store)
        start = ledger.handle(Started(run.run_key, {"hostname": "node-a"}, {"torch": "x"}, None))
        assert (start.finished, start.checkpoint, start.returns) == (False, None, ())
        memory = {"cuda_device": "a GPU", "cuda_peak_allocated_bytes": 123, "cuda_peak_reserved_bytes": 456}
        ledger.handle(Evaluated(run.run_key, 300, 1.5, [1.0, 2.0], 0.5, f"{run.run_key}.f300.pt",
                                machine_update=memory))
        record = store.run_by_key(run.run_key)
        assert record.machine == {"hostname": "node-a", **memory} and record.checkpoint_frames == 300
        assert [p.frames for p in store.evaluations(record.id)] == [300]
        with pytest.raises(ValueError, match="expected a plain file name"):
            ledger.handle(Evaluated(run.run_key, 500, 1.5, [1.0], 0.5, "../elsewhere.pt"))
        again = ledger.handle(Started(run.run_key, {"hostname": "node-b"}, {}, None))  # a retry elsewhere
        assert (again.checkpoint, again.checkpoint_frames, again.returns) == (f"{run.run_key}.f300.pt", 300, (1.5,))


def test_cuda_memory_is_recorded_only_for_a_model_on_cuda(tmp_path):
    assert cuda_memory(SimpleNamespace(device=SimpleNamespace(type="cpu"))) is None
    assert cuda_memory(object()) is None
    db = tmp_path / "r.db"
    train_one(spec(), db, FakeTrainer(str(tmp_path / "log")))
    with ResultStore(db) as store:
        assert not any(key.startswith("cuda") for key in store.runs()[0].machine)


def test_progress_names_where_each_run_trains(capsys):
    run = spec()
    display = GridProgress([(run, 0)], n_runs=1, n_skipped=0, enabled=False, log_lines=True)
    display.handle(("start", run.run_key, 0))
    display.handle(("where", run.run_key, "gpu-box-3 (Ray node 1a2b3c4d)"))
    display.handle(("eval", run.run_key, 300, 1.25))
    display.run_done(run.run_key, "finished", None)
    out, err = capsys.readouterr()
    assert "started: MetaTMaze-v0 SplAgger seed=73 lr=0.001 (1k frames) at 0 frames on gpu-box-3 (Ray node 1a2b3c4d)" in err
    assert out.strip().endswith(", on gpu-box-3 (Ray node 1a2b3c4d)") and "300/1k frames, return 1.250" in out
    assert "finished: MetaTMaze-v0 SplAgger seed=73 lr=0.001 (1k frames) on gpu-box-3 (Ray node 1a2b3c4d)" in err


def test_gpus_per_run_is_checked_before_anything_is_written(tmp_path):
    for backend, gpus, message in [("local", 0.5, "--gpus-per-run applies to --backend ray"),
                                   ("ray", 1.5, r"--gpus-per-run must be a fraction in \(0, 1\] or a whole number, got 1.5"),
                                   ("ray", 0.0, "got 0")]:
        with pytest.raises(ValueError, match=message):
            run_grid([spec()], tmp_path / "r.db", backend=backend, gpus_per_run=gpus)
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_stops_the_pool_and_its_runs_record_interrupted(tmp_path):
    """Ctrl-C reaches the driver and its workers; each worker's last message ("interrupted") is still recorded
    and the sweep ends instead of waiting on workers that wait for replies."""
    import signal
    import subprocess
    import time
    from collections import Counter

    db, log = tmp_path / "r.db", str(tmp_path / "log")
    code = ("from leaderboard_fakes import FakeTrainer\nfrom test_leaderboard_runner import grid\n"
            "from metarl_agents.leaderboard.runner import run_grid\n"
            f"run_grid(grid()[:2], {str(db)!r}, workers=2, trainer=FakeTrainer({log!r}, sleep=0.3), show_progress=False)")
    here = Path(__file__).parent
    driver = subprocess.Popen([sys.executable, "-c", code], start_new_session=True,  # its own process group
                              env=dict(os.environ, PYTHONPATH=os.pathsep.join([str(here.parent), str(here)])),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    # A worker logs its evaluation before the driver records the checkpoint, and starts the next one only after
    # the driver's reply; so a second evaluation of each run means both have a recorded checkpoint.
    def evaluations_per_run() -> list[int]:
        return list(Counter(line[1] for line in FakeTrainer(log).lines() if line[0] == "eval").values())

    while len(counts := evaluations_per_run()) < 2 or min(counts) < 2:
        assert time.monotonic() < deadline and driver.poll() is None
        time.sleep(0.05)
    os.killpg(driver.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole process group
    try:
        driver.wait(60)
    except subprocess.TimeoutExpired:
        driver.kill()
        raise AssertionError("the sweep did not end after Ctrl-C") from None
    with ResultStore(db) as store:
        runs = store.runs()
        assert [run.status for run in runs] == ["failed", "failed"]
        assert all(run.error == "interrupted" and run.checkpoint_frames >= 300 for run in runs)
