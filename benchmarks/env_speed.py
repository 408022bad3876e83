"""Print environment steps/s: single env, Gymnasium SyncVectorEnv, native batched env, and ratios.

    python benchmarks/env_speed.py [--ids MetaTMaze-v0 ...] [--sizes 1 16 256 4096]

All figures come from one run on one machine, so the ratios are like for like.
"""

from __future__ import annotations

import argparse
import platform
import timeit

import gymnasium as gym
import numpy as np

import metarl_envs


def median_seconds(fn, number: int, repeat: int = 7) -> float:
    return float(np.median(timeit.repeat(fn, number=number, repeat=repeat))) / number


def single_step_seconds(env_id: str) -> float:
    env = gym.make(env_id).unwrapped
    env.reset(seed=0)
    actions = np.random.default_rng(0).integers(0, env.action_space.n, 1024).tolist()
    it = iter(range(10**9))

    def step():
        _, _, terminated, truncated, _ = env.step(actions[next(it) % 1024])
        if terminated or truncated:
            env.reset()

    return median_seconds(step, 2000)


def vector_step_seconds(env_id: str, n: int, mode: str | None) -> float:
    kwargs = {"vectorization_mode": mode} if mode else {}
    env = gym.make_vec(env_id, num_envs=n, **kwargs)
    env.reset(seed=0)
    actions = np.random.default_rng(0).integers(0, env.single_action_space.n, (64, n))
    it = iter(range(10**9))
    number = max(3, 20000 // n) if mode else max(20, 200000 // n)
    return median_seconds(lambda: env.step(actions[next(it) % 64]), number, repeat=5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    # MuJoCo (continuous-action) ids have their own script: benchmarks/cheetah_speed.py.
    parser.add_argument("--ids", nargs="+", default=[i for i in metarl_envs.REGISTERED_IDS
                                                     if gym.spec(i).vector_entry_point and "Cheetah" not in i])
    parser.add_argument("--sizes", nargs="+", type=int, default=[1, 16, 256, 4096])
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}, numpy {np.__version__}")
    print("| id | single step (us) | N | sync steps/s | native steps/s | native / sync |")
    print("|---|---|---|---|---|---|")
    for env_id in args.ids:
        single = single_step_seconds(env_id)
        for n in args.sizes:
            sync = vector_step_seconds(env_id, n, "sync")
            native = vector_step_seconds(env_id, n, None)
            print(f"| {env_id} | {single * 1e6:.1f} | {n} | {n / sync:,.0f} | {n / native:,.0f} | {sync / native:.1f}x |", flush=True)


if __name__ == "__main__":
    main()
