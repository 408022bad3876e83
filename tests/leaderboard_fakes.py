"""A fake trainer for the leaderboard tests: same seam as the real one, no learning, exact numbers.

The fake "model" advances ``num_timesteps`` in rollouts of ``ROLLOUT`` frames, saves itself as JSON and
evaluates to a closed-form return, so the tests can check every stored number. It appends what it did
to a log file (one line per build / resume / evaluation) so tests can see which runs were trained,
skipped or resumed and from which frame, even across worker processes.
"""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

ROLLOUT = 100

# A tiny real T-maze run for tests that train MetaPPO through the runner: rollouts of 4 envs x 8 steps = 32
# frames; a 5-cell corridor, 2 episodes of at most 12 steps a trial.
TINY_ENV_KWARGS = {"length": 5, "episode_limit": 12, "episodes_per_trial": 2}
TINY_OVERRIDES = {"n_envs": 4, "n_steps": 8}


def crash_on_second_evaluation():
    """The real MetaPPO trainer, crashing at its second evaluation (after the first checkpoint)."""
    from metarl_agents.leaderboard.runner import MetaPPOTrainer

    class CrashOnSecondEvaluation(MetaPPOTrainer):
        def __init__(self) -> None:
            super().__init__()
            self.calls = 0

        def evaluate(self, model, spec):
            self.calls += 1
            if self.calls == 2:
                raise RuntimeError("simulated crash")
            return super().evaluate(model, spec)

    return CrashOnSecondEvaluation()


def fake_return(seed: int, lr: float, frames: int) -> float:
    return 1000.0 * lr + frames / 1000.0 + 0.01 * seed


class FakeModel:
    def __init__(self, key: str, seed: int, lr: float, num_timesteps: int = 0, **hooks) -> None:
        self.key, self.seed, self.lr, self.num_timesteps = key, seed, lr, num_timesteps
        self.hooks = hooks
        self.logger = None
        self.n_envs, self.n_steps = 1, ROLLOUT  # a rollout of ROLLOUT frames, as SB3 counts it

    def get_env(self):
        return None

    def learn(self, total_timesteps, callback=None, reset_num_timesteps=True, progress_bar=False):
        """Like SB3's loop: rollout start (after the previous update), rollout, rollout end."""
        assert not reset_num_timesteps
        self.hooks["log"]("learn", self.key, self.num_timesteps, total_timesteps)
        callback.init_callback(self)
        target = self.num_timesteps + total_timesteps
        while self.num_timesteps < target:
            callback.on_rollout_start()
            self.num_timesteps += ROLLOUT
            if not callback.on_step():  # SB3 ends learn() when a callback's step returns False
                return self
            kill_at = self.hooks.get("kill_at")
            if kill_at is not None and self.num_timesteps >= kill_at:
                os.kill(os.getpid(), signal.SIGKILL)  # a real, unclean death of the worker process
            time.sleep(self.hooks.get("sleep", 0.0))
            callback.on_rollout_end()
        return self



@dataclass
class FakeTrainer:
    log: str
    crash_after_evals: dict[str, int] = field(default_factory=dict)  # run_key substring -> n
    kill_at_frames: dict[str, int] = field(default_factory=dict)  # run_key substring -> frames
    sleep: float = 0.0

    def _hooks(self, key: str) -> dict:
        kill = [frames for part, frames in self.kill_at_frames.items() if part in key]
        return {"kill_at": kill[0] if kill else None, "sleep": self.sleep, "log": self._log}

    def _log(self, *fields) -> None:
        with open(self.log, "a") as handle:
            handle.write(" ".join(map(str, fields)) + "\n")

    def build(self, spec):
        self._log("build", spec.run_key)
        return FakeModel(spec.run_key, spec.seed, spec.learning_rate, **self._hooks(spec.run_key))

    def save(self, model, spec, path, final=False) -> None:
        Path(path).write_text(json.dumps({"key": spec.run_key, "frames": model.num_timesteps}))

    def resume(self, spec, checkpoint):
        from metarl_agents.leaderboard.checkpoint import CheckpointError

        try:
            saved = json.loads(Path(checkpoint).read_text())
        except ValueError as exc:
            raise CheckpointError(f"checkpoint {checkpoint} is damaged ({exc})") from exc
        if saved["key"] != spec.run_key:
            raise CheckpointError(f"checkpoint {checkpoint} belongs to another run ({saved['key']})")
        self._log("resume", spec.run_key, saved["frames"])
        return FakeModel(spec.run_key, spec.seed, spec.learning_rate, saved["frames"], **self._hooks(spec.run_key))

    def evaluate(self, model, spec, n_tasks=None):
        evals = sum(1 for line in self.lines() if line[:2] == ["eval", spec.run_key])
        for part, limit in self.crash_after_evals.items():
            if part in spec.run_key and evals >= limit:
                raise RuntimeError(f"fake crash after {limit} evaluations")
        self._log("eval", spec.run_key, model.num_timesteps, *([] if n_tasks is None else [f"tasks={n_tasks}"]))
        value = fake_return(spec.seed, spec.learning_rate, model.num_timesteps)
        return {"meta_episode_return": value, "episode_returns": [value / 2, value / 2]}

    def lines(self) -> list[list[str]]:
        if not os.path.exists(self.log):
            return []
        with open(self.log) as handle:
            return [line.split() for line in handle]
