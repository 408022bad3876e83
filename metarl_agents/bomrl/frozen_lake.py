"""The BO-MRL paper's Frozen Lake experiment: meta-train, meta-test K = 0..4 rounds, baselines, bounds.

    python -m metarl_agents.bomrl.frozen_lake --family hole --alg 1 --seed 0 --out runs/bomrl

writes ``<out>/<family>_alg<alg>_seed<seed>.{json,md,png}`` and ``..._bounds.png``. ``--tasks paper``
(the default) meta-trains on the BO-MRL authors' released maps and meta-tests on the same maps, as
the authors did; ``--tasks generated`` meta-trains on fresh maps from the env's generator and
meta-tests on our seeded benchmark set; ``--test-maps held-out`` (with the authors' maps) meta-trains
on half of them and meta-tests on the other half. All returns are
exact 49-step discounted returns (gamma 0.8) of the adapted policies, computed from the env's own
tabular model; ``--evaluation td|mc`` makes every meta-test round -- of BO-MRL and of every baseline --
estimate ``Q`` and ``nu`` from 500 sampled episodes instead (the paper's protocol).

Baselines: MAML-style policy-gradient steps (step 50) from the meta-policy, and adaptation from the
uniform policy (``theta = 0``) with ``2 lambda`` (what the authors' code meant) and with ``lambda``.
Two rows replay the authors' released code: "as the authors' script ran it" -- their
random-initialisation loop doubles lambda once per map, cumulatively (map ``i`` of the set adapts
with ``2^(i+1) lambda``), and solves Alg1 with their approximate solver (:func:`solve_alg1_sgd`,
which regularises like ``4 lambda``); this reproduces the paper's random-initialisation row -- and,
for Alg1, BO-MRL's meta-test with their solver.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

import metarl_envs  # noqa: F401  (registers the ids)
from metarl_agents.bomrl.bounds import alg2_multi_round_bound, near_optimal_logits, one_round_bound
from metarl_agents.bomrl.mdp import TabularMDP, single_threaded, value_iteration
from metarl_agents.bomrl.tabular import TabularBOMRL, adapt, alg_update, maml_step
from metarl_envs.frozen_lake import SOURCES, benchmark_tasks

GAMMA, HORIZON, ROUNDS = 0.8, 49, 4
ENV_IDS = {"hole": "MetaFrozenLake-v0", "penalty": "MetaFrozenLakePenalty-v0"}
#: Lambda per (family, alg) for meta-training and meta-test. Alg1/Alg2 are the paper's. Alg3 (not
#: in the paper's table) is ours: its step is nu(s) A / lam in logit space, so it needs a far smaller
#: lambda (at lam_train 5 it barely moves and meta-training settles on a "stand still" policy).
LAM_TRAIN = {("hole", 1): 5.0, ("hole", 2): 5.0, ("hole", 3): 0.02,
             ("penalty", 1): 4.0, ("penalty", 2): 4.0, ("penalty", 3): 0.02}
LAM_TEST = {("hole", 1): 0.1, ("hole", 2): 0.2, ("hole", 3): 0.001,
            ("penalty", 1): 0.05, ("penalty", 2): 0.1, ("penalty", 3): 0.001}
MAML_STEP = 50.0
#: The BO-MRL paper's means of J after K = 0..4 rounds on the benchmark task sets, for the tables.
PAPER = {
    ("hole", 1): [0.418, 1.552, 1.617, 1.629, 1.634],
    ("hole", 2): [0.338, 1.460, 1.595, 1.629, 1.636],
    ("hole", "maml"): [0.418, 1.316, 1.577, 1.598, 1.602],
    ("hole", "random"): [-0.242, -0.113, 0.024, 0.126, 0.200],
    ("penalty", 1): [1.492, 1.558, 1.594, 1.607, 1.613],
    ("penalty", 2): [1.498, 1.539, 1.570, 1.592, 1.598],
    ("penalty", "maml"): [1.484, 1.502, 1.510, 1.517, 1.528],
}


def make_env(family: str) -> gym.Env:
    if family not in ENV_IDS:
        raise ValueError(f"family must be one of {tuple(ENV_IDS)}, got {family!r}")
    return gym.make(ENV_IDS[family])


def task_mdp(env: gym.Env, task: np.ndarray) -> TabularMDP:
    """The exact model of one map, from the env itself (start cell 0, gamma 0.8, 49 steps)."""
    P, R = env.unwrapped.transition_model(task)
    return TabularMDP.from_arrays(P, R, None, GAMMA, HORIZON)


def benchmark_mdps(family: str, tasks: str = "paper") -> list[TabularMDP]:
    """The meta-test maps' exact models: the authors' maps (``"paper"``) or our seeded set (``"generated"``)."""
    env = make_env(family)
    return [task_mdp(env, t) for t in benchmark_tasks(family, source=tasks)]


TEST_MAPS = ("same", "held-out")


def split_maps(mdps: list[TabularMDP], part: str, test_maps: str = "same") -> list[TabularMDP]:
    """The maps of ``part`` ("train" or "test"): all of them (``"same"``, the authors' protocol), or the
    even-indexed ones for training and the odd-indexed ones for testing (``"held-out"``)."""
    if test_maps not in TEST_MAPS:
        raise ValueError(f"test_maps must be one of {TEST_MAPS}, got {test_maps!r}")
    if part not in ("train", "test"):
        raise ValueError(f"part must be 'train' or 'test', got {part!r}")
    if test_maps == "same":
        return list(mdps)
    return list(mdps[0 if part == "train" else 1 :: 2])


def task_sampler(family: str, seed: int, tasks: str = "paper", test_maps: str = "same") -> Callable[[int], list[TabularMDP]]:
    """Meta-training tasks, seeded once.

    ``"generated"``: fresh maps from the env's task generator. ``"paper"``: maps drawn from the
    authors' released set (uniformly, without replacement within a call while the set lasts): the
    same maps the meta-test uses, or with ``test_maps="held-out"`` only the training half.
    """
    env = make_env(family)
    if tasks == "generated":
        env.reset(seed=seed)
        return lambda n: [task_mdp(env, t) for t in env.unwrapped.sample_tasks(n)]
    mdps = split_maps(benchmark_mdps(family, tasks), "train", test_maps)
    rng = np.random.default_rng(seed)
    return lambda n: [mdps[i] for i in rng.choice(len(mdps), size=n, replace=n > len(mdps))]


def _curves(mdps, start, update, evaluation: str = "exact", rng: np.random.Generator | None = None) -> np.ndarray:
    """Exact returns after 0..ROUNDS rounds per map, ``(n_maps, ROUNDS + 1)``; each round estimates
    ``Q`` and ``nu`` as ``evaluation`` says (sampled ones from ``rng``)."""
    return np.array([adapt(m, start, update, ROUNDS, evaluation, rng)[0] for m in mdps])


def bound_report(mdps: list[TabularMDP], phi: torch.Tensor, alg: int, lams: list[float]) -> dict:
    """Measured gaps beside the one-round and multi-round bounds (:mod:`.bounds`), per lambda (the multi-round one runs Alg2)."""
    optima = np.array([value_iteration(m)[0] for m in mdps])
    comparators = [near_optimal_logits(m) for m in mdps]
    one_round, multi = [], []
    for lam in lams:
        if alg in (1, 2):
            gaps = optima - np.array([adapt(m, phi, alg_update(alg, lam), 1)[0][1] for m in mdps])
            bounds = np.array([one_round_bound(m, phi, alg, lam, c) for m, c in zip(mdps, comparators, strict=True)])
            one_round.append({"lam": lam, "gap_mean": float(gaps.mean()), "bound_mean": float(bounds.mean()),
                              "gap_per_task": gaps.tolist(), "bound_per_task": bounds.tolist(),
                              "holds": bool((gaps <= bounds).all())})
        curves = np.array([adapt(m, phi, alg_update(2, lam), ROUNDS)[0] for m in mdps])
        gaps = optima[:, None] - curves[:, 1:]
        bounds = np.array([[alg2_multi_round_bound(m, phi, lam, k, c) for k in range(1, ROUNDS + 1)]
                           for m, c in zip(mdps, comparators, strict=True)])
        multi.append({"lam": lam, "K": list(range(1, ROUNDS + 1)), "gap": gaps.mean(0).tolist(),
                      "bound": bounds.mean(0).tolist(), "holds": bool((gaps <= bounds).all())})
    return {"one_round": one_round, "alg2_multi_round": multi}


def run(family: str, alg: int, seed: int, iterations: int = 150, hypergradient: str = "implicit",
        evaluation: str = "exact", tasks: str = "paper", test_maps: str = "same") -> dict:
    if test_maps != "same" and tasks != "paper":
        raise ValueError(f"test_maps={test_maps!r} splits the authors' maps: use it with tasks='paper', got {tasks!r}")
    torch.manual_seed(seed)
    agent = TabularBOMRL(16, 4, alg=alg, lam_train=LAM_TRAIN[(family, alg)], hypergradient=hypergradient)
    agent.meta_train(task_sampler(family, seed, tasks, test_maps), iterations)
    mdps = split_maps(benchmark_mdps(family, tasks), "test", test_maps)
    lam = LAM_TEST[(family, alg)]
    rng = np.random.default_rng(seed)
    per_task = agent.meta_test(mdps, ROUNDS, lam, evaluation=evaluation, rng=rng)
    zeros = torch.zeros_like(agent.phi)
    # Every baseline is evaluated like BO-MRL (exact, or sampled from the same generator).
    baseline_updates = {
        "maml_step": (agent.phi, lambda th, ev: maml_step(th, ev, MAML_STEP)),
        "random_init": (zeros, alg_update(alg, 2 * lam)),
        "random_init_lambda": (zeros, alg_update(alg, lam)),
    }
    solver = "authors" if alg == 1 else "exact"
    if alg == 1:  # Alg2's closed form is the authors' too
        baseline_updates["bomrl_authors_solver"] = (agent.phi, alg_update(alg, lam, solver))
    baselines_per_task = {name: _curves(mdps, start, update, evaluation, rng)
                          for name, (start, update) in baseline_updates.items()}
    if alg in (1, 2):
        # The authors' random-initialisation loop: lambda doubles before every map, cumulatively.
        baselines_per_task["random_init_authors_script"] = np.concatenate([
            _curves([m], zeros, alg_update(alg, lam * 2.0 ** (i + 1), solver), evaluation, rng)
            for i, m in enumerate(mdps)])
    optima = [value_iteration(m)[0] for m in mdps]
    lams = sorted({lam / 2, lam, 2 * lam, LAM_TRAIN[(family, alg)]})
    return {
        "family": family, "tasks": tasks, "test_maps": test_maps, "alg": alg, "seed": seed,
        "lam_train": LAM_TRAIN[(family, alg)], "lam_test": lam,
        "iterations": iterations, "hypergradient": hypergradient, "evaluation": evaluation,
        "K": list(range(ROUNDS + 1)), "J": per_task.mean(0).tolist(), "J_per_task": per_task.tolist(),
        "optimum": float(np.mean(optima)), "optimum_per_task": optima,
        "baselines": {name: curves.mean(0).tolist() for name, curves in baselines_per_task.items()},
        "baselines_per_task": {name: curves.tolist() for name, curves in baselines_per_task.items()},
        "meta_train_history": agent.history, "paper": {str(k[1]): v for k, v in PAPER.items() if k[0] == family},
        "bounds": bound_report(mdps, agent.phi, alg, lams) if alg in (1, 2) else {},
    }


def markdown_table(result: dict) -> str:
    family, alg = result["family"], result["alg"]
    head = "| method | " + " | ".join(f"K={k}" for k in result["K"]) + " |"
    rows = [head, "|---" * (len(result["K"]) + 1) + "|"]

    def row(name, values):
        rows.append(f"| {name} | " + " | ".join(f"{v:.3f}" for v in values) + " |")

    row(f"BO-MRL Alg{alg} (ours)", result["J"])
    if (family, alg) in PAPER:
        row(f"BO-MRL Alg{alg} (paper)", PAPER[(family, alg)])
    row("MAML-step (ours)", result["baselines"]["maml_step"])
    if (family, "maml") in PAPER:
        row("MAML-step (paper)", PAPER[(family, "maml")])
    row(f"random init, Alg{alg}, 2 lambda (ours)", result["baselines"]["random_init"])
    if "random_init_lambda" in result["baselines"]:
        row(f"random init, Alg{alg}, lambda (ours)", result["baselines"]["random_init_lambda"])
    if "random_init_authors_script" in result["baselines"]:
        row(f"random init, Alg{alg}, as the authors' script ran it", result["baselines"]["random_init_authors_script"])
    if (family, "random") in PAPER and alg == 1:
        row("random init, Alg1 (paper)", PAPER[(family, "random")])
    row("task optimum", [result["optimum"]] * len(result["K"]))
    maps = result.get("tasks", "generated") + (", held-out test maps" if result.get("test_maps") == "held-out" else "")
    lines = [f"## Frozen Lake {family} ({maps} maps), Alg{alg} "
             f"(lambda_test {result['lam_test']}, seed {result['seed']})",
             "", *rows, ""]
    if result["bounds"]:
        lines += ["### Bounds (mean over tasks)", "", "| bound | lambda | K | measured gap | bound | holds |",
                  "|---|---|---|---|---|---|"]
        for b in result["bounds"]["one_round"]:
            lines.append(f"| one round, Alg{alg} | {b['lam']} | 1 | {b['gap_mean']:.4f} | "
                         f"{b['bound_mean']:.4f} | {b['holds']} |")
        for b in result["bounds"]["alg2_multi_round"]:
            for k, gap, bound in zip(b["K"], b["gap"], b["bound"], strict=True):
                lines.append(f"| multi-round, Alg2 | {b['lam']} | {k} | {gap:.4f} | {bound:.2f} | {gap <= bound} |")
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    K = result["K"]
    ax.plot(K, result["J"], "o-", label=f"BO-MRL Alg{result['alg']}")
    ax.plot(K, result["baselines"]["maml_step"], "s--", label="MAML-step")
    ax.plot(K, result["baselines"]["random_init"], "^:", label="random init (2 lambda)")
    ax.axhline(result["optimum"], color="k", lw=1, label="task optimum")
    ax.set(xlabel="adaptation rounds K", ylabel="mean discounted return J", xticks=K,
           title=f"Frozen Lake ({result['family']})")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_bounds(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bounds = result["bounds"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    one = bounds["one_round"]
    lams = [b["lam"] for b in one]
    left.plot(lams, [b["gap_mean"] for b in one], "o-", label="measured gap")
    left.plot(lams, [b["bound_mean"] for b in one], "o--", label="one-round bound")
    left.set(xscale="log", yscale="log", xlabel="lambda", ylabel="mean gap after one round",
             title=f"{result['family']}: one round of Alg{result['alg']}")
    left.legend()
    for i, b in enumerate(bounds["alg2_multi_round"]):
        colour = f"C{i}"
        right.plot(b["K"], b["gap"], "o-", color=colour, label=f"gap, lambda {b['lam']}")
        right.plot(b["K"], b["bound"], "--", color=colour, label=f"bound, lambda {b['lam']}")
    right.set(yscale="log", xlabel="rounds K", ylabel="mean gap", xticks=bounds["alg2_multi_round"][0]["K"],
              title="K rounds of Alg2 (mirror descent)")
    right.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--family", choices=tuple(ENV_IDS), default="hole")
    parser.add_argument("--alg", type=int, choices=(1, 2, 3), default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--iterations", type=int, default=150)
    parser.add_argument("--hypergradient", choices=("implicit", "first_order"), default="implicit")
    parser.add_argument("--evaluation", choices=("exact", "td", "mc"), default="exact")
    parser.add_argument("--tasks", choices=SOURCES, default="paper",
                        help="paper: meta-train and meta-test on the authors' maps; generated: our generator and seeded set")
    parser.add_argument("--test-maps", choices=TEST_MAPS, default="same",
                        help="same: meta-test on the training maps (the authors'); held-out: train on the even-"
                             "indexed authors' maps, test on the odd-indexed ones")
    parser.add_argument("--out", type=Path, default=Path("runs/bomrl"))
    args = parser.parse_args(argv)
    if args.test_maps != "same" and args.tasks != "paper":
        parser.error("--test-maps held-out splits the authors' maps: use it with --tasks paper")
    with single_threaded():
        result = run(args.family, args.alg, args.seed, args.iterations, args.hypergradient, args.evaluation,
                     args.tasks, args.test_maps)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"{args.family}_alg{args.alg}_seed{args.seed}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1))
    table = markdown_table(result)
    stem.with_suffix(".md").write_text(table)
    plot(result, stem.with_suffix(".png"))
    if result["bounds"]:
        plot_bounds(result, Path(f"{stem}_bounds.png"))
    print(table)
    return result


if __name__ == "__main__":
    main()
