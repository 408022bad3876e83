"""Leaderboard runner bookkeeping with a fake trainer: evaluations, checkpoints, skip, resume, backends."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # leaderboard_fakes, also for spawned workers

from leaderboard_fakes import ROLLOUT, FakeTrainer, fake_return  # noqa: E402

from metarl_agents.leaderboard.grid import RunSpec  # noqa: E402
from metarl_agents.leaderboard.runner import checkpoint_dir, run_grid, train_one  # noqa: E402
from metarl_agents.leaderboard.store import ResultStore  # noqa: E402

FRAMES, EVAL_EVERY = 1000, 250
# Evaluations happen at the first rollout boundary (every 100 frames) at or past each multiple of
# eval_every, and at the end of the run.
EVAL_FRAMES = [300, 500, 800, 1000]


def spec(seed: int = 73, lr: float = 1e-3, agent: str = "SplAgger") -> RunSpec:
    return RunSpec(env_id="MetaTMaze-v0", agent=agent, seed=seed, lr=lr, frames=FRAMES, paper_frames=1_500_000,
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
        assert returns == [fake_return(s.seed, s.lr, f) for f in frames]


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
    assert before[victim][:2] == ("running", [300, 500])  # 600..700 of the third interval lost
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
