"""Seconds per Cheetah meta-iteration of the code in the current directory, at its default protocol.

    python benchmarks/bomrl_mujoco/seconds_per_iteration.py alg2|maml|... [--task dir|vel] [--iterations N]

Run it from checkouts of the versions to compare (or with ``PYTHONPATH`` pointing at each), interleaved,
on a machine with nothing else running (pause long runs with SIGSTOP / SIGCONT). One untimed iteration
first (it also seeds the observation normaliser where the protocol does), then ``--iterations`` timed
ones (default 2) on Cheetah-Dir (default) or Cheetah-Vel; prints JSON.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from metarl_agents.bomrl.mujoco_protocol import CHEETAH_TASKS, METHODS, CheetahMetaLearner, CheetahProtocol


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("method", choices=METHODS)
    parser.add_argument("--task", choices=CHEETAH_TASKS, default="dir")
    parser.add_argument("--iterations", type=int, default=2, help="timed meta-iterations (default 2)")
    args = parser.parse_args(argv)
    if args.iterations < 1:
        parser.error(f"--iterations must be >= 1, got {args.iterations}")
    torch.set_num_threads(1)
    learner = CheetahMetaLearner(CheetahProtocol(task=args.task, method=args.method), seed=0)
    learner.meta_iteration()
    seconds = []
    for _ in range(args.iterations):
        start = time.perf_counter()
        learner.meta_iteration()
        seconds.append(time.perf_counter() - start)
    print(json.dumps({"method": args.method, "task": args.task, "seconds": seconds}))


if __name__ == "__main__":
    main()
