"""Seconds per Cheetah-Dir meta-iteration of the code in the current directory, at its default protocol.

    python benchmarks/bomrl_mujoco/seconds_per_iteration.py alg2|maml

Run it from checkouts of the versions to compare, interleaved, on a machine with nothing else running
(pause long runs with SIGSTOP / SIGCONT). One untimed iteration first (it also seeds the observation
normaliser where the protocol does), then two timed ones; prints JSON.
"""

from __future__ import annotations

import json
import sys
import time

import torch

from metarl_agents.bomrl.mujoco_protocol import CheetahMetaLearner, CheetahProtocol


def main(method: str) -> None:
    torch.set_num_threads(1)
    learner = CheetahMetaLearner(CheetahProtocol(task="dir", method=method), seed=0)
    learner.meta_iteration()
    seconds = []
    for _ in range(2):
        start = time.perf_counter()
        learner.meta_iteration()
        seconds.append(time.perf_counter() - start)
    print(json.dumps({"method": method, "seconds": seconds}))


if __name__ == "__main__":
    main(sys.argv[1])
