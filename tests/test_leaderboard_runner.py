"""Leaderboard runner bookkeeping with a fake trainer: evaluations, checkpoints, skip, resume, backends."""

from __future__ import annotations

import errno
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # leaderboard_fakes, also for spawned workers

from leaderboard_fakes import ROLLOUT, FakeTrainer, fake_return  # noqa: E402

from metarl_agents.leaderboard.grid import RunSpec  # noqa: E402
from metarl_agents.leaderboard.lock import StoreInUse  # noqa: E402
from metarl_agents.leaderboard.runner import checkpoint_dir, run_grid, train_one  # noqa: E402
from metarl_agents.leaderboard.store import ResultStore  # noqa: E402

FRAMES, EVAL_EVERY = 1000, 250
# Evaluations happen at the first rollout boundary (every 100 frames) at or past each multiple of
# eval_every, and at the end of the run.
EVAL_FRAMES = [300, 500, 800, 1000]


def spec(seed: int = 73, lr: float = 1e-3, agent: str = "SplAgger") -> RunSpec:
    return RunSpec(env_id="MetaTMaze-v0", agent=agent, seed=seed, learning_rate=lr, frames=FRAMES, paper_frames=1_500_000,
                   preset_name="MetaTMaze-v0", preset_hash="abc", eval_every=EVAL_EVERY, n_eval_tasks=4)


def grid() -> list[RunSpec]:
    return [spec(seed, lr, agent) for agent in ("SplAgger", "RNN") for seed in (73, 20) for lr in (1e-3, 3e-4)]


def stored(db) -> dict[str, tuple[str, list[int], list[float]]]:
    with ResultStore(db) as store:
        return {
            run.run_key: (run.status, [p.frames for p in store.evaluations(run.id)],
                          [p.meta_episode_return for p in store.evaluations(run.id)])
            for run in store.runs()
        }


def assert_complete(db, specs) -> None:
    runs = stored(db)
    for s in specs:
        status, frames, returns = runs[s.run_key]
        assert (status, frames) == ("finished", EVAL_FRAMES)
        assert returns == [fake_return(s.seed, s.learning_rate, f) for f in frames]


def test_train_one_evaluates_every_interval_and_keeps_only_the_latest_checkpoint(tmp_path):
    db, trainer, run = tmp_path / "r.db", FakeTrainer(str(tmp_path / "log")), spec()
    events = []
    assert train_one(run, db, trainer, events.append) == "finished"
    assert_complete(db, [run])
    with ResultStore(db) as store:
        record = store.run_by_key(run.run_key)
        assert record.checkpoint_frames == FRAMES and record.wall_time_s > 0
        assert record.machine["cpu_count"] >= 1 and "torch" in record.versions
        assert record.checkpoint_path == f"r.db.checkpoints/{run.run_key}.f{FRAMES}.pt"
        assert [p.episode_returns for p in store.evaluations(record.id)][-1] == [fake_return(73, 1e-3, 1000) / 2] * 2
    assert [p.name for p in checkpoint_dir(db).iterdir()] == [f"{run.run_key}.f{FRAMES}.pt"]
    assert events[0] == ("start", run.run_key, 0)
    assert [e[2] for e in events if e[0] == "progress"] == list(range(ROLLOUT, FRAMES + 1, ROLLOUT))
    assert [e[2] for e in events if e[0] == "eval"] == EVAL_FRAMES
    assert train_one(run, db, trainer) == "skipped"
    # one learn call over the whole budget, so learning-rate schedules see the whole run
    assert trainer.lines()[:2] == [["build", run.run_key], ["learn", run.run_key, "0", "1000"]]
    assert [line[0] for line in trainer.lines()[2:]] == ["eval"] * len(EVAL_FRAMES)


def test_crash_is_recorded_and_rerun_resumes_from_last_checkpoint(tmp_path):
    db, log = tmp_path / "r.db", str(tmp_path / "log")
    specs = grid()
    crashing = FakeTrainer(log, crash_after_evals={"RNN__seed20__lr0.001": 2})
    summary = run_grid(specs, db, trainer=crashing, show_progress=False)
    (crashed,) = summary.failed
    assert "RNN__seed20__lr0.001" in crashed and "fake crash after 2 evaluations" in summary.failed[crashed]
    assert len(summary.finished) == len(specs) - 1
    with ResultStore(db) as store:
        record = store.run_by_key(crashed)
        assert (record.status, record.checkpoint_frames) == ("failed", 500)
        assert "RuntimeError: fake crash" in record.error

    open(log, "w").close()
    summary = run_grid(specs, db, trainer=FakeTrainer(log), show_progress=False)
    assert summary.finished == [crashed] and len(summary.skipped) == len(specs) - 1 and summary.ok
    assert FakeTrainer(log).lines() == [["resume", crashed, "500"], ["learn", crashed, "500", "500"],
                                        ["eval", crashed, "800"], ["eval", crashed, "1000"]]
    assert_complete(db, specs)


def test_kill_between_checkpoint_and_commit_resumes_from_the_committed_checkpoint(tmp_path, monkeypatch):
    """The newer checkpoint file is on disk but its evaluation was never committed: the store wins."""
    db, log, run = tmp_path / "r.db", str(tmp_path / "log"), spec()
    original = ResultStore.record_evaluation
    calls = []

    def dies_on_third_commit(self, *args, **kwargs):
        calls.append(args[1])
        if len(calls) == 3:
            raise KeyboardInterrupt  # like a kill: nothing of this transaction is written
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ResultStore, "record_evaluation", dies_on_third_commit)
    with pytest.raises(KeyboardInterrupt):
        train_one(run, db, FakeTrainer(log))
    monkeypatch.setattr(ResultStore, "record_evaluation", original)
    assert sorted(p.name for p in checkpoint_dir(db).iterdir()) == [
        f"{run.run_key}.f500.pt", f"{run.run_key}.f800.pt"]
    assert stored(db)[run.run_key] == ("failed", [300, 500], [fake_return(73, 1e-3, f) for f in (300, 500)])

    assert train_one(run, db, FakeTrainer(log)) == "finished"
    assert ["resume", run.run_key, "500"] in FakeTrainer(log).lines()
    assert_complete(db, [run])


def test_killed_worker_process_loses_only_the_interval_in_progress(tmp_path):
    """SIGKILL one pool worker mid-run; the re-run skips finished runs and resumes the killed one."""
    db, log = tmp_path / "r.db", str(tmp_path / "log")
    specs = grid()[:4]
    victim = specs[1].run_key
    killer = FakeTrainer(log, kill_at_frames={victim: 700}, sleep=0.01)
    summary = run_grid(specs, db, workers=2, trainer=killer, show_progress=False)
    assert victim in summary.failed and "worker process died" in summary.failed[victim]
    before = stored(db)
    assert before[victim][:2] == ("failed", [300, 500])  # 600..700 of the third interval lost
    finished_before = {key for key, (status, _, _) in before.items() if status == "finished"}

    open(log, "w").close()
    summary = run_grid(specs, db, trainer=FakeTrainer(log), show_progress=False)
    assert summary.ok and set(summary.skipped) == finished_before
    lines = FakeTrainer(log).lines()
    assert ["resume", victim, "500"] in lines
    touched = {line[1] for line in lines}
    assert touched.isdisjoint(finished_before) and touched == {s.run_key for s in specs} - finished_before
    assert_complete(db, specs)


def test_rerun_of_a_finished_grid_trains_nothing(tmp_path):
    db, log = tmp_path / "r.db", str(tmp_path / "log")
    specs = grid()[:2]
    run_grid(specs, db, trainer=FakeTrainer(log), show_progress=False)
    open(log, "w").close()
    summary = run_grid(specs, db, workers=2, trainer=FakeTrainer(log), show_progress=False)
    assert summary.finished == [] and sorted(summary.skipped) == sorted(s.run_key for s in specs)
    assert FakeTrainer(log).lines() == []


def test_bad_backend_and_workers(tmp_path):
    with pytest.raises(ValueError, match="unknown backend 'dask'; allowed: local, ray"):
        run_grid([spec()], tmp_path / "r.db", backend="dask")
    with pytest.raises(ValueError, match="--workers must be >= 1, got 0"):
        run_grid([spec()], tmp_path / "r.db", workers=0)


def test_ray_backend_writes_the_same_store(tmp_path):
    ray = pytest.importorskip("ray", reason="Ray is optional (pip install 'metarl[ray]'); Ray backend not tested")
    import leaderboard_fakes

    # Ray workers do not import from the tests folder: ship the fake trainer's module by value.
    ray.cloudpickle.register_pickle_by_value(leaderboard_fakes)
    db, log = tmp_path / "r.db", str(tmp_path / "log")
    specs = grid()[:3]
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        summary = run_grid(specs[:2], db, backend="ray", trainer=FakeTrainer(log), show_progress=False)
        assert summary.ok and sorted(summary.finished) == sorted(s.run_key for s in specs[:2])
        # a later local run over the larger grid skips what Ray finished
        summary = run_grid(specs, db, trainer=FakeTrainer(log), show_progress=False)
        assert summary.finished == [specs[2].run_key] and len(summary.skipped) == 2
    finally:
        ray.shutdown()
    assert_complete(db, specs)


# -- one sweep per store, workers that die with their sweep, damaged checkpoints ---------------------------


def _python(code: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).parent.parent), str(Path(__file__).parent)]))
    return subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_second_sweep_is_refused_naming_the_holder_and_a_dead_holder_is_taken_over(tmp_path):
    db, log = tmp_path / "r.db", str(tmp_path / "log")
    holder = _python(f"from metarl_agents.leaderboard.lock import SweepLock\nSweepLock({str(db)!r}).acquire()\n"
                     "print('held', flush=True)\nimport time; time.sleep(120)")
    assert holder.stdout.readline().strip() == b"held"
    started = time.monotonic()
    with pytest.raises(StoreInUse, match=rf"in use by another sweep \(host {platform.node()}, pid {holder.pid}, "
                                         r"started \d{4}-\d\d-\d\d \d\d:\d\d:\d\d"):
        run_grid([spec()], db, trainer=FakeTrainer(log), show_progress=False)
    assert time.monotonic() - started < 5 and not os.path.exists(log)  # at once, nothing trained
    holder.kill()
    holder.wait()
    assert run_grid([spec()], db, trainer=FakeTrainer(log), show_progress=False).ok  # the dead holder's lock
    assert_complete(db, [spec()])


def _descendants(pid: int) -> set[int]:
    found, todo = set(), [pid]
    while todo:
        parent = todo.pop()
        for task in os.listdir(f"/proc/{parent}/task"):
            with open(f"/proc/{parent}/task/{task}/children") as handle:
                children = {int(c) for c in handle.read().split()}
            found |= children
            todo.extend(children)
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has stopped
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not os.path.exists(f"/proc/{os.getpid()}/task/{os.getpid()}/children"),
                    reason="needs Linux /proc children lists")
def test_killing_the_sweep_stops_its_pool_workers(tmp_path):
    db, log = tmp_path / "r.db", str(tmp_path / "log")
    driver = _python(
        "from leaderboard_fakes import FakeTrainer\nfrom test_leaderboard_runner import grid\n"
        "from metarl_agents.leaderboard.runner import run_grid\n"
        f"run_grid(grid()[:4], {str(db)!r}, workers=2, trainer=FakeTrainer({log!r}, sleep=0.5), show_progress=False)"
    )
    deadline = time.monotonic() + 120
    while sum(line[0] == "learn" for line in FakeTrainer(log).lines()) < 2:  # both workers are training
        assert time.monotonic() < deadline and driver.poll() is None
        time.sleep(0.05)
    workers = _descendants(driver.pid)
    assert len(workers) >= 2
    driver.kill()
    driver.wait()
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in workers)
    frames = stored(db)
    time.sleep(1.0)
    assert stored(db) == frames  # nothing writes to the store any more


def test_damaged_or_foreign_checkpoint_is_refused_and_restart_failed_trains_from_scratch(tmp_path):
    db, log, run = tmp_path / "r.db", str(tmp_path / "log"), spec()
    summary = run_grid([run], db, trainer=FakeTrainer(log, crash_after_evals={run.run_key: 2}), show_progress=False)
    assert "fake crash" in summary.failed[run.run_key]
    with ResultStore(db) as store:
        checkpoint = db.parent / store.run_by_key(run.run_key).checkpoint_path
    for damage, message in ((lambda: checkpoint.write_text("{trunc"), "is damaged"),
                            (lambda: checkpoint.write_text('{"key": "other", "frames": 500}'), "belongs to another run")):
        damage()
        summary = run_grid([run], db, trainer=FakeTrainer(log), show_progress=False)
        assert message in summary.failed[run.run_key] and "--restart-failed" in summary.failed[run.run_key]
        assert stored(db)[run.run_key][:2] == ("failed", [300, 500])  # nothing recorded from the bad file
    open(log, "w").close()
    summary = run_grid([run], db, trainer=FakeTrainer(log), show_progress=False, restart_failed=True)
    assert summary.ok and FakeTrainer(log).lines()[0] == ["build", run.run_key]  # from scratch
    assert_complete(db, [run])
    assert [p.name for p in checkpoint_dir(db).iterdir()] == [f"{run.run_key}.f{FRAMES}.pt"]


def test_failed_checkpoint_write_marks_the_run_failed_and_leaves_no_temporary_file(tmp_path):
    db, log, run = tmp_path / "r.db", str(tmp_path / "log"), spec()

    class DiskFills(FakeTrainer):
        def save(self, model, spec, path, final=False):
            if model.num_timesteps >= 500:
                Path(path).with_name(f".{Path(path).name}.123.tmp").write_text("partial")  # a killed write's
                raise OSError(errno.ENOSPC, "No space left on device")
            super().save(model, spec, path, final)

    summary = run_grid([run], db, trainer=DiskFills(log), show_progress=False)
    assert "could not write the checkpoint" in summary.failed[run.run_key]
    assert "No space left on device" in summary.failed[run.run_key]
    with ResultStore(db) as store:
        record = store.run_by_key(run.run_key)
    assert record.status == "failed" and "No space left on device" in record.error
    assert run_grid([run], db, trainer=FakeTrainer(log), show_progress=False).ok  # resumes, cleans up
    assert [p.name for p in checkpoint_dir(db).iterdir()] == [f"{run.run_key}.f{FRAMES}.pt"]


def test_ray_address_that_does_not_answer_fails_fast_and_clearly():
    from metarl_agents.leaderboard.runner import check_ray_address

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(ValueError, match=rf"Ray cluster at --address 127.0.0.1:{port} does not answer"):
        check_ray_address(f"127.0.0.1:{port}")  # nothing listens: refused at once
    with socket.socket() as silent:  # accepts connections (backlog) but never replies
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        with pytest.raises(ValueError, match="does not answer .no answer within 1 s"):
            check_ray_address(f"127.0.0.1:{silent.getsockname()[1]}", timeout=1.0)
    assert time.monotonic() - started < 10
    check_ray_address("auto")  # left to Ray


def early_stopping_spec(**changes) -> RunSpec:
    # Returns of seed 73 at lr 1e-3: 2.03, 2.23, 2.53 at 300, 500, 800; two in a row >= 2.2 end the run at
    # 800 of its 2000 frames (a run that went on would be evaluated at 1000, 1300, ...).
    return RunSpec(**{**spec().__dict__, "frames": 2000, "stop_at_return": 2.2, "patience": 2, **changes})


def test_early_stopping_ends_the_run_after_patience_evaluations_at_the_target(tmp_path):
    db, trainer, run = tmp_path / "r.db", FakeTrainer(str(tmp_path / "log")), early_stopping_spec()
    assert train_one(run, db, trainer) == "finished"
    status, frames, returns = stored(db)[run.run_key]
    assert (status, frames) == ("finished", [300, 500, 800])
    assert returns == [fake_return(73, 1e-3, f) for f in frames]
    assert [line for line in trainer.lines() if line[0] == "eval"][-1][-1] == "800"  # no evaluation after the stop
    with ResultStore(db) as store:
        record = store.run_by_key(run.run_key)
    assert (record.stop_at_return, record.patience) == (2.2, 2)
    assert record.run_key != spec().run_key and spec().run_key == early_stopping_spec(
        frames=FRAMES, stop_at_return=None, patience=None).run_key  # keys of runs without the rule are unchanged


def test_early_stopping_streak_survives_a_crash_and_a_resume(tmp_path):
    db, log, run = tmp_path / "r.db", str(tmp_path / "log"), early_stopping_spec()
    with pytest.raises(RuntimeError, match="fake crash"):
        train_one(run, db, FakeTrainer(log, crash_after_evals={run.run_key: 2}))  # dies after 300 and 500
    assert stored(db)[run.run_key][:2] == ("failed", [300, 500])
    assert train_one(run, db, FakeTrainer(log)) == "finished"  # 500 counted before the crash: stops at 800
    assert stored(db)[run.run_key][:2] == ("finished", [300, 500, 800])


def test_run_killed_after_meeting_the_rule_is_finished_without_training(tmp_path):
    db, trainer, run = tmp_path / "r.db", FakeTrainer(str(tmp_path / "log")), early_stopping_spec(patience=1)
    with ResultStore(db) as store:
        record = store.register_run(run.store_fields())
        store.record_evaluation(record.id, 500, 2.5, [2.5], 1.0, checkpoint_path=None)  # status stays running
    assert train_one(run, db, trainer) == "finished"
    assert trainer.lines() == []
    assert stored(db)[run.run_key][:2] == ("finished", [500])


def test_the_evaluation_schedule_is_known_ahead_and_the_last_three_use_the_final_tasks(tmp_path):
    from dataclasses import replace

    from metarl_agents.leaderboard.grid import evaluation_frames

    assert evaluation_frames(FRAMES, EVAL_EVERY, ROLLOUT) == EVAL_FRAMES
    # the committed store's schedules: MC-LS at 400k (every 38,400, 16 x 800 frames a rollout), T-LS at 1.5 M
    mc_ls = evaluation_frames(400_000, 38_400, 12_800)
    assert (len(mc_ls), mc_ls[-4:]) == (11, [307_200, 345_600, 384_000, 409_600])  # as stored
    t_ls = evaluation_frames(1_500_000, 44_800, 11_200)
    assert (len(t_ls), t_ls[-2:]) == (34, [1_478_400, 1_500_800])  # as stored
    with pytest.raises(ValueError, match="rollout must be an integer >= 1, got 0"):
        evaluation_frames(FRAMES, EVAL_EVERY, 0)

    db, log = tmp_path / "r.db", str(tmp_path / "log")
    run = replace(spec(), n_final_eval_tasks=64)
    assert run.run_key != spec().run_key and spec().run_key.endswith(spec().config_hash)
    crashing = FakeTrainer(log, crash_after_evals={run.run_key: 2})
    assert not run_grid([run], db, trainer=crashing, show_progress=False).ok
    assert run_grid([run], db, trainer=FakeTrainer(log), show_progress=False).ok  # resumed at 500
    evals = [line[2:] for line in FakeTrainer(log).lines() if line[0] == "eval"]
    assert evals == [["300"], ["500", "tasks=64"], ["800", "tasks=64"], ["1000", "tasks=64"]]
    with ResultStore(db) as store:
        assert store.run_by_key(run.run_key).n_final_eval_tasks == 64
