"""Where one training update's time goes: MetaPPO + RNN against RecurrentPPO + LSTM, per discrete family.

Splits an update (rollout of ``16 x n_steps`` frames, then the training pass) into the policy's
rollout step, the env's step, the rest of the rollout loop (buffer, callbacks, info handling), the
training forward pass, its backward pass, the optimizer step and the rest of the training pass;
counts the torch operators one rollout step calls. Times are process CPU time (one torch thread), so
the machine's other load disturbs them less than wall time; per family the two trainers take turns,
one update each per round, and each figure is from a trainer's best of ``--rounds`` updates.

    python benchmarks/update_profile.py                                   # every discrete family
    python benchmarks/update_profile.py --families MetaPlanningGame-v0 --rounds 3

Prints a markdown table (the one in ``benchmarks/README.md``).
"""

from __future__ import annotations

import argparse
import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch as th
from torch.profiler import ProfilerActivity, profile
from trainer_speed import DISCRETE_FAMILIES, meta_ppo, recurrent_ppo


class Timers:
    """Process CPU time spent inside wrapped callables, per part."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    def wrap(self, owner: object, attr: str, part: str) -> Callable[[], None]:
        original = getattr(owner, attr)

        def timed(*args, **kwargs):
            start = time.process_time()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[part] += time.process_time() - start

        setattr(owner, attr, timed)
        return lambda: setattr(owner, attr, original) if owner.__dict__.get(attr) is timed else None


@contextmanager
def instrumented(model, timers: Timers) -> Iterator[None]:
    """Time the parts of ``model``'s update; ``th.autograd.backward`` is what ``loss.backward()`` calls."""
    policy = model.policy
    # MetaPPO's rollout calls step (step_flat before the memory-policy contract); RecurrentPPO's calls forward
    meta = hasattr(policy, "evaluate_sequence")
    step_name = ("step_flat" if hasattr(policy, "step_flat") else "step") if meta else "forward"
    forward_name = "evaluate_sequence" if meta else "evaluate_actions"
    undo = [
        timers.wrap(model, "collect_rollouts", "rollout"),
        timers.wrap(model, "train", "train"),
        timers.wrap(policy, step_name, "policy step"),
        timers.wrap(model.env, "step", "env step"),
        timers.wrap(policy, forward_name, "forward"),
        timers.wrap(th.autograd, "backward", "backward"),
        timers.wrap(policy.optimizer, "step", "optimizer"),
    ]
    try:
        yield
    finally:
        for restore in reversed(undo):
            restore()
        if th.autograd.__dict__.get("backward") is not th.autograd.backward:  # pragma: no cover
            raise RuntimeError("th.autograd.backward was not restored")


def profile_updates(models: dict[str, Any], rounds: int) -> dict[str, dict[str, float]]:
    """Per model, milliseconds per part of its best update (``rollout`` and ``train`` are totals); the
    models are warmed up, then take turns, one update each per round, so changing load hits all alike."""
    best: dict[str, dict[str, float]] = {name: {} for name in models}
    for model in models.values():
        model.learn(model.n_envs * model.n_steps)  # warm-up
    for _ in range(rounds):
        for name, model in models.items():
            timers = Timers()
            with instrumented(model, timers):
                model.learn(model.n_envs * model.n_steps, reset_num_timesteps=False)
            s = timers.seconds
            parts = {
                "rollout": s["rollout"], "train": s["train"], "policy step": s["policy step"],
                "env step": s["env step"], "rollout rest": s["rollout"] - s["policy step"] - s["env step"],
                "forward": s["forward"], "backward": s["backward"], "optimizer": s["optimizer"],
                "train rest": s["train"] - s["forward"] - s["backward"] - s["optimizer"],
            }
            if not best[name] or parts["rollout"] + parts["train"] < best[name]["rollout"] + best[name]["train"]:
                best[name] = parts
    return {name: {k: 1e3 * v for k, v in parts.items()} for name, parts in best.items()}


def ops_per_step(model, steps: int = 50) -> float:
    """Top-level torch operators per rollout step (the training pass is skipped while counting)."""
    n_steps, model.n_steps = model.n_steps, steps
    model.train = lambda: None
    try:
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            model.learn(model.n_envs * steps, reset_num_timesteps=False)
    finally:
        model.n_steps = n_steps
        del model.train
    return sum(1 for e in prof.events() if e.name.startswith("aten::") and e.cpu_parent is None) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--families", nargs="+", default=list(DISCRETE_FAMILIES), metavar="ENV_ID")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    th.set_num_threads(1)
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("| family | trainer | update ms | rollout ms (µs/step) | policy step | env step | rollout rest "
          "| ops/step | training ms | forward | backward | optimizer | training rest |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for env_id in args.families:
        models = {"MetaPPO": meta_ppo(env_id, None, "RNN", head="mlp", net_arch=(64, 64)),
                  "RecurrentPPO": recurrent_ppo(env_id, None)}
        for name, p in profile_updates(models, args.rounds).items():
            model = models[name]
            per_step = 1e3 * p["rollout"] / model.n_steps
            print(f"| {env_id} | {name} | {p['rollout'] + p['train']:,.0f} | {p['rollout']:,.0f} ({per_step:,.0f}) | "
                  + " | ".join(f"{p[k]:,.0f}" for k in ("policy step", "env step", "rollout rest"))
                  + f" | {ops_per_step(model):.0f} | {p['train']:,.0f} | "
                  + " | ".join(f"{p[k]:,.0f}" for k in ("forward", "backward", "optimizer", "train rest")) + " |",
                  flush=True)
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
