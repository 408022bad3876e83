"""Seconds per BO-MRL meta-iteration on Cheetah-Vel: the batched learner against the per-env wrapper.

    python benchmarks/bomrl_iteration_speed.py [--tasks 2] [--rounds 2]

Both run Alg1 with the paper's batch sizes (20 pre-, 100 post-adaptation trajectories of 200 steps,
50 inner Adam steps, CG hypergradient, TRPO meta-step) on ``--tasks`` tasks, without continuation
rollouts (the wrapper has none), one torch thread; rounds alternate the two, best of each is printed.
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np
import torch

from metarl_agents.bomrl.mujoco_protocol import CheetahMetaLearner, CheetahProtocol


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    learner = CheetahMetaLearner(CheetahProtocol(task="vel", method="alg1", continuation=0,
                                                 tasks_per_iteration=args.tasks), seed=0)
    wrapper = learner.agent  # the same policy and settings, driven by BOMRL.meta_step over gym.make envs
    envs = [gym.make("MetaCheetahVel-v0", velocity_range=(0.0, 2.0)) for _ in range(wrapper.config.n_trajectories)]
    tasks = [np.array([v]) for v in np.linspace(0.5, 1.5, args.tasks)]
    best = {"batched": np.inf, "wrapper": np.inf}
    for _ in range(args.rounds):
        start = time.perf_counter()
        learner.meta_iteration()
        best["batched"] = min(best["batched"], time.perf_counter() - start)
        start = time.perf_counter()
        wrapper.meta_step(envs, tasks)
        best["wrapper"] = min(best["wrapper"], time.perf_counter() - start)
    print(f"{args.tasks} tasks: batched learner {best['batched']:.1f} s, BOMRL.meta_step over single envs "
          f"{best['wrapper']:.1f} s, ratio {best['wrapper'] / best['batched']:.1f}x")


if __name__ == "__main__":
    main()
