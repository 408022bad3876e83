"""Summarise the Cheetah BO-MRL / MAML-TRPO runs of ``benchmarks/bomrl_mujoco/*.json`` against the paper.

    python benchmarks/bomrl_report.py [--runs benchmarks/bomrl_mujoco] [--out benchmarks/bomrl_mujoco/summary]

Prints markdown tables (mean and standard deviation over the seeds that reached the same number of
meta-iterations of the meta-test returns after K = 0..3 adaptation rounds, deterministic and
stochastic; the paper's deterministic numbers; wall seconds per iteration over the whole run and over
its last five iterations, which differ when a run was resumed on another machine) and the orderings the paper
reports, checked on the longest-trained seeds of each configuration and on every seed separately
(BO-MRL against MAML-TRPO of the same seed);
writes ``summary.png`` (meta-test curves and training curves).
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from metarl_agents.bomrl.cheetah import PAPER

LABELS = {"alg1": "BO-MRL Alg1", "alg2": "BO-MRL Alg2", "alg3": "BO-MRL Alg3", "maml": "MAML-TRPO"}
TASKS = {"vel": "HalfCheetah-Vel", "dir": "HalfCheetah-Dir"}


def load(runs: Path) -> dict[tuple[str, str], list[dict]]:
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for path in sorted(runs.glob("*.json")):
        result = json.loads(path.read_text())
        groups[(result["task"], result["method"])].append(result)
    return groups


def longest(runs: list[dict]) -> list[dict]:
    """The runs (seeds) that reached the most meta-iterations: the ones averaged and compared.

    Seeds that are still short of that count get their own rows in the tables, since a mean over
    runs of different lengths would describe neither."""
    most = max(r["iterations"] for r in runs)
    return [r for r in runs if r["iterations"] == most]


#: Where the paper's numbers come from, printed beside every table that shows them.
PAPER_NOTE = ("¹ The paper's numbers are the raw values of the authors' result files (`result_cheetah_*.csv`: one "
              "row per configuration, no per-seed data, from the checkpoint with the best training-time score). "
              "Their figure script multiplies the Dir results of BO-MRL Alg2 and Alg3 by 0.75 before plotting "
              "(Dir Alg2 then reads −29.6, 467.3, 538.4, 590.6); their training-curve figure adds +10 to the Vel "
              "curves of BO-MRL Alg1 and Alg2, −10 to MAML-TRPO's, and multiplies every Dir training log by 1.6.")


def cell(values: np.ndarray) -> str:
    return f"{values.mean():.1f}" + (f" ± {values.std(ddof=1):.1f}" if len(values) > 1 else "")


def tables(groups: dict[tuple[str, str], list[dict]]) -> str:
    lines = []
    for task in TASKS:
        keys = [k for k in groups if k[0] == task]
        if not keys:
            continue
        lines += [f"### {TASKS[task]}", "",
                  "| method | seeds | meta-iterations | s / iteration: mean (last 5) | returns | K=0 | K=1 | K=2 | K=3 |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for key in sorted(keys, key=lambda k: k[1]):
            label = LABELS[key[1]]
            for its in sorted({r["iterations"] for r in groups[key]}, reverse=True):
                runs = [r for r in groups[key] if r["iterations"] == its]
                seconds = np.array([[h["seconds"] for h in r["training_curve"]] for r in runs])
                seeds = ", ".join(str(r["seed"]) for r in runs)
                head = f"| {label} | {seeds} | {its} | {seconds.mean():.0f} ({seconds[:, -5:].mean():.0f})"
                for mode in ("deterministic", "stochastic"):
                    values = np.array([r["meta_test"][mode] for r in runs])
                    lines.append(f"{head} | {mode} | " + " | ".join(cell(values[:, k]) for k in range(values.shape[1])) + " |")
                    head = "| | | |"
                label = ""
            if key in PAPER:
                lines.append("| | | 500 (paper, raw CSV¹) | | deterministic | " + " | ".join(f"{v:.1f}" for v in PAPER[key]) + " |")
        lines.append("")
    return "\n".join(lines + [PAPER_NOTE, ""])


def orderings(groups: dict[tuple[str, str], list[dict]]) -> str:
    """The paper's orderings on our seed means, with deterministic and with stochastic returns."""

    def means(key: tuple[str, str], mode: str) -> np.ndarray:
        return np.mean([r["meta_test"][mode] for r in longest(groups[key])], axis=0)

    def yes(flag: bool) -> str:
        return "yes" if flag else "no"

    lines = ["| claim (paper) | deterministic | holds | stochastic | holds |", "|---|---|---|---|---|"]
    for key in sorted(groups):
        det, sto = means(key, "deterministic"), means(key, "stochastic")
        lines.append(f"| {TASKS[key[0]]} {LABELS[key[1]]}: return rises with K | "
                     f"{' → '.join(f'{v:.1f}' for v in det)} | {yes(bool(np.all(np.diff(det) > 0)))} | "
                     f"{' → '.join(f'{v:.1f}' for v in sto)} | {yes(bool(np.all(np.diff(sto) > 0)))} |")
    for task, bomrl in (("vel", "alg1"), ("dir", "alg2")):
        if (task, bomrl) in groups and (task, "maml") in groups:
            ours = {m: means((task, bomrl), m) for m in ("deterministic", "stochastic")}
            maml = {m: means((task, "maml"), m) for m in ("deterministic", "stochastic")}
            for k in range(1, len(ours["deterministic"])):
                cells = [f"{ours[m][k]:.1f} vs {maml[m][k]:.1f} | {yes(ours[m][k] > maml[m][k])}"
                         for m in ("deterministic", "stochastic")]
                lines.append(f"| {TASKS[task]} K={k}: {LABELS[bomrl]} > MAML-TRPO | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def orderings_per_seed(groups: dict[tuple[str, str], list[dict]]) -> str:
    """Each of the paper's orderings on every seed separately (BO-MRL against MAML-TRPO of the same
    seed), with each run's meta-iterations, and on how many seeds it holds."""

    def rises(run: dict, mode: str) -> bool:
        return bool(np.all(np.diff(run["meta_test"][mode]) > 0))

    def verdict(flags: list[tuple[bool, bool]]) -> str:
        return f"{sum(d for d, _ in flags)}/{len(flags)} | {sum(s for _, s in flags)}/{len(flags)}"

    def yes(flag: bool) -> str:
        return "yes" if flag else "no"

    lines = ["| claim (paper) | per seed: deterministic / stochastic (meta-iterations) | holds on seeds, deterministic | stochastic |",
             "|---|---|---|---|"]
    for key in sorted(groups):
        runs = sorted(groups[key], key=lambda r: r["seed"])
        flags = [(rises(r, "deterministic"), rises(r, "stochastic")) for r in runs]
        per_seed = "; ".join(f"seed {r['seed']}: {yes(d)} / {yes(s)} ({r['iterations']})" for r, (d, s) in zip(runs, flags, strict=True))
        lines.append(f"| {TASKS[key[0]]} {LABELS[key[1]]}: return rises with K | {per_seed} | {verdict(flags)} |")
    for task, bomrl in (("vel", "alg1"), ("dir", "alg2")):
        ours = {r["seed"]: r for r in groups.get((task, bomrl), [])}
        maml = {r["seed"]: r for r in groups.get((task, "maml"), [])}
        seeds = sorted(set(ours) & set(maml))
        if not seeds:
            continue
        for k in range(1, len(ours[seeds[0]]["meta_test"]["deterministic"])):
            flags = [tuple(ours[s]["meta_test"][m][k] > maml[s]["meta_test"][m][k] for m in ("deterministic", "stochastic"))
                     for s in seeds]
            per_seed = "; ".join(f"seed {s}: {yes(d)} / {yes(st)} ({ours[s]['iterations']} vs {maml[s]['iterations']})"
                                 for s, (d, st) in zip(seeds, flags, strict=True))
            lines.append(f"| {TASKS[task]} K={k}: {LABELS[bomrl]} > MAML-TRPO | {per_seed} | {verdict(flags)} |")
    return "\n".join(lines)


def plot(groups: dict[tuple[str, str], list[dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = [t for t in TASKS if any(k[0] == t for k in groups)]
    fig, axes = plt.subplots(len(tasks), 2, figsize=(10, 3.4 * len(tasks)), squeeze=False)
    for row, task in zip(axes, tasks, strict=True):
        for (t, method), runs in sorted(groups.items()):
            if t != task:
                continue
            markers = iter("osd^v<>")
            line = None
            for r in sorted(runs, key=lambda r: r["seed"]):
                line = row[0].plot(range(len(r["meta_test"]["deterministic"])), r["meta_test"]["deterministic"],
                                   marker=next(markers, "o"), color=None if line is None else line[0].get_color(),
                                   label=f"{LABELS[method]} seed {r['seed']} ({r['iterations']} it.)")
            if (task, method) in PAPER:
                row[0].plot(range(4), PAPER[(task, method)], "--", color=line[0].get_color(), alpha=0.6,
                            label=f"{LABELS[method]}, paper (500 it.)")
            for i, r in enumerate(runs):
                curve = r["training_curve"]
                row[1].plot([h["iteration"] for h in curve], [h["post_adaptation_return"] for h in curve],
                            color=line[0].get_color(), alpha=0.7, label=f"{LABELS[method]} post-adaptation" if i == 0 else None)
                row[1].plot([h["iteration"] for h in curve], [h["pre_adaptation_return"] for h in curve],
                            color=line[0].get_color(), alpha=0.4, ls=":", label=f"{LABELS[method]} pre" if i == 0 else None)
        row[0].set(title=f"{TASKS[task]}: meta-test (deterministic)", xlabel="adaptation rounds K", ylabel="return")
        row[1].set(title=f"{TASKS[task]}: meta-training", xlabel="meta-iteration", ylabel="mean return")
        row[0].legend(fontsize=7)
        row[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, default=Path("benchmarks/bomrl_mujoco"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/bomrl_mujoco/summary"))
    args = parser.parse_args()
    groups = load(args.runs)
    if not groups:
        raise SystemExit(f"no run results (*.json) in {args.runs}")
    print(tables(groups))
    print(orderings(groups))
    print()
    print(orderings_per_seed(groups))
    plot(groups, args.out.with_suffix(".png"))


if __name__ == "__main__":
    main()
