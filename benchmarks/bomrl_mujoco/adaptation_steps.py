"""How far each meta-test adaptation round moves the policy, from a checkpoint of
``python -m metarl_agents.bomrl.cheetah``: per round K and test task, the returns (deterministic and
stochastic), the standard deviation of the centred Q-values the round adapts on, and the step's size
as the mean KL(before || after) and mean |change of the action mean| on that round's states.

MAML-TRPO's adaptation is a gradient step of fixed size on unnormalised advantages, so its size grows
with the return scale of the policy it starts from; BO-MRL's lower level is bounded by its divergence
limit. This script shows which of the two a collapse after K = 1 comes from.

    python benchmarks/bomrl_mujoco/adaptation_steps.py RUN.ckpt --task dir --method maml [--set KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from metarl_agents.bomrl import checkpoint
from metarl_agents.bomrl.meta_training import MetaTrainingRun
from metarl_agents.bomrl.mujoco_protocol import CheetahProtocol
from metarl_agents.bomrl.trpo import gaussian_kl


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--task", required=True)
    parser.add_argument("--method", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="protocol settings, values in JSON (as the cheetah command's --set)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    settings = {key: json.loads(value) for key, _, value in (item.partition("=") for item in args.set)}
    protocol = CheetahProtocol(task=args.task, method=args.method, **settings)
    run = MetaTrainingRun(protocol, args.seed)
    run.load_state(checkpoint.load(args.checkpoint))
    learner, tasks = run.learner, protocol.test_tasks()
    params = [learner.agent.phi()] * len(tasks)
    print("| K | task | deterministic | stochastic | Q std | step KL | mean abs Δ(action mean) |\n|---|---|---|---|---|---|---|")
    for k in range(protocol.test_rounds + 1):
        deterministic = np.asarray(learner.collect(params, tasks, protocol.test_trajectories, deterministic=True,
                                                   continuation=False).returns.mean(1))
        data = learner.collect(params, tasks, protocol.test_trajectories)
        stochastic = np.asarray(data.returns.mean(1))
        adapted = []
        for g, task in enumerate(tasks):
            cells = [str(k), f"{task.tolist()}", f"{deterministic[g]:.1f}", f"{stochastic[g]:.1f}"]
            if k < protocol.test_rounds:
                batch = learner.batch(data, g, params[g])
                theta = learner.adapt(params[g], batch, later_round=k > 0)
                before, after = learner.agent.distribution(params[g], batch.obs), learner.agent.distribution(theta, batch.obs)
                cells += [f"{batch.advantages.std().item():.1f}", f"{gaussian_kl(*before, *after).mean().item():.2f}",
                          f"{(after[0] - before[0]).abs().mean().item():.2f}"]
                adapted.append(theta)
            else:
                cells += ["", "", ""]
            print("| " + " | ".join(cells) + " |", flush=True)
        params = adapted or params


if __name__ == "__main__":
    main()
