"""A tiny real leaderboard run, as a separate process that tests can SIGKILL: ``python resume_driver.py DB``.

MetaPPO on a 5-cell T-maze with a small network (so a checkpoint is ~100 kB and the run takes seconds);
one thread, so the arithmetic is the same in every process.
"""

from __future__ import annotations

import os
import sys

os.environ["OMP_NUM_THREADS"] = "1"

TINY_POLICY = {"encoder_hidden": 16, "latent_dim": 8, "state_embed": 8, "net_arch": (16, 16), "head_state_dim": 16,
               "hyper_dim": 4}
ENV_KWARGS = {"length": 5, "episode_limit": 12, "episodes_per_trial": 2}
OVERRIDES = {"n_envs": 4, "n_steps": 8}
FRAMES, EVAL_EVERY = 256, 32  # 8 rollouts, an evaluation point after each


def spec(agent: str = "RNN", protocol: str | None = None):
    from metarl_agents.leaderboard.grid import build_grid

    (run,) = build_grid(["MetaTMaze-v0"], [agent], ["7,"], [1e-3], frames=FRAMES, eval_every=EVAL_EVERY,
                        n_eval_tasks=2, env_kwargs=ENV_KWARGS, overrides=OVERRIDES, protocol=protocol)
    return run


def main(db: str, agent: str = "RNN") -> int:
    import torch

    from metarl_agents.leaderboard.runner import MetaPPOTrainer, run_grid

    torch.set_num_threads(1)
    summary = run_grid([spec(agent)], db, trainer=MetaPPOTrainer(policy_kwargs=TINY_POLICY), show_progress=False)
    return 0 if summary.ok else 1


if __name__ == "__main__":
    raise SystemExit(main(*sys.argv[1:]))
