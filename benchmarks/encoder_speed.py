"""Scan encoders against the GRU, side by side in one run: encoder passes and MetaPPO training frames/s.

(a) forward + backward of the encoder alone over 700 steps x 16 copies, input 80, hidden 256, two
    trial starts per copy (``bench_encoders.py``'s pass); target >= 5x the GRU for the scan encoders.
(b) end-to-end MetaPPO on MetaTMaze-v0 (16 envs, ``n_steps`` 700, 2 epochs x 4 minibatches, the
    preset's PPO settings) with the plain MLP head: each encoder alone against ``RNN`` (the GRU).

    python benchmarks/encoder_speed.py                  # both, 3 rounds, 1 torch thread
    python benchmarks/encoder_speed.py --skip-trainer --rounds 5
    python benchmarks/encoder_speed.py --device cuda    # the same comparison on a GPU

Every variant is built and warmed up first; each round then times every variant once, in turn, and
each variant's best round is reported, so a changing load on a shared machine treats them alike.
The machine's load average is printed with the figures.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch as th

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_encoders import CHUNK, HIDDEN, N_ENVS, encoder_pass  # noqa: E402
from trainer_speed import measure, meta_ppo  # noqa: E402

from metarl_agents.memory.encoders import SCAN_ENCODERS  # noqa: E402
from metarl_agents.policies import SCAN_MODEL_NAMES  # noqa: E402


def best_seconds(passes: dict, rounds: int, device: str = "cpu") -> dict[str, float]:
    # A GPU runs kernels asynchronously: wait for them before reading the clock.
    sync = th.cuda.synchronize if th.device(device).type == "cuda" else (lambda: None)
    best = dict.fromkeys(passes, float("inf"))
    for run in passes.values():
        run()  # warm-up
    for _ in range(rounds):
        for name, run in passes.items():
            sync()
            start = time.perf_counter()
            run()
            sync()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--encoders", nargs="+", default=list(SCAN_ENCODERS), choices=list(SCAN_ENCODERS))
    parser.add_argument("--skip-trainer", action="store_true", help="only the encoder passes (a)")
    parser.add_argument("--device", default="cpu", help="torch device for both parts, e.g. cuda (default: cpu)")
    args = parser.parse_args()
    th.set_num_threads(args.threads)
    print(f"load average before: {os.getloadavg()}")
    passes = {name: encoder_pass(name, args.device) for name in ["gru", *args.encoders]}
    seconds = best_seconds(passes, args.rounds, args.device)
    print(f"\n(a) encoder forward + backward, {CHUNK} x {N_ENVS}, hidden {HIDDEN}, best of {args.rounds}, "
          f"{args.threads} thread(s), {args.device}")
    for name, value in seconds.items():
        print(f"  {name:8s} {value * 1e3:8.1f} ms   {seconds['gru'] / value:5.2f}x the GRU")
    if not args.skip_trainer:
        agents = ["RNN", *[SCAN_MODEL_NAMES[name] for name in args.encoders]]
        models = {agent: meta_ppo("MetaTMaze-v0", 700, agent, device=args.device, head="mlp") for agent in agents}
        fps = measure(models, args.rounds)
        print(f"\n(b) MetaPPO on MetaTMaze-v0, plain MLP head, {args.device}, frames/s (best of {args.rounds} updates)")
        for agent, value in fps.items():
            print(f"  {agent:8s} {value:8.0f} frames/s   {value / fps['RNN']:5.2f}x the GRU (RNN)")
    print(f"\nload average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
