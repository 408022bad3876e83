"""Exact resume: a real run SIGKILLed at random moments and resumed stores bit for bit the points of an
uninterrupted run with the same seed."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from metarl_agents.leaderboard.runner import checkpoint_dir
from metarl_agents.leaderboard.store import ResultStore, StoreError

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))  # resume_driver
N_POINTS = 8


def start(db: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")]))
    return subprocess.Popen([sys.executable, str(HERE / "resume_driver.py"), str(db)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def points(db: Path) -> list[tuple]:
    try:
        with ResultStore(db, readonly=True) as store:
            return [(p.frames, p.meta_episode_return, p.episode_returns) for run in store.runs()
                    for p in store.evaluations(run.id)]
    except StoreError:  # not created yet
        return []


def run_here(db: Path) -> int:
    """The driver in this process (saves a start-up), with the driver's single thread."""
    import torch
    from resume_driver import main

    threads = torch.get_num_threads()
    try:
        return main(str(db))
    finally:
        torch.set_num_threads(threads)


def kill_mid_interval(db: Path, target: int, fraction: float) -> int:
    """Start the driver, wait until ``target`` points are stored, then SIGKILL it ``fraction`` of one
    evaluation interval later; returns how many points survived.

    The delay is a fraction of the interval measured in this very process, not a fixed time: a fast
    machine finishes the whole tiny run in a few tenths of a second, and a fixed delay let the run end
    before the kill."""
    process, first_seen = start(db), {}
    while process.poll() is None:
        stored = len(points(db))
        first_seen.setdefault(stored, time.monotonic())
        if stored >= target:
            break
        time.sleep(0.005)
    if target - 1 in first_seen and target in first_seen:
        time.sleep(fraction * (first_seen[target] - first_seen[target - 1]))
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    return len(points(db))


def test_killed_at_random_moments_and_resumed_equals_uninterrupted(tmp_path):
    reference = tmp_path / "reference.db"
    assert run_here(reference) == 0
    expected = points(reference)
    assert len(expected) == N_POINTS

    db, rng = tmp_path / "killed.db", random.Random(15)
    kills = [kill_mid_interval(db, target, rng.random()) for target in (2, 5)]
    assert all(0 < n < N_POINTS for n in kills), kills  # every kill landed mid-run
    assert run_here(db) == 0

    assert points(db) == expected  # every frame count, return and per-episode return, bit for bit
    files = sorted(p.name for p in checkpoint_dir(db).iterdir())
    assert len(files) == 1 and files[0].endswith(f".f{expected[-1][0]}.pt")  # the last one only, no .tmp


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["paper", "metarl"])
@pytest.mark.parametrize("agent", ["SplAgger", "PEARL", "AMRL", "CNP"])
def test_resume_is_exact_for_every_memory(tmp_path, agent, protocol):
    import torch
    from resume_driver import TINY_POLICY, spec

    from metarl_agents.leaderboard.runner import MetaPPOTrainer

    run, trainer = spec(agent, protocol), MetaPPOTrainer(policy_kwargs=TINY_POLICY)
    assert run.protocol == protocol
    whole = trainer.build(run)
    whole.learn(96, reset_num_timesteps=False)
    trainer.save(whole, run, tmp_path / "c.pt")
    whole.learn(96, reset_num_timesteps=False)
    resumed = trainer.resume(run, tmp_path / "c.pt")
    resumed.learn(96, reset_num_timesteps=False)
    for a, b in zip(whole.policy.state_dict().values(), resumed.policy.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert trainer.evaluate(whole, run) == trainer.evaluate(resumed, run)


def test_a_checkpoint_with_the_lstm_packed_memory_state_of_earlier_versions_resumes_exactly(tmp_path):
    """Checkpoints written before the memory-policy contract hold the memory as RecurrentPPO's packed
    ``{"pi": [h, c], "vf": [h, c]}``: the flat ``[n_envs, state_size]`` state zero-padded to an even width and
    split in halves of shape ``(1, n_envs, hidden)``. Loading unpacks it; training continues bit for bit."""
    import torch
    from resume_driver import TINY_POLICY, spec

    from metarl_agents.leaderboard.checkpoint import training_state, write_checkpoint
    from metarl_agents.leaderboard.runner import MetaPPOTrainer

    run, trainer = spec("SplAgger"), MetaPPOTrainer(policy_kwargs={**TINY_POLICY, "encoder_hidden": 15})
    whole = trainer.build(run)
    whole.learn(96, reset_num_timesteps=False)
    state = training_state(whole)
    flat = state["last_states"]
    assert flat.shape == (4, whole.policy.memory.state_size) == (4, 15 + 7) and flat.abs().sum() > 0
    hidden = 11  # ceil(22 / 2), what RecurrentPPO's lstm_actor described; written out as the old code wrote it
    h, c = torch.cat([flat, torch.zeros(4, 2 * hidden - 22)], dim=1).unsqueeze(0).split(hidden, dim=2)
    state["last_states"] = {"pi": [h.clone(), c.clone()], "vf": [h.clone(), c.clone()]}
    write_checkpoint(tmp_path / "old.pt", trainer.identity(run), state)
    whole.learn(96, reset_num_timesteps=False)
    resumed = trainer.resume(run, tmp_path / "old.pt")
    assert torch.equal(resumed._last_states, flat)
    resumed.learn(96, reset_num_timesteps=False)
    for a, b in zip(whole.policy.state_dict().values(), resumed.policy.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert torch.equal(whole._last_states, resumed._last_states)
