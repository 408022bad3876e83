"""Meta-train and meta-test BO-MRL or MAML-TRPO on Cheetah-Vel/Dir (the paper's MuJoCo protocol).

    python -m metarl_agents.bomrl.cheetah --task vel --method alg1 --seed 0 --iterations 500 --out DIR

Writes, in ``DIR``, ``{task}_{method}_seed{S}.json`` (meta-test returns per adaptation round K,
deterministic and stochastic, of the last meta-policy and, under ``meta_test_best``, of the best one:
the prior whose meta-iteration had the highest post-adaptation return, as the authors select the
checkpoint they test, meta-tested on trajectories seeded with ``S``; the training curve with, per
meta-iteration, the returns, the step's KL and its gain in the estimated post-adaptation return, and for
BO-MRL the hypergradient's cosine with the first-order direction and the count of Hessian solves that
met non-positive curvature; the settings; wall time), a ``.md`` summary and a ``.png`` plot. A checkpoint (``.ckpt``, checksummed, written atomically) after every meta-iteration
lets a killed run resume where it stopped: run the same command again (``--set nthread=T`` may
differ: MuJoCo's thread count changes no result; so may the meta-test's ``test_rounds`` and
``test_trajectories``, since it runs after the last checkpoint). ``--max-minutes`` stops
meta-training early (the meta-test still runs, and the JSON records how many iterations were done);
raising ``--iterations`` later continues the same run.

The leaderboard trains the same runs (the same meta-training loop, :mod:`metarl_agents.bomrl.meta_training`)
into its result store::

    metarl-bench run --agents BOMRL-Alg1 MAML-TRPO --envs MetaCheetahVel-v0 --iterations 500
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from metarl_agents.bomrl import checkpoint
from metarl_agents.bomrl.meta_training import (  # noqa: F401 - public here too
    EXECUTION_SETTINGS,
    MetaTrainingRun,
    iteration_line,
    protocol_settings,
    settings_difference,
)
from metarl_agents.bomrl.mujoco_protocol import METHODS, SINGLE_TASK_METHODS, TASK_IDS, CheetahProtocol

#: The paper's meta-test returns after K = 0..3 rounds (deterministic), for the reports.
PAPER = {
    ("vel", "alg1"): [-105.8, -59.6, -41.2, -33.6],
    ("vel", "alg2"): [-109.5, -61.6, -51.0, -49.6],
    ("vel", "maml"): [-129.5, -78.6, -66.6, -60.8],
    ("dir", "alg1"): [-20.9, 544.6, 584.1, 614.4],
    ("dir", "alg2"): [-39.5, 623.0, 717.9, 787.5],
    ("dir", "maml"): [-50.7, 293.2, 313.5, 315.7],
}


def run(protocol: CheetahProtocol, seed: int, iterations: int, out: Path, max_minutes: float | None = None,
        log=print) -> dict[str, Any]:
    """Meta-train to ``iterations`` (resuming from ``out``'s checkpoint), meta-test, write the results."""
    if iterations < 0:
        raise ValueError(f"iterations must be >= 0, got {iterations!r}")
    out.mkdir(parents=True, exist_ok=True)
    name = f"{protocol.task}_{protocol.method}_seed{seed}"
    ckpt = out / f"{name}.ckpt"
    training = MetaTrainingRun(protocol, seed)
    if ckpt.exists():
        state = checkpoint.load(ckpt)
        # load_state refuses a checkpoint of other settings before it changes anything (execution settings,
        # such as MuJoCo's thread count, may differ; a setting newer than the checkpoint takes its legacy value).
        try:
            training.load_state(state)
        except ValueError as exc:
            raise ValueError(f"{ckpt}: {exc}; ask for the saved values (--set KEY=VALUE) to continue it, "
                             "or use another --out") from None
        log(f"resuming {name} after {training.iterations} meta-iterations")
    start = time.time()
    stopped_early = False
    while training.iterations < iterations:
        if max_minutes is not None and time.time() - start > 60 * max_minutes:
            stopped_early = True
            break
        record = training.iterate()
        checkpoint.save(training.state(), ckpt)
        log(iteration_line(name, record))
    history = training.history
    t0 = time.time()
    test = training.meta_test()
    best = training.best
    best_test = None if best["iteration"] is None else {
        "iteration": best["iteration"], "score": best["score"], "tracked_from": best["tracked_from"],
        **training.meta_test(seed=seed, best=True)}
    training.close()
    seconds = [h["seconds"] for h in history]
    result = {
        "task": protocol.task, "method": protocol.method, "seed": seed, "env_id": protocol.env_id,
        "iterations": len(history), "iterations_requested": iterations, "stopped_early": stopped_early,
        "meta_test": test, "meta_test_best": best_test, "paper_deterministic": PAPER.get((protocol.task, protocol.method)),
        "training_curve": history, "settings": asdict(protocol),
        "wall_time": {"meta_training_s": float(np.sum(seconds)), "seconds_per_iteration": float(np.mean(seconds)) if seconds else None,
                      "meta_test_s": time.time() - t0},
        "torch_threads": torch.get_num_threads(),
    }
    (out / f"{name}.json").write_text(json.dumps(result, indent=1))
    (out / f"{name}.md").write_text(markdown(result))
    plot(result, out / f"{name}.png")
    log(f"{name}: meta-test deterministic {np.round(test['deterministic'], 1).tolist()} "
        f"stochastic {np.round(test['stochastic'], 1).tolist()}")
    return result


def markdown(result: dict[str, Any]) -> str:
    test, rounds = result["meta_test"], range(len(result["meta_test"]["deterministic"]))
    lines = [f"# {result['env_id']} {result['method']} seed {result['seed']}", "",
             f"{result['iterations']} meta-iterations, {result['wall_time']['seconds_per_iteration'] or 0:.1f} s each.", "",
             "| returns | " + " | ".join(f"K={k}" for k in rounds) + " |", "|---|" + "---|" * len(rounds)]
    lines.append("| deterministic | " + " | ".join(f"{v:.1f}" for v in test["deterministic"]) + " |")
    lines.append("| stochastic | " + " | ".join(f"{v:.1f}" for v in test["stochastic"]) + " |")
    if best := result.get("meta_test_best"):
        for kind in ("deterministic", "stochastic"):
            lines.append(f"| {kind}, best prior (iteration {best['iteration']}) | "
                         + " | ".join(f"{v:.1f}" for v in best[kind]) + " |")
    if result["paper_deterministic"] and len(result["paper_deterministic"]) == len(rounds):
        lines.append("| paper (500 it.) | " + " | ".join(f"{v:.1f}" for v in result["paper_deterministic"]) + " |")
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
    curve = result["training_curve"]
    if curve:
        its = [h["iteration"] for h in curve]
        left.plot(its, [h["pre_adaptation_return"] for h in curve], label="pre-adaptation")
        left.plot(its, [h["post_adaptation_return"] for h in curve], label="post-adaptation")
        left.legend()
    left.set(xlabel="meta-iteration", ylabel="mean return", title="meta-training")
    test = result["meta_test"]
    rounds = list(range(len(test["deterministic"])))
    right.plot(rounds, test["deterministic"], "o-", label="deterministic")
    right.plot(rounds, test["stochastic"], "s-", label="stochastic")
    paper = result["paper_deterministic"]
    if paper and len(paper) == len(rounds):
        right.plot(rounds, paper, "k--", label="paper (500 it.)")
    right.set(xlabel="adaptation rounds K", title="meta-test")
    right.legend()
    fig.suptitle(f"{result['env_id']} {result['method']} seed {result['seed']}")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=sorted(TASK_IDS), required=True)
    parser.add_argument("--method", choices=METHODS + SINGLE_TASK_METHODS, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--iterations", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--max-minutes", type=float, default=None, help="stop meta-training after this long")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (MuJoCo's stepping threads are the nthread setting)")
    names = set(protocol_settings())
    parser.add_argument("--set", nargs="*", action="extend", default=[], metavar="KEY=VALUE",
                        help=f"override protocol settings (repeatable; a later value of a setting wins), each one of {sorted(names)}")
    args = parser.parse_args(argv)
    overrides = {}
    for item in args.set:
        key, _, value = item.partition("=")
        if key not in names:
            parser.error(f"--set: unknown setting {key!r}; allowed: {sorted(names)}")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            parser.error(f"--set {key}: {value!r} is not a JSON value (strings need quotes: {key}='\"...\"')")
    torch.set_num_threads(args.threads)
    run(CheetahProtocol(task=args.task, method=args.method, **overrides), args.seed, args.iterations, args.out,
        args.max_minutes, log=lambda s: print(s, flush=True))


if __name__ == "__main__":
    main()
