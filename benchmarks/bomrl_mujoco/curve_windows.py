"""Markdown table of training curves in windows of meta-iterations, from the run JSONs of
``python -m metarl_agents.bomrl.cheetah``: one row per run, the mean post-adaptation (or pre-adaptation)
return of the training batch over each window. Curves are noisy per iteration (each draws its own task
batch and trajectories), so windows are what the text compares.

    python benchmarks/bomrl_mujoco/curve_windows.py --window 20 --upto 500 A.json B.json [--pre]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def windows(curve: list[dict], key: str, width: int, upto: int) -> list[float | None]:
    values = [point[key] for point in curve]
    return [sum(chunk) / len(chunk) if len(chunk := values[start:start + width]) == width else None
            for start in range(0, upto, width)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--window", type=int, default=20)
    parser.add_argument("--upto", type=int, default=500)
    parser.add_argument("--pre", action="store_true", help="the pre-adaptation return instead")
    args = parser.parse_args(argv)
    key = "pre_adaptation_return" if args.pre else "post_adaptation_return"
    starts = range(0, args.upto, args.window)
    print("| run | iterations | " + " | ".join(f"{s}–{s + args.window - 1}" for s in starts) + " |")
    print("|---|---|" + "---|" * len(starts))
    for path in args.runs:
        result = json.loads(path.read_text())
        cells = ["—" if v is None else f"{v:.1f}" for v in windows(result["training_curve"], key, args.window, args.upto)]
        print(f"| {path.stem} | {result['iterations']} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
