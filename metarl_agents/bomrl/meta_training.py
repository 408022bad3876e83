"""One meta-training run of BO-MRL or MAML-TRPO: the learner, its per-iteration record, its checkpoint state.

Both ways of running the MuJoCo protocol go through :class:`MetaTrainingRun`: the command
(:mod:`metarl_agents.bomrl.cheetah`, one run to a folder of results) and the leaderboard's trainer
(:mod:`metarl_agents.leaderboard.meta_gradient`, runs in the shared result store). So a meta-iteration,
its record in the training curve and the checkpoint payload are the same whichever started the run.

The run counts the environment steps its meta-iterations collect (:func:`frames_per_iteration`), which is
how the leaderboard places its evaluations on the frames axis every other agent is measured on.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import asdict
from typing import Any

import numpy as np
import torch

from metarl_agents.bomrl.mujoco_protocol import LEGACY_SETTINGS, CheetahMetaLearner, CheetahProtocol

#: Protocol settings a run may resume with other values of: how fast it goes, and what the meta-test after
#: meta-training does (it runs after the last checkpoint, so it never changes the training curve).
EXECUTION_SETTINGS = ("nthread", "test_rounds", "test_trajectories", "maml_later_rounds_scale")


def frames_per_iteration(protocol: CheetahProtocol) -> int:
    """Environment steps one meta-iteration collects: every task's pre- and post-adaptation trajectories,
    each rolled for its horizon and its continuation. (The TRPO line search reuses that data; the
    observation normaliser's warm-up rollouts before the first iteration and meta-test rollouts are not
    training steps and are not counted.)"""
    return (protocol.tasks_per_iteration * (protocol.n_trajectories + protocol.post_trajectories)
            * (protocol.horizon + protocol.continuation))


def protocol_settings() -> dict[str, Any]:
    """The settings a run of the protocol may choose (every field of :class:`CheetahProtocol` but its task and
    method), each with its default as the class declares it (per-method values unresolved)."""
    return {item.name: item.default_factory() if item.default is dataclasses.MISSING else item.default
            for item in dataclasses.fields(CheetahProtocol) if item.name not in ("task", "method")}


def settings_difference(state: dict[str, Any], protocol: CheetahProtocol, seed: int) -> str:
    """How a checkpoint ``state`` differs from a run of ``protocol`` and ``seed`` ("" if it holds that run).
    Execution settings may differ; a checkpoint older than a setting counts as made with the value that
    setting had before it existed."""
    saved = {**{k: v for k, v in {**LEGACY_SETTINGS, **state["protocol"]}.items() if k not in EXECUTION_SETTINGS},
             "seed": state["seed"]}
    wanted = {**{k: v for k, v in asdict(protocol).items() if k not in EXECUTION_SETTINGS}, "seed": seed}
    return "; ".join(f"{k}: saved {saved.get(k)!r}, asked {wanted.get(k)!r}"
                     for k in sorted(saved.keys() | wanted.keys()) if saved.get(k) != wanted.get(k))


class MetaTrainingRun:
    """A :class:`CheetahMetaLearner`, the record of the meta-iterations it has done, and its best prior.

    The best prior is the meta-policy (with its observation statistics) whose meta-iteration had the
    highest post-adaptation return, kept because the authors meta-test the best of their checkpoints,
    selected on that score, and not the last one. ``best["tracked_from"]`` is the first iteration the
    selection saw: 0, or later for a run resumed from a checkpoint written before the best was kept.
    """

    def __init__(self, protocol: CheetahProtocol, seed: int) -> None:
        self.protocol, self.seed = protocol, seed
        self.learner = CheetahMetaLearner(protocol, seed)
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] = {"tracked_from": 0, "iteration": None, "score": None}

    @property
    def iterations(self) -> int:
        return len(self.history)

    @property
    def frames(self) -> int:
        """Environment steps collected by the meta-iterations done so far."""
        return self.iterations * frames_per_iteration(self.protocol)

    def iterate(self) -> dict[str, Any]:
        """One meta-iteration; returns (and keeps) its record: index, the learner's returns and diagnostics,
        and its wall time in seconds. The prior it started from becomes the best one if its post-adaptation
        return is the highest yet."""
        start = time.time()
        prior = self._prior()
        record = {"iteration": len(self.history), **self.learner.meta_iteration(), "seconds": time.time() - start}
        if self.best["score"] is None or record["post_adaptation_return"] > self.best["score"]:
            self.best = {**self.best, "iteration": record["iteration"], "score": record["post_adaptation_return"], **prior}
        self.history.append(record)
        return record

    def _prior(self) -> dict[str, Any]:
        """A copy of the meta-policy and the observation statistics it acts with."""
        agent = self.learner.agent
        rms = agent.obs_rms
        return {"policy_state": {k: v.detach().clone() for k, v in agent.policy.state_dict().items()},
                "obs_rms": [torch.tensor(rms.mean), torch.tensor(rms.var), float(rms.count)]}

    def state(self) -> dict[str, Any]:
        """The checkpoint payload: the learner's state, the training curve and the best prior."""
        return {**self.learner.state(), "history": self.history, "best": self.best}

    def load_state(self, state: dict[str, Any]) -> None:
        """Continue from a payload of :meth:`state`, which must hold this run (:func:`settings_difference`)."""
        if difference := settings_difference(state, self.protocol, self.seed):
            raise ValueError(f"the checkpoint holds a run with other settings ({difference})")
        self.learner.load_state(state)
        self.history = list(state["history"])
        # A checkpoint from before the best prior was kept: the selection starts here.
        self.best = state.get("best", {"tracked_from": len(self.history), "iteration": None, "score": None})

    def meta_test(self, seed: int | None = None, best: bool = False) -> dict[str, Any]:
        """The learner's meta-test (returns after K = 0 ... test_rounds adaptation rounds on the test tasks).

        ``seed=None`` draws its trajectories from the run's own generators, as a run's closing meta-test
        always has. With a ``seed`` it draws them from generators seeded with it and leaves the run exactly
        as it was, so a run evaluated along the way trains to the same numbers as one that is not, and every
        evaluation of a run sees the same noise. ``best``: meta-test the best prior instead of the current
        one (the run is left as it was)."""
        if best and self.best["iteration"] is None:
            raise ValueError("the run has no best prior yet: no meta-iteration was done since it was tracked")
        if seed is None and not best:
            return self.learner.meta_test()
        kept = self.learner.state()
        kept["policy_state"] = {k: v.clone() for k, v in kept["policy_state"].items()}
        tested = dict(kept)
        if seed is not None:
            tested.update(numpy_rng=np.random.default_rng(seed).bit_generator.state,
                          torch_rng=torch.Generator().manual_seed(seed).get_state())
        if best:
            tested.update(policy_state=self.best["policy_state"], obs_rms=self.best["obs_rms"])
        self.learner.load_state(tested)
        try:
            return self.learner.meta_test()
        finally:
            self.learner.load_state(kept)

    def close(self) -> None:
        self.learner.close()


def iteration_line(name: str, record: dict[str, Any]) -> str:
    """One meta-iteration's log line."""
    extra = ""
    if "hypergradient_cosine" in record:
        extra = (f" cos(h,g) {record['hypergradient_cosine']:+.2f} non-PD CG {record['cg_nonpositive_curvature']}"
                 f" dJ {record['meta_improvement']:+.3f}")
    return (f"{name} it {record['iteration']}: pre {record['pre_adaptation_return']:.1f} "
            f"post {record['post_adaptation_return']:.1f} kl {record['meta_kl']:.4f}{extra} halved {record['meta_halvings']} "
            f"(full-step kl {record['meta_full_step_kl']:.4f}) ({record['seconds']:.1f}s)")
