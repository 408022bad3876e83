"""``metarl-train``: train one agent on one environment from its preset and record the curve.

Example::

    metarl-train --env MetaTMaze-v0 --agent SplAgger --frames 1.5e6 --seed 73 --lr 1e-3 --out runs/tmaze

writes ``DIR/model.zip``, the evaluation curve as ``DIR/eval.csv`` and ``DIR/eval.json`` (rewritten
after every evaluation, so an interrupted run keeps its curve) and SB3's ``progress.csv``.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path
from typing import Any

from metarl_agents.evaluation import MetaEvalCallback
from metarl_agents.presets import load_preset, tomllib

EVAL_SEED_OFFSET = 1_000_000
"""Evaluation tasks come from seeds ``seed + EVAL_SEED_OFFSET + ...``, never the training envs' seeds."""


def _key_values(pairs: list[str], flag: str) -> dict[str, Any]:
    """``KEY=VALUE`` pairs with TOML values (``3``, ``1e-3``, ``true``, ``"mlp"``; bare words are strings)."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.isidentifier():
            raise ValueError(f"{flag} takes KEY=VALUE, got {pair!r}")
        try:
            out[key] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            out[key] = value
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="metarl-train", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--env", required=True, help="environment id, e.g. MetaTMaze-v0")
    parser.add_argument("--agent", required=True, help="policy name from metarl_agents.policies.POLICY_REGISTRY")
    parser.add_argument("--frames", type=float, default=None, help="training frames (default: the preset's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, default=None, help="learning rate (default: the preset's)")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--n-envs", type=int, default=None, help="parallel envs (default: the preset's)")
    parser.add_argument("--eval-freq", type=float, default=None, help="frames between evaluations (default: preset)")
    parser.add_argument("--eval-tasks", type=int, default=None, help="tasks per evaluation (default: preset)")
    parser.add_argument("--stop-at-return", type=float, default=None, metavar="R",
                        help="stop once an evaluation's meta-episode return reaches R (e.g. 15.5 on MetaTMaze-v0)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a preset value, e.g. --set n_steps=350 (repeatable)")
    parser.add_argument("--env-kwarg", dest="env_kwargs", action="append", default=[], metavar="KEY=VALUE",
                        help="family kwarg, e.g. --env-kwarg length=10 (repeatable)")
    parser.add_argument("--policy-kwarg", dest="policy_kwargs", action="append", default=[], metavar="KEY=VALUE",
                        help="policy kwarg, e.g. --policy-kwarg head=mlp (repeatable)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads; 1 is fastest for batch-16 rollouts and when runs share cores")
    parser.add_argument("--progress-bar", action="store_true")
    parser.add_argument("-v", "--verbose", action="count", default=0)
    return parser


def _write_curve(out: Path, meta: dict[str, Any], results: list[dict[str, Any]]) -> None:
    (out / "eval.json").write_text(json.dumps({**meta, "curve": results}, indent=1))
    n_episodes = max(len(r["episode_returns"]) for r in results)
    with (out / "eval.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["frames", "meta_episode_return", *[f"episode_{k}" for k in range(n_episodes)], "wall_time_s"])
        for r in results:
            writer.writerow([r["frames"], r["meta_episode_return"], *r["episode_returns"], r["wall_time_s"]])


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import torch as th
    from stable_baselines3.common.logger import configure

    from metarl_agents.ppo import MetaPPO

    try:
        preset = load_preset(args.env)
        overrides = _key_values(args.overrides, "--set")
        env_kwargs = _key_values(args.env_kwargs, "--env-kwarg")
        policy_kwargs = _key_values(args.policy_kwargs, "--policy-kwarg")
        if args.lr is not None:
            overrides["learning_rate"] = args.lr
        preset.update(overrides)
        frames = int(args.frames if args.frames is not None else preset["frames"])
        eval_freq = int(args.eval_freq if args.eval_freq is not None else preset["eval_freq"])
        eval_tasks = args.eval_tasks or preset["eval_tasks"]
        n_envs = args.n_envs or preset["n_envs"]
        if frames < 1:
            raise ValueError(f"--frames must be >= 1, got {args.frames}")
        model = MetaPPO.from_preset(
            args.env, args.agent, n_envs=n_envs, seed=args.seed, env_kwargs=env_kwargs, device=args.device,
            verbose=args.verbose, policy_kwargs=policy_kwargs or None,
            **{k: v for k, v in overrides.items() if k not in ("frames", "eval_freq", "eval_tasks", "n_envs")},
        )
    except ValueError as err:
        print(f"metarl-train: error: {err}", file=sys.stderr)
        return 2

    th.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    model.set_logger(configure(str(args.out), ["stdout", "csv"] if args.verbose else ["csv"]))
    meta = {"env_id": args.env, "agent": args.agent, "seed": args.seed, "learning_rate": preset["learning_rate"],
            "frames": frames, "reduced_budget": frames < load_preset(args.env)["frames"], "n_envs": n_envs,
            "env_kwargs": env_kwargs, "policy_kwargs": policy_kwargs, "overrides": overrides,
            "stop_at_return": args.stop_at_return}
    callback = MetaEvalCallback(
        args.env, eval_freq, eval_tasks, seed=args.seed + EVAL_SEED_OFFSET, env_kwargs=env_kwargs,
        on_result=lambda _: _write_curve(args.out, meta, callback.results), stop_at_return=args.stop_at_return,
        verbose=args.verbose,
    )
    start = time.time()
    model.learn(frames, callback=callback, progress_bar=args.progress_bar)
    model.save(args.out / "model.zip")
    final = callback.results[-1]
    solved = f" (reached {args.stop_at_return}, stopped)" if callback.solved else ""
    print(f"{args.env} {args.agent} seed {args.seed}: {model.num_timesteps} frames in {time.time() - start:.0f} s, "
          f"final meta-episode return {final['meta_episode_return']:.3f}{solved} -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
