"""The BO-MRL ladder: cheap tasks on which the learners must show learning before the Cheetah runs.

Every rung runs the Cheetah protocol's code (``CheetahMetaLearner``: batched collection, continuation
returns, BO-MRL's truncated-CG hypergradient or MAML's second-order step, the TRPO meta-step judged on
the estimated post-adaptation return) on a task where learning takes minutes on one core.

Point navigation (``MetaPointNav2D-v0``) starts at (-1.5, -1.5), so every goal of the box [-0.5, 0.5]^2
is 1.3 to 2.7 away and the untrained policy's returns are about -200: a meta-learned prior that heads
for the box, and an adaptation that finds the goal in it, both show in the returns. Settings below the
paper's (10 + 10 trajectories, 5 tasks per iteration, a 32-32 policy) keep an iteration at about a
second (MAML) to five (BO-MRL) on a free core. The reward scale differs from the Cheetah's, so the two
step sizes are set for it: MAML's inner learning rate 0.003 (the paper's 0.1 overshoots: the adapted
policy's return falls to about -300) and BO-MRL's lam = 5 (with the paper's 0.5 the surrogate outweighs
the KL term, the adaptation makes the prior worse -- post-adaptation -120 to -320 against pre-adaptation
-75 to -110 after 30 iterations -- and the post-adaptation return stalls near -150).
Measured on seed 0 (40 meta-iterations): MAML-TRPO's mean post-adaptation return rose from -148 (first
10 iterations) to -83 (last 10); BO-MRL Alg2's from -164 to -56. Meta-test (deterministic, K = 0 / 1):
MAML-TRPO -110 / -85, BO-MRL Alg2 -70 / -63.

Single-task forward running (``method="trpo"`` on Cheetah-Dir, direction +1) checks the TRPO step on its
own: no adaptation, no hypergradient, the paper's policy, observation handling and 20 trajectories of
200 steps (with the 200-step continuation) per iteration, about 0.7 CPU seconds an iteration.
Measured (one torch thread, nice 19 on the loaded 2-core machine), mean return per 10 iterations:
seed 0 -26.1 (iterations 0-9), 27.2 (30-39), 68.0 (70-79), 100.9 (90-99), 162.1 (130-139), 206.4
(150-159); seed 1 -19.9, 29.8, 96.4, 139.3, 220.1 (the same iterations up to 130-139). This test (seed 0,
100 iterations and a meta-test) took 159 s there.
"""

from __future__ import annotations

import functools
import os

import numpy as np
import pytest

from metarl_agents.bomrl.mdp import single_threaded
from metarl_agents.bomrl.mujoco_protocol import CheetahMetaLearner, CheetahProtocol

FAR_POINT = dict(task="point", env_kwargs={"start": [-1.5, -1.5]}, horizon=100, continuation=100, n_trajectories=10,
                 post_trajectories=10, tasks_per_iteration=5, hidden=(32, 32), test_rounds=1, test_trajectories=10)
STEP_SIZES = {"maml": {"maml_lr": 0.003}, "alg2": {"lam": 5.0}}


@functools.cache
def point_run(method: str, iterations: int = 40) -> tuple[np.ndarray, np.ndarray, dict]:
    """Pre- and post-adaptation returns per meta-iteration, and the final meta-test (seed 0)."""
    with single_threaded():
        learner = CheetahMetaLearner(CheetahProtocol(method=method, **FAR_POINT, **STEP_SIZES[method]), seed=0)
        history = [learner.meta_iteration() for _ in range(iterations)]
        test = learner.meta_test()
        learner.close()
    pre = np.array([h["pre_adaptation_return"] for h in history])
    post = np.array([h["post_adaptation_return"] for h in history])
    print(method, "post-adaptation per iteration:", np.round(post, 1).tolist(), "meta-test:", test["deterministic"])
    return pre, post, test


FORWARD = dict(task="dir", method="trpo", tasks_per_iteration=1, n_trajectories=20, test_rounds=0,
               test_trajectories=10)


@pytest.mark.slow
def test_single_task_trpo_learns_to_run_forward():
    """Rung (b): 100 iterations of TRPO on forward running raise the mean return of iterations 90-99 at
    least 60 above that of iterations 0-9 (measured: +127 on seed 0, +159 on seed 1), and the
    deterministic policy then runs forward: its return on direction +1 beats direction -1 by at least
    100 (measured: +140 against -157, a difference of 297)."""
    with single_threaded():
        learner = CheetahMetaLearner(CheetahProtocol(**FORWARD), seed=0)
        returns = np.array([learner.meta_iteration()["pre_adaptation_return"] for _ in range(100)])
        test = learner.meta_test()
        learner.close()
    backward, forward = test["per_task_deterministic"][0]
    print("return per iteration:", np.round(returns, 1).tolist(), "deterministic -1 / +1:", backward, forward)
    assert returns[-10:].mean() > returns[:10].mean() + 60.0
    assert forward > backward + 100.0


@pytest.mark.slow
@pytest.mark.parametrize("method, gain", [("maml", 40.0), ("alg2", 60.0)])
def test_point_navigation_post_adaptation_return_rises(method, gain):
    """Mean post-adaptation return of iterations 30-39 at least ``gain`` above that of iterations 0-9
    (measured: MAML-TRPO +65, BO-MRL Alg2 +108), and the meta-test's adapted policy (K = 1)
    beats the meta-policy (K = 0) and the untrained policy's -200 by far."""
    _, post, test = point_run(method)
    assert post[-10:].mean() > post[:10].mean() + gain
    assert test["deterministic"][1] > max(test["deterministic"][0], -130.0)


@pytest.mark.slow
def test_point_navigation_bomrl_rises_at_least_as_fast_as_maml_trpo():
    """The issue's criterion on the cheap rung: over the same 40 iterations BO-MRL Alg2's post-adaptation
    return gains at least as much as MAML-TRPO's and ends at least as high."""
    _, maml, _ = point_run("maml")
    _, bomrl, _ = point_run("alg2")
    assert bomrl[-10:].mean() - bomrl[:10].mean() >= maml[-10:].mean() - maml[:10].mean()
    assert bomrl[-10:].mean() >= maml[-10:].mean()


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("METARL_LONG_LADDER"),
                    reason="about an hour on one core of a 2-core machine: set METARL_LONG_LADDER=1")
def test_cheetah_dir_bomrl_rises_at_least_as_fast_as_maml_trpo(tmp_path):
    """The top rung, with the paper's protocol on Cheetah-Dir (seed 0, 100 meta-iterations each): BO-MRL
    Alg2's mean post-adaptation return over iterations 90-99 gains at least as much over iterations 0-9
    as MAML-TRPO's. Measured (seed 0, the runs of benchmarks/bomrl_mujoco/after_fix/), with the default
    protocol (no KL test in the meta-step's line search, the prior's log-std frozen for Alg2): BO-MRL
    Alg2 20.9 -> 128.8, +107.9; MAML-TRPO 24.9 -> 118.1, +93.2. With the KL test it did not hold: Alg2
    17.0 -> 73.6 (+56.6), MAML-TRPO 21.7 -> 118.1 (+96.4); with the prior's log-std meta-learned too (the
    authors' code otherwise) Alg2 gained +14.4, falling after iteration 60. The authors' logs (raw values
    of the log their figure plots, iterations 0-19 and 90-109): BO-MRL Alg2 12.3 -> 76.4 (+64),
    MAML-TRPO 21.2 -> 118.5 (+97)."""
    from metarl_agents.bomrl.cheetah import run

    curves = {}
    for method in ("alg2", "maml"):
        result = run(CheetahProtocol(task="dir", method=method), 0, 100, tmp_path, log=lambda s: None)
        curves[method] = np.array([h["post_adaptation_return"] for h in result["training_curve"]])
    gains = {m: c[-10:].mean() - c[:10].mean() for m, c in curves.items()}
    assert gains["alg2"] >= gains["maml"], gains
