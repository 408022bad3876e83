"""Leaderboard checkpoints: a digest refuses damaged files, and the store can only name files of its own run."""

from __future__ import annotations

import io
import json
import sqlite3
import sys
import warnings
from pathlib import Path

import pytest
import torch as th

sys.path.insert(0, str(Path(__file__).parent))

from leaderboard_fakes import TINY_ENV_KWARGS, TINY_OVERRIDES, FakeTrainer, crash_on_second_evaluation  # noqa: E402

from metarl_agents.leaderboard.checkpoint import (  # noqa: E402
    MAGIC,
    CheckpointError,
    CheckpointWarning,
    read_checkpoint,
    write_checkpoint,
)
from metarl_agents.leaderboard.grid import RunSpec, build_grid  # noqa: E402
from metarl_agents.leaderboard.runner import MetaPPOTrainer, checkpoint_dir, run_grid  # noqa: E402
from metarl_agents.leaderboard.store import ResultStore  # noqa: E402

ENV_KWARGS, OVERRIDES = TINY_ENV_KWARGS, TINY_OVERRIDES




def _crashed_real_run(tmp_path):
    db = tmp_path / "results.db"
    (spec,) = build_grid(["MetaTMaze-v0"], ["RNN"], ["1"], [1e-3], frames=96, eval_every=32, n_eval_tasks=2,
                         env_kwargs=ENV_KWARGS, overrides=OVERRIDES)
    assert not run_grid([spec], db, trainer=crash_on_second_evaluation(), show_progress=False).ok
    with ResultStore(db, readonly=True) as store:
        checkpoint = db.parent / store.run_by_key(spec.run_key).checkpoint_path
    return db, spec, checkpoint


def _tensor_offset(raw: bytes, checkpoint: Path, spec: RunSpec) -> int:
    """Where the bytes of the policy's first weight matrix lie in the file."""
    state = read_checkpoint(checkpoint, MetaPPOTrainer().identity(spec))["policy"]
    weight = next(value for value in state.values() if value.ndim == 2 and value.numel() >= 16)
    offset = raw.find(weight.numpy().tobytes())
    assert offset > 0
    return offset


@pytest.mark.parametrize("damage", ["eight flipped bytes", "a whole tensor of NaN"])
def test_damaged_checkpoint_is_refused_not_resumed_nor_called_divergence(tmp_path, damage):
    db, spec, checkpoint = _crashed_real_run(tmp_path)
    raw = bytearray(checkpoint.read_bytes())
    assert raw.startswith(MAGIC)
    offset = _tensor_offset(bytes(raw), checkpoint, spec)
    if damage == "eight flipped bytes":
        raw[offset:offset + 8] = bytes(b ^ 0xFF for b in raw[offset:offset + 8])
    else:
        raw[offset:offset + 64] = b"\xff" * 64
    checkpoint.write_bytes(bytes(raw))
    # torch alone would load the damaged tensor without noticing: only the digest catches it.
    payload = bytes(raw[len(MAGIC) + 65:])
    assert th.load(io.BytesIO(payload), weights_only=True)["format"] == "metarl-run-checkpoint"

    summary = run_grid([spec], db, show_progress=False)
    error = summary.failed[spec.run_key]
    assert "is damaged: its SHA-256 does not match" in error and "--restart-failed" in error
    assert "diverged" not in error and "learning rate" not in error
    with ResultStore(db, readonly=True) as store:
        record = store.run_by_key(spec.run_key)
        assert record.status == "failed" and [p.frames for p in store.evaluations(record.id)] == [32]
    assert run_grid([spec], db, show_progress=False, restart_failed=True).ok  # the way out


def test_checkpoint_digest_round_trip_and_truncation(tmp_path):
    path = tmp_path / "c.pt"
    state = {"weights": th.arange(6.0).reshape(2, 3), "frames": 32}
    write_checkpoint(path, {"run_key": "k"}, state)
    loaded = read_checkpoint(path, {"run_key": "k"})
    assert th.equal(loaded["weights"], state["weights"]) and loaded["frames"] == 32
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(CheckpointError, match="is damaged: its SHA-256 does not match"):
        read_checkpoint(path, {"run_key": "k"})
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temporary file left


def test_checkpoint_of_the_first_format_still_resumes_with_a_warning(tmp_path):
    path = tmp_path / "old.pt"
    th.save({"format": "metarl-run-checkpoint", "version": 1, "identity": {"run_key": "k"}, "state": {"x": 1}}, path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert read_checkpoint(path, {"run_key": "k"}) == {"x": 1}
    assert any(issubclass(w.category, CheckpointWarning) and "predates checkpoint digests" in str(w.message)
               for w in caught)


def _fake_spec() -> RunSpec:
    return RunSpec(env_id="MetaTMaze-v0", agent="RNN", seed=73, learning_rate=1e-3, frames=1000, paper_frames=1_500_000,
                   preset_name="MetaTMaze-v0", preset_hash="abc", eval_every=250, n_eval_tasks=4)


@pytest.mark.parametrize("stored", ["../out/backup.pt", "ABSOLUTE", "OTHER_RUN", "SYMLINK"])
def test_store_can_only_name_checkpoints_of_its_run_inside_the_checkpoint_folder(tmp_path, stored):
    root = tmp_path / "work"
    db, log, run = root / "r.db", str(tmp_path / "log"), _fake_spec()
    root.mkdir()
    assert not run_grid([run], db, trainer=FakeTrainer(log, crash_after_evals={run.run_key: 2}),
                        show_progress=False).ok
    backup = tmp_path / "out" / "backup.pt"
    backup.parent.mkdir()
    backup.write_text(json.dumps({"key": run.run_key, "frames": 900}))  # a file the sweep did not write
    directory = checkpoint_dir(db)
    if stored == "ABSOLUTE":
        stored = str(backup)
    elif stored == "OTHER_RUN":
        stored = f"{directory.name}/{run.run_key}x.f500.pt"
        (directory / f"{run.run_key}x.f500.pt").write_text(backup.read_text())
    elif stored == "SYMLINK":
        (directory / f"{run.run_key}.f900.pt").symlink_to(backup)
        stored = f"{directory.name}/{run.run_key}.f900.pt"
    conn = sqlite3.connect(db)
    conn.execute("UPDATE runs SET checkpoint_path = ?", (stored,))
    conn.commit()
    conn.close()
    open(log, "w").close()
    summary = run_grid([run], db, trainer=FakeTrainer(log), show_progress=False)
    error = summary.failed[run.run_key]
    assert ("is not one of its files" in error or "leads outside" in error) and "--restart-failed" in error
    assert FakeTrainer(log).lines() == []  # nothing was resumed from it
    assert backup.read_text() == json.dumps({"key": run.run_key, "frames": 900})  # and nothing deleted
