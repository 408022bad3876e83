"""The leaderboard with the real trainer (MetaPPO) on a tiny T-maze: train, crash, resume, report."""

from __future__ import annotations

import math

import pytest
from leaderboard_fakes import TINY_ENV_KWARGS, TINY_OVERRIDES, crash_on_second_evaluation

from metarl_agents.leaderboard.checkpoint import CheckpointError
from metarl_agents.leaderboard.grid import build_grid
from metarl_agents.leaderboard.report import write_report
from metarl_agents.leaderboard.runner import MetaPPOTrainer, checkpoint_dir, run_grid
from metarl_agents.leaderboard.store import ResultStore

ENV_KWARGS, OVERRIDES = TINY_ENV_KWARGS, TINY_OVERRIDES




def test_real_trainer_run_crash_resume_and_report(tmp_path):
    db = tmp_path / "results.db"
    (spec,) = build_grid(["MetaTMaze-v0"], ["SplAgger"], ["1"], [1e-3], frames=64, eval_every=32, n_eval_tasks=2,
                         env_kwargs=ENV_KWARGS, overrides=OVERRIDES)
    (other,) = build_grid(["MetaTMaze-v0"], ["RNN"], ["2,"], [1e-3], frames=64, eval_every=32, n_eval_tasks=2,
                          env_kwargs=ENV_KWARGS, overrides=OVERRIDES)
    summary = run_grid([spec], db, trainer=crash_on_second_evaluation(), show_progress=False)
    assert "simulated crash" in summary.failed[spec.run_key]
    with ResultStore(db) as store:
        record = store.run_by_key(spec.run_key)
        assert (record.status, record.checkpoint_frames) == ("failed", 32)

    summary = run_grid([spec], db, show_progress=False)  # resumes through MetaPPO.load
    assert summary.finished == [spec.run_key]
    with ResultStore(db) as store:
        record = store.run_by_key(spec.run_key)
        points = store.evaluations(record.id)
    assert record.status == "finished" and [p.frames for p in points] == [32, 64]
    for point in points:
        assert len(point.episode_returns) == 2 and all(math.isfinite(r) for r in point.episode_returns)
        assert point.meta_episode_return == pytest.approx(sum(point.episode_returns))
    final = db.parent / record.checkpoint_path
    model = MetaPPOTrainer().resume(spec, final)  # the final checkpoint holds the trained policy
    assert model.num_timesteps == 64 and model.learning_rate == pytest.approx(1e-3)
    assert [p.name for p in checkpoint_dir(db).iterdir()] == [f"{spec.run_key}.f64.pt"]
    with pytest.raises(CheckpointError, match="belongs to another run .differs in agent, run_key, seed"):
        MetaPPOTrainer().resume(other, final)

    text = write_report(db, tmp_path / "report").read_text()
    assert "64 frames per run — **REDUCED BUDGET** (paper: 1,500,000)" in text
    assert '"n_envs": 4' in text and '"length": 5' in text


class DivergesAfterFirstEvaluation(MetaPPOTrainer):
    """The learning rate becomes infinite once the first checkpoint exists."""

    def save(self, model, spec, path, final=False):
        super().save(model, spec, path, final)
        model.lr_schedule = lambda _: float("inf")


def test_divergence_is_recorded_with_the_last_finite_checkpoint(tmp_path):
    db = tmp_path / "results.db"
    (spec,) = build_grid(["MetaTMaze-v0"], ["RNN"], ["1"], [1e-3], frames=96, eval_every=32, n_eval_tasks=2,
                         env_kwargs=ENV_KWARGS, overrides=OVERRIDES)
    summary = run_grid([spec], db, trainer=DivergesAfterFirstEvaluation(), show_progress=False)
    error = summary.failed[spec.run_key]
    assert "training diverged at update" in error and "a parameter became non-finite" in error
    assert error.endswith(f"Last finite checkpoint: {spec.run_key}.f32.pt (32 frames)")


def test_the_last_three_evaluations_use_the_final_task_count(tmp_path, monkeypatch):
    """Evaluations at 32, 64, 96 and 128 frames: the first on 2 tasks, the last three on 3 (the same seeds)."""
    import metarl_agents.training.evaluation as evaluation

    calls = []

    def recording(model, env_id, n_tasks, seed, env_kwargs=None):
        calls.append((model.num_timesteps, n_tasks, seed))
        return {"meta_episode_return": 1.0, "episode_returns": [0.5, 0.5]}

    monkeypatch.setattr(evaluation, "evaluate_meta", recording)
    (spec,) = build_grid(["MetaTMaze-v0"], ["RNN"], ["1"], [1e-3], frames=128, eval_every=32, n_eval_tasks=2,
                         n_final_eval_tasks=3, env_kwargs=ENV_KWARGS, overrides=OVERRIDES)
    assert run_grid([spec], tmp_path / "r.db", show_progress=False).ok
    assert calls == [(32, 2, spec.eval_seed), (64, 3, spec.eval_seed), (96, 3, spec.eval_seed),
                     (128, 3, spec.eval_seed)]
