"""BO-MRL's numbers, pinned: two meta-iterations of every learner give exactly the recorded values.

The recorded values (``tests/data/bomrl_golden.json``) were computed by the code before BO-MRL's two
learners (the generic :class:`~metarl_agents.bomrl.neural.BOMRL` and the MuJoCo protocol's
``CheetahMetaLearner``) were put on one rollout collector, one TRPO step and one reward-to-go routine;
they guard that refactoring and any later one that claims to change no number. Every value of the
training history, the meta-test, a SHA-256 of the final parameters and observation statistics, and
the keys of the checkpoint state and protocol settings (which existing checkpoints need) are compared.

Floating-point results depend on the library versions and the CPU's vector instructions, so values
are compared bit for bit only on the platform that recorded them (same torch, numpy, MuJoCo and CPU
capability), elsewhere to a relative 1e-5 (the hashes are then not compared).
``METARL_WRITE_GOLDEN=1`` rewrites the file (only when a change of numbers is intended).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path

import mujoco
import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from test_bomrl_mujoco import TINY  # noqa: E402
from test_bomrl_neural import POINT_ID, ShortPointTask, tiny_policy  # noqa: E402

from metarl_agents.bomrl.mdp import single_threaded  # noqa: E402
from metarl_agents.bomrl.mujoco_protocol import CheetahMetaLearner, CheetahProtocol  # noqa: E402
from metarl_agents.bomrl.neural import BOMRL  # noqa: E402

GOLDEN = Path(__file__).parent / "data" / "bomrl_golden.json"
CHEETAH_CASES = [("dir", "alg1", "float32"), ("dir", "alg2", "float32"), ("dir", "maml", "float32"),
                 ("point", "alg1", "float32"), ("point", "alg2", "float32"), ("point", "maml", "float32"),
                 ("dir", "alg2", "float64")]
GENERIC_CASES = [("trpo", 2), ("adam", 1)]


def platform() -> dict[str, str]:
    return {"torch": torch.__version__, "numpy": np.__version__, "mujoco": mujoco.__version__,
            "cpu": torch.backends.cpu.get_cpu_capability()}


def digest(tensors: dict[str, torch.Tensor], *arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        h.update(name.encode())
        h.update(tensors[name].detach().contiguous().numpy().tobytes())
    for array in arrays:
        h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()


def size(tensors: dict[str, torch.Tensor]) -> float:
    """A number the parameters' values move (compared approximately where the hash cannot be)."""
    return float(sum(t.detach().double().abs().sum() for t in tensors.values()))


def cheetah_case(task: str, method: str, dtype: str) -> dict:
    with single_threaded():
        learner = CheetahMetaLearner(CheetahProtocol(task=task, method=method, dtype=dtype, meta_log_std=True,
                                                     line_search_kl=True, **TINY), seed=0)
        history = [learner.meta_iteration() for _ in range(2)]
        test = learner.meta_test()
        state = learner.state()
        learner.close()
    phi, rms = learner.agent.phi(), learner.agent.obs_rms
    return {"history": history, "meta_test": test, "parameters": digest(phi, rms.mean, rms.var),
            "size": size(phi), "obs_count": float(rms.count), "state_keys": sorted(state),
            "protocol_keys": sorted(asdict(learner.protocol))}


def generic_case(optimizer: str, alg: int) -> dict:
    with single_threaded():
        agent = BOMRL(tiny_policy(3), alg=alg, lam=0.5, n_trajectories=3, post_trajectories=4, inner_steps=4,
                      meta_optimizer=optimizer, max_kl=0.02, meta_lr=1e-2, seed=5)
        torch.manual_seed(11)  # the generic learner samples actions from torch's global generator
        history = agent.meta_train(POINT_ID, iterations=2, tasks_per_iteration=2, seed=7,
                                   callback=lambda *_: None)
        history = [{k: v for k, v in h.items() if k != "seconds"} for h in history]
        batch, raw = agent.collect([ShortPointTask() for _ in range(3)], agent.phi(), 7, np.array([0.3]))
        _, adapted = agent.adapt(POINT_ID, rounds=1, task=np.array([-0.4]), n_trajectories=3)
    phi, rms = agent.phi(), agent.obs_rms
    collected = {"obs": batch.obs, "actions": batch.actions, "advantages": batch.advantages,
                 "log_prob": batch.log_prob}
    return {"history": history, "adapt_returns": adapted, "parameters": digest(phi, rms.mean, rms.var),
            "size": size(phi), "variable_length_batch": digest(collected, batch.episode_returns, raw),
            "variable_length_returns": batch.episode_returns.tolist()}


def compute() -> dict:
    return {"platform": platform(),
            "cheetah": {"/".join(case): cheetah_case(*case) for case in CHEETAH_CASES},
            "generic": {f"{opt}/alg{alg}": generic_case(opt, alg) for opt, alg in GENERIC_CASES}}


def assert_same(actual, expected, exact: bool, where: str = "") -> None:
    if isinstance(expected, dict):
        assert sorted(actual) == sorted(expected), where
        for k in expected:
            assert_same(actual[k], expected[k], exact, f"{where}/{k}")
    elif isinstance(expected, list):
        assert len(actual) == len(expected), where
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_same(a, e, exact, f"{where}[{i}]")
    elif isinstance(expected, float) and not exact:
        assert actual == pytest.approx(expected, rel=1e-5, abs=1e-8), where
    elif isinstance(expected, str) and len(expected) == 64 and not exact:
        pass  # a hash: meaningful only bit for bit
    else:
        assert actual == expected, where


@pytest.mark.skipif(not GOLDEN.exists() and not os.environ.get("METARL_WRITE_GOLDEN"), reason="no golden file")
def test_two_meta_iterations_of_every_learner_give_the_recorded_numbers():
    actual = json.loads(json.dumps(compute()))  # the JSON round trip the recorded values went through
    if os.environ.get("METARL_WRITE_GOLDEN"):
        GOLDEN.write_text(json.dumps(actual, indent=1) + "\n")
    expected = json.loads(GOLDEN.read_text())
    exact = expected.pop("platform") == actual.pop("platform")
    assert_same(actual, expected, exact)
