"""Training throughput (pytest-benchmark): one PPO iteration (rollout + update) per call.

``python -m pytest benchmarks/bench_trainer.py``; frames/s = ``16 * N_STEPS / mean``. Compare within
a group: MetaPPO + GRU 256 against RecurrentPPO + LSTM 256 (same 64-64 head and PPO settings),
and SplAgger's hypernetwork head against its plain head. ``benchmarks/trainer_speed.py`` prints the
same comparisons as ratios with longer rollouts.
"""

from __future__ import annotations

import pytest
import torch as th
from trainer_speed import variants

N_STEPS = 200
ENV_IDS = ["MetaTMaze-v0", "MetaPlanningGame-v0"]
VARIANTS = variants(ENV_IDS, N_STEPS, splagger=False, head_comparison=True)


@pytest.fixture(autouse=True)
def one_thread():
    threads = th.get_num_threads()
    th.set_num_threads(1)
    yield
    th.set_num_threads(threads)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_training_iteration(benchmark, name):
    benchmark.group = name.split(" ")[0] if "head" not in name else "SplAgger head"
    model = VARIANTS[name]()
    frames = model.n_envs * model.n_steps
    model.learn(frames)  # warm-up
    benchmark.extra_info["frames_per_call"] = frames
    benchmark.pedantic(model.learn, args=(frames,), kwargs={"reset_num_timesteps": False}, rounds=3, iterations=1)
