"""Instructions per Cheetah step, ours against Gymnasium's HalfCheetah-v5, counted by valgrind.

    python benchmarks/cheetah_instructions.py [--steps 2000]

A load-independent companion to ``cheetah_speed.py``: on a busy machine wall-clock ratios move by
10 % from run to run, instruction counts do not. Each env runs under ``valgrind --tool=callgrind``
twice, for 400 and for ``400 + --steps`` single-env steps (random actions, resets included); the
difference divided by ``--steps`` is the cost of one step without the start-up. BLAS threads are
pinned to one so that their idle spinning is not counted. Instructions are not time (MuJoCo's physics
retires more instructions per cycle than Python's bookkeeping), but the ratio follows the CPU-time
ratio closely. Needs valgrind; takes a few minutes (valgrind runs code about 50x slower).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile

STEPPER = """
import sys, numpy as np, gymnasium as gym, metarl_envs
env = gym.make("MetaCheetahVel-v0") if sys.argv[1] == "ours" else gym.make("HalfCheetah-v5", max_episode_steps=200)
actions = np.random.default_rng(0).uniform(-1, 1, (256, 6)).astype(np.float32)
env.reset(seed=0)
for i in range(int(sys.argv[2])):
    _, _, terminated, truncated, _ = env.step(actions[i % 256])
    if terminated or truncated:
        env.reset()
"""


def instructions(which: str, steps: int, workdir: str) -> int:
    out = os.path.join(workdir, f"callgrind.{which}.{steps}")
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    run = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, "-c", STEPPER,
                          which, str(steps)], cwd=workdir, env=env, capture_output=True, text=True, check=True)
    return int(re.search(r"Collected : (\d+)", run.stderr).group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2000)
    args = parser.parse_args()
    per_step = {}
    with tempfile.TemporaryDirectory() as workdir:  # MuJoCo logs HalfCheetah-v5's deprecated XML attribute to the cwd
        for which in ("ours", "v5"):
            per_step[which] = (instructions(which, 400 + args.steps, workdir) - instructions(which, 400, workdir)) / args.steps
    print(f"instructions per step: MetaCheetahVel-v0 {per_step['ours']:,.0f}, HalfCheetah-v5 {per_step['v5']:,.0f}, "
          f"ratio {per_step['ours'] / per_step['v5']:.3f}")


if __name__ == "__main__":
    main()
