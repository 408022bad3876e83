"""Rollout step and MetaPPO update speed of this checkout against an earlier commit, in one run.

    python benchmarks/compare_commits.py 09dd506          # the commit before the lean rollout step

The earlier commit is checked out into a temporary git worktree; the two versions are measured in
alternating subprocesses (one torch thread each), and each variant's best is reported, so load that
changes during the run treats both alike. Older versions time ``policy.forward`` (they have no
``policy.step``) with frozen observation statistics.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

MEASURE = r'''
import inspect, json, sys, time
import numpy as np, torch as th
from gymnasium import spaces
sys.path.insert(0, "benchmarks")
th.set_num_threads(1)
from metarl_agents.policies import POLICY_REGISTRY
from metarl_envs.wrappers import transition_space
from trainer_speed import meta_ppo

out = {}
for name, head, obs_dim, n_actions in (("RNN", "mlp", 18, 5), ("SplAgger", "mlp", 5, 4), ("SplAgger", "hyper", 5, 4)):
    th.manual_seed(0)
    space = transition_space(spaces.Box(-1, 1, (obs_dim,), np.float32), spaces.Discrete(n_actions))
    kwargs = {"head": head, **({"net_arch": (64, 64)} if name == "RNN" else {})}
    policy = POLICY_REGISTRY[name](space, spaces.Discrete(n_actions), lambda _: 3e-4, **kwargs)
    policy.update_obs_norm = False
    step = getattr(policy, "step", policy.forward)
    obs, states, starts = th.randn(16, space.shape[0]), policy.initial_states(16), th.zeros(16)
    if "starts" in inspect.signature(step).parameters:  # the memory-policy contract's flat step (no starts here)
        starts = False
    with th.inference_mode():
        for _ in range(100):
            step(obs, states, starts)
        best = float("inf")
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(200):
                step(obs, states, starts)
            best = min(best, (time.perf_counter() - start) / 200)
    out[f"rollout step, {name} {head} head (us)"] = best * 1e6
for env_id, name, kwargs in (("MetaPlanningGame-v0", "RNN", {"head": "mlp", "net_arch": (64, 64)}),
                             ("MetaTMaze-v0", "RNN", {"head": "mlp", "net_arch": (64, 64)}),
                             ("MetaTMaze-v0", "SplAgger", {"head": "mlp"})):
    model = meta_ppo(env_id, 700, name, **kwargs)
    frames = model.n_envs * model.n_steps
    model.learn(frames)
    best = 0.0
    for _ in range(2):
        start = time.perf_counter()
        model.learn(frames, reset_num_timesteps=False)
        best = max(best, frames / (time.perf_counter() - start))
    out[f"MetaPPO update, {env_id} {name} {kwargs['head']} head (frames/s)"] = best
print(json.dumps(out))
'''


def measure(checkout: Path) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(checkout), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", MEASURE], cwd=checkout, env=env, capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"measuring {checkout} failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("ref", help="the earlier commit (anything git rev-parse accepts)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds per version")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "old"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-q", str(old), args.ref], check=True)
        try:
            runs: dict[str, list[dict[str, float]]] = {"old": [], "new": []}
            for _ in range(args.rounds):
                runs["old"].append(measure(old))
                runs["new"].append(measure(REPO))
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(old)], check=True)
    for key in runs["new"][0]:
        pick = min if key.endswith("(us)") else max
        before, now = pick(r[key] for r in runs["old"]), pick(r[key] for r in runs["new"])
        ratio = before / now if key.endswith("(us)") else now / before
        print(f"{key:58s} {args.ref}: {before:9.1f}   now: {now:9.1f}   {ratio:.2f}x")


if __name__ == "__main__":
    main()
