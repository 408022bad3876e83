"""Speed of the hypernetwork head with bfloat16 autocast against float32 (forward + backward), as a ratio.

    python benchmarks/bf16_head.py --rounds 5

Rows of 16 are a rollout step of 16 envs; 2,800 are one minibatch of the T-maze preset (16 × 700 / 4).
bf16 only pays where the CPU has bf16 instructions (``lscpu`` shows avx512_bf16 or amx_bf16).
"""

from __future__ import annotations

import argparse
import os
import time

import torch as th

from metarl_agents.heads import HyperHead


def seconds(head: HyperHead, s: th.Tensor, z: th.Tensor, repeats: int) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
        actor, value = head(s, z)
        (actor.sum() + value.sum()).backward()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds; the best of each is kept")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    th.set_num_threads(args.threads)
    th.manual_seed(0)
    head = HyperHead(obs_dim=10, latent_dim=24, action_dim=4, discrete=True)
    print(f"torch {th.__version__}, {args.threads} thread(s), load average {os.getloadavg()[0]:.2f}")
    for rows, repeats in ((16, 20), (2800, 1)):  # bf16 without CPU support is slow: keep the run short
        s, z = th.randn(rows, 10), th.randn(rows, 24, requires_grad=True)
        best = {False: float("inf"), True: float("inf")}
        for _ in range(args.rounds):
            for bf16 in best:
                head.autocast_bf16 = bf16
                best[bf16] = min(best[bf16], seconds(head, s, z, repeats))
        print(f"{rows:>5} rows: float32 {best[False] * 1e3:8.3f} ms, bf16 {best[True] * 1e3:8.3f} ms, "
              f"bf16 speed-up {best[False] / best[True]:.2f}x")


if __name__ == "__main__":
    main()
