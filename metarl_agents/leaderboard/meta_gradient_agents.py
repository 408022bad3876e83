"""The leaderboard's meta-gradient agents (BO-MRL and MAML-TRPO) by name, and how their groups are described.

Kept free of torch and of the rest of the leaderboard, so that the grid can list these agents among the
allowed ones and the report can describe their groups without importing the learners.
:mod:`metarl_agents.leaderboard.meta_gradient` builds and trains their runs.
"""

from __future__ import annotations

from typing import Any

#: Agent name -> the method of :class:`~metarl_agents.bomrl.mujoco_protocol.CheetahProtocol`.
AGENT_METHODS = {"BOMRL-Alg1": "alg1", "BOMRL-Alg2": "alg2", "BOMRL-Alg3": "alg3", "MAML-TRPO": "maml"}
#: The environments they run on -> the protocol's task.
ENV_TASKS = {"MetaCheetahVel-v0": "vel", "MetaCheetahDir-v0": "dir", "MetaPointNav2D-v0": "point"}
#: The training protocol their runs store (the BO-MRL authors' MuJoCo protocol).
PROTOCOL = "bomrl"
#: The paper's meta-training budget.
PAPER_ITERATIONS = 500


def iteration_counts(spec: Any) -> tuple[int, int, int]:
    """(environment steps per meta-iteration, meta-iterations, meta-iterations between evaluations) of a run
    of these agents, from its stored budget (``frames`` = iterations x steps per iteration, and the paper's
    budget ``paper_frames`` = ``PAPER_ITERATIONS`` of them)."""
    per_iteration = spec.paper_frames // PAPER_ITERATIONS
    return per_iteration, spec.frames // per_iteration, spec.eval_every // per_iteration


def title_budget(spec: Any, frames_text: str) -> str:
    """The budget as a report's group title gives it, e.g. "500 meta-iterations (240M frames)"
    (``frames_text``: the run's frames as the report writes them)."""
    reduced = f" (REDUCED BUDGET; paper: {PAPER_ITERATIONS})" if spec.frames < spec.paper_frames else ""
    return f"{iteration_counts(spec)[1]} meta-iterations ({frames_text} frames){reduced}"


def provenance_lines(spec: Any) -> list[str]:
    """The report's lines on how a group of these agents was trained and evaluated (markdown)."""
    per_iteration, iterations, every = iteration_counts(spec)
    return [
        f"- Budget: {iterations} meta-iterations ({spec.frames:,} frames: the environment steps they collect, "
        f"{per_iteration:,} each; paper: {PAPER_ITERATIONS}); evaluated every {every} meta-iterations and at the "
        f"end by a meta-test on the protocol's {spec.n_eval_tasks} test tasks: the return after one adaptation "
        "round (K = 1, deterministic actions, mean over the tasks; K = 0, 1, ... are the stored episode returns)",
        "- Training protocol: `bomrl` (the BO-MRL authors' MuJoCo protocol, TRPO meta-steps; "
        "metarl_agents/bomrl/mujoco_protocol.py); lr is the adaptation's step size (BO-MRL: the lower level's "
        "inner_lr; MAML-TRPO: maml_lr)",
    ]
