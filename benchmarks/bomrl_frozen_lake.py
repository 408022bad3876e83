"""The BO-MRL Frozen Lake tables: hole and penalty, Alg1 and Alg2, 3 seeds, beside the paper's means.

    python benchmarks/bomrl_frozen_lake.py --tasks paper       # the authors' maps (train = test)
    python benchmarks/bomrl_frozen_lake.py --tasks generated   # our generator / seeded benchmark set
    python benchmarks/bomrl_frozen_lake.py --hypergradient first_order --evaluation td  # closer to the authors' code

Each run is ``python -m metarl_agents.bomrl.frozen_lake`` (by default exact evaluation, implicit
hypergradient, 150 meta-iterations); its JSON lands in ``benchmarks/bomrl_frozen_lake/<name>/`` and is
reused when present, so an interrupted sweep resumes. ``<name>`` is the task source, followed by the
hypergradient and evaluation where they are not the defaults; the summary table goes to
``benchmarks/bomrl_frozen_lake/<name>.md``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from metarl_agents.bomrl import frozen_lake as fl
from metarl_envs.frozen_lake import SOURCES

HERE = Path(__file__).parent / "bomrl_frozen_lake"
GRID = [(family, alg) for family in ("hole", "penalty") for alg in (1, 2)]
SEEDS = (0, 1, 2)


def run_one(name: str, family: str, alg: int, seed: int, **settings) -> dict:
    path = HERE / name / f"{family}_alg{alg}_seed{seed}.json"
    if path.exists():
        return json.loads(path.read_text())
    with fl.single_threaded():
        result = fl.run(family, alg, seed, **settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(path)  # a killed run leaves no half-written result behind
    return result


def fmt(values) -> str:
    return " | ".join(f"{v:.3f}" for v in values)


def summary(command: str, results: dict) -> str:
    r = next(iter(results.values()))
    lines = [f"# BO-MRL Frozen Lake on the {r['tasks']} maps ({r['hypergradient']} hypergradient, "
             f"{r['evaluation']} meta-test evaluation)", "",
             f"`{command}`: 49-step discounted returns (γ 0.8) after K adaptation rounds, mean over the "
             "meta-test maps, then mean ± standard deviation over seeds "
             f"{', '.join(map(str, SEEDS))}; paper means beside them (Δ = ours − paper). Baselines: seed means.", ""]
    for family, alg in GRID:
        runs = [results[(family, alg, s)] for s in SEEDS]
        J = np.array([r["J"] for r in runs])
        maml = np.array([r["baselines"]["maml_step"] for r in runs])
        rand = np.array([r["baselines"]["random_init"] for r in runs])
        K = runs[0]["K"]
        lines += [f"## {family}, Alg{alg} (λ_train {runs[0]['lam_train']}, λ_test {runs[0]['lam_test']})", "",
                  "| | " + " | ".join(f"K={k}" for k in K) + " |", "|---" * (len(K) + 1) + "|",
                  "| ours | " + " | ".join(f"{m:.3f} ± {s:.3f}" for m, s in zip(J.mean(0), J.std(0), strict=True)) + " |"]
        paper = fl.PAPER[(family, alg)]
        lines += [f"| paper | {fmt(paper)} |", f"| Δ | {fmt(J.mean(0) - paper)} |",
                  f"| MAML-step (ours) | {fmt(maml.mean(0))} |"]
        if (family, "maml") in fl.PAPER:
            lines.append(f"| MAML-step (paper) | {fmt(fl.PAPER[(family, 'maml')])} |")
        lines.append(f"| random init, 2λ (ours) | {fmt(rand.mean(0))} |")
        if (family, "random") in fl.PAPER and alg == 1:
            lines.append(f"| random init (paper) | {fmt(fl.PAPER[(family, 'random')])} |")
        lines += [f"| task optimum | {fmt([runs[0]['optimum']] * len(K))} |", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", choices=SOURCES, default="paper")
    parser.add_argument("--hypergradient", choices=("implicit", "first_order"), default="implicit")
    parser.add_argument("--evaluation", choices=("exact", "td", "mc"), default="exact")
    args = parser.parse_args()
    settings = vars(args)
    name = "_".join([args.tasks] + [v for k, v in settings.items() if k != "tasks" and v not in ("implicit", "exact")])
    results = {(f, a, s): run_one(name, f, a, s, **settings) for f, a in GRID for s in SEEDS}
    flags = "".join(f" --{k} {v}" for k, v in settings.items())
    text = summary(f"python benchmarks/bomrl_frozen_lake.py{flags}", results)
    (HERE / f"{name}.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
