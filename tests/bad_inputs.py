"""Bad inputs to every env family, and how each is answered: a clear error, an unclear one, or silence.

``python tests/bad_inputs.py`` prints the table (family x category: tried / clear / unclear / silently
accepted) and lists every input that was not answered clearly; ``test_bad_inputs.py`` requires each to be
clear. An error is *clear* when it is a ``ValueError``, ``TypeError`` or Gymnasium error whose message names
what was wrong (the kwarg, ``action``, ``task``, ``seed``, ``num_envs`` or ``reset``); any other exception
(an ``OverflowError`` from numpy, a ``MemoryError``, a message that names nothing) is *unclear*.
Vector probes run on the families with a native vector env; Gymnasium's ``SyncVectorEnv`` (the others) is
Gymnasium's to check.
"""

from __future__ import annotations

import inspect
import math
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

import metarl_envs  # noqa: F401  (registers the ids)

FAMILIES = ("MetaTMaze-v0", "MetaTMazeLatent-v0", "MetaMinecraftLongShort-v0", "MetaPlanningGame-v0",
            "MetaCheetahVel-v0", "MetaFrozenLake-v0")
CATEGORIES = ("kwargs", "num_envs", "actions", "vector actions", "tasks", "step order", "seeds")
N = 2  # copies in the vector env probes
BAD_INTS = (2**70, 10**12, -1, 1.5, True, "3", None)
BAD_FLOATS = (math.nan, math.inf, -0.5, "0.5", True, None)
BAD_SEEDS = (-1, 1.5, "3", True, [1], 1 + 0j)


@dataclass(frozen=True)
class Case:
    env_id: str
    category: str
    label: str
    run: Callable[[], Any]
    names: tuple[str, ...]  # a clear message names one of these

    @property
    def id(self) -> str:
        return f"{self.env_id}-{self.category}-{self.label}"


def _single(env_id: str, **kwargs: Any) -> gym.Env:
    """The family's own env class, without Gymnasium's order-enforcing wrappers."""
    return gym.make(env_id, disable_env_checker=True, **kwargs).unwrapped


def _vector(env_id: str, num_envs: int = N, **kwargs: Any) -> gym.vector.VectorEnv:
    """The native batched env, or Gymnasium's SyncVectorEnv for a family without one."""
    mode = "vector_entry_point" if gym.spec(env_id).vector_entry_point else "sync"
    return gym.make_vec(env_id, num_envs=num_envs, vectorization_mode=mode, **kwargs)


def _reset(env: Any, **kwargs: Any) -> Any:
    env.reset(seed=0, **kwargs)
    return env


def _kwarg_cases(env_id: str) -> Iterator[Case]:
    core = gym.make(env_id, disable_env_checker=True).unwrapped.core_class
    defaults = {name: p.default for name, p in inspect.signature(core.__init__).parameters.items()
                if name not in ("self", "num_envs")}
    defaults["episodes_per_trial"] = 1
    for name, default in defaults.items():
        if isinstance(default, bool):
            bad: tuple = ("yes", 2, None)
        elif isinstance(default, int):
            bad = BAD_INTS
        elif isinstance(default, float):
            bad = BAD_FLOATS
        elif isinstance(default, str):
            bad = ("nope", 3, None)
        elif isinstance(default, tuple):
            bad = ((3.0, 0.0), (math.nan, 1.0), "ab", (0.0, 1.0, 2.0), None)
        else:
            continue
        for value in bad:
            yield Case(env_id, "kwargs", f"{name}={value!r}", lambda v=value, n=name: _reset(_single(env_id, **{n: v})),
                       (name,))


def _action_values(space: gym.Space) -> tuple:
    if isinstance(space, gym.spaces.Discrete):
        return (True, False, "1", None, 1.5, -1, int(space.n), math.nan, math.inf, 1 + 0j, [0, 0], np.array(["a"]),
                object())
    d = space.shape[0]
    return (True, "a", np.array(["a"] * d), np.array([True] * d), np.full(d, math.nan), np.zeros(d + 1),
            np.zeros(d, complex), None, object())


def _vector_action_values(space: gym.Space) -> tuple:
    if isinstance(space, gym.spaces.Discrete):
        return (np.array([True, False]), np.array(["1", "0"]), np.array([0.5, 1.0]), np.array([-1, 0]), [0], None,
                np.array([1 + 0j, 0]))
    d = space.shape[0]
    return (np.full((N, d), True), np.full((N, d), "a"), np.zeros((N, d), complex), np.zeros(d), None)


def _finish_trial(env: gym.Env) -> gym.Env:
    env.reset(seed=0)
    for _ in range(100_000):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            return env
    raise AssertionError("the trial did not end")


def cases(env_id: str) -> Iterator[Case]:
    yield from _kwarg_cases(env_id)
    native = gym.spec(env_id).vector_entry_point is not None
    for value in (-1, 0, 2**40, 1.5, True, "4", None) if native else ():
        yield Case(env_id, "num_envs", repr(value), lambda v=value: _vector(env_id, v), ("num_envs",))
    space = gym.make(env_id, disable_env_checker=True).action_space
    for value in _action_values(space):
        yield Case(env_id, "actions", repr(value), lambda v=value: _reset(_single(env_id)).step(v), ("action",))
    for value in _vector_action_values(space) if native else ():
        yield Case(env_id, "vector actions", repr(value).replace("\n", ""),
                   lambda v=value: _reset(_vector(env_id)).step(v), ("action",))
    for value in ("-1", "1", True, False, 1 + 0j, None, math.nan, [], object()):
        yield Case(env_id, "tasks", f"set_task({value!r})", lambda v=value: _reset(_single(env_id)).set_task(v),
                   ("task",))
    yield Case(env_id, "tasks", "reset(options={'task': '-1'})",
               lambda: _single(env_id).reset(options={"task": "-1"}), ("task",))
    for value in (None, [], "ab", ["-1"] * N, [True] * N, [None] * N, 3) if native else ():
        yield Case(env_id, "tasks", f"vector reset(options={{'tasks': {value!r}}})",
                   lambda v=value: _vector(env_id).reset(options={"tasks": v}), ("task",))

    def valid_tasks_but_one_short() -> None:
        env = _vector(env_id)
        env.reset(seed=0)
        env.reset(options={"tasks": list(env.unwrapped.core.tasks[:-1])})

    if native:
        yield Case(env_id, "tasks", "vector reset with one task too few", valid_tasks_but_one_short, ("task",))
    yield Case(env_id, "step order", "single step before reset",
               lambda: _single(env_id).step(space.sample()), ("reset",))
    yield Case(env_id, "step order", "single step after the trial ended",
               lambda: _finish_trial(_single(env_id)).step(space.sample()), ("reset",))
    if native:
        yield Case(env_id, "step order", "vector step before reset",
                   lambda: _vector(env_id).step(np.stack([space.sample() for _ in range(N)])), ("reset",))
    for value in BAD_SEEDS:
        yield Case(env_id, "seeds", f"single reset(seed={value!r})", lambda v=value: _single(env_id).reset(seed=v),
                   ("seed",))
        if native:
            yield Case(env_id, "seeds", f"vector reset(seed={value!r})",
                       lambda v=value: _vector(env_id).reset(seed=v), ("seed",))


def all_cases() -> list[Case]:
    return [case for env_id in FAMILIES for case in (*cases(env_id), *env_input_cases(env_id))]


# --- issue 36, environments (E1-E8) and policy kwargs (C1-C2) ----------------------------------------------------
# Reset options a family does not take, actions numpy would take silently (timedelta64, masked, ragged, beyond
# float32), kwargs that belong elsewhere (max_episode_steps, another family's core, impossible velocity ranges),
# requests too large for the memory, and the policy kwargs of a SplAgger policy on one Discrete-action and one
# Box-action env.
CATEGORIES += ("reset options", "odd actions", "family kwargs", "sizes", "policy kwargs")
#: requests within the documented upper bounds (of num_envs, sample_tasks and render_scale) that need more memory
#: than the machine the "sizes" probes pretend to be (``SMALL_MACHINE`` bytes available: the outcome must not
#: depend on the machine that runs the probe, and nothing of that size may be allocated on a large one)
HUGE_NUM_ENVS, HUGE_TASK_COUNT, HUGE_RENDER_SCALE = 2**24, 10**9, 10**6
SMALL_MACHINE = 4 * 2**30
#: the core of another family, per family (E6: a Planning Game run must not be stored as a T-maze)
FOREIGN_CORE = {"MetaTMaze-v0": "metarl_envs.planning:PlanningCore",
                "MetaFrozenLake-v0": "metarl_envs.minecraft:MinecraftCore"}


def _reset_option_cases(env_id: str, native: bool) -> Iterator[Case]:
    for options in ({"taks": [1.0]}, {"reset_mask": np.array([True])}, {"tasks": [[1.0]]}, {1: 2}, "task",
                    [("task", 1.0)], 3):
        yield Case(env_id, "reset options", f"single reset(options={options!r})",
                   lambda o=options: _single(env_id).reset(seed=0, options=o), ("option",))
    for options in ("ab", [1], 3) if native else ():
        yield Case(env_id, "reset options", f"vector reset(options={options!r})",
                   lambda o=options: _vector(env_id).reset(seed=0, options=o), ("option",))


def _odd_action_cases(env_id: str, native: bool) -> Iterator[Case]:
    space = gym.make(env_id, disable_env_checker=True).action_space
    if isinstance(space, gym.spaces.Discrete):
        single: tuple = (np.timedelta64(1), np.array(1, dtype="m8[s]"), np.ma.masked_array([1], mask=[True]), [[0], [0, 1]])
        vector: tuple = (np.array([1, 0], dtype="m8[s]"), np.ma.masked_array([1, 0], mask=[True, True]), [[0], [0, 1]])
    else:
        d = space.shape[0]
        single = (np.full(d, 1e39), np.full(d, -3.5e38), np.ma.masked_array(np.zeros(d), mask=np.ones(d, bool)),
                  [[0.0] * d, [0.0] * (d - 1)], np.zeros(d, dtype="m8[s]"))
        vector = (np.full((N, d), 1e39), [[0.0] * d, [0.0] * (d - 1)],
                  np.ma.masked_array(np.zeros((N, d)), mask=np.ones((N, d), bool)))
    for value in single:
        yield Case(env_id, "odd actions", f"step({value!r})".replace("\n", ""),
                   lambda v=value: _reset(_single(env_id)).step(v), ("action",))
    for value in vector if native else ():
        yield Case(env_id, "odd actions", f"vector step({value!r})".replace("\n", ""),
                   lambda v=value: _reset(_vector(env_id)).step(v), ("action",))


def _family_kwarg_cases(env_id: str, native: bool) -> Iterator[Case]:
    yield Case(env_id, "family kwargs", "make_vec(max_episode_steps=3)",
               lambda: _reset(_vector(env_id, max_episode_steps=3)), ("max_episode_steps",))
    if env_id in FOREIGN_CORE:
        for make in (_single, _vector):
            yield Case(env_id, "family kwargs", f"{make.__name__[1:]} core={FOREIGN_CORE[env_id]!r}",
                       lambda m=make: _reset(m(env_id, core=FOREIGN_CORE[env_id])), ("core",))
    if env_id == "MetaCheetahVel-v0":
        for bounds in ((-1e308, 1e308), (0.0, 1e308), (-1e308, 0.0)):
            yield Case(env_id, "family kwargs", f"velocity_range={bounds!r}",
                       lambda b=bounds: _reset(_single(env_id, velocity_range=b)).sample_tasks(4), ("velocity_range",))


def _on_a_small_machine(run: Callable[[], Any]) -> Callable[[], Any]:
    def patched() -> Any:
        from unittest import mock

        with mock.patch("metarl_envs.sizes.available_memory", return_value=SMALL_MACHINE):
            return run()
    return patched


def _size_cases(env_id: str, native: bool) -> Iterator[Case]:
    if native:
        yield Case(env_id, "sizes", f"make_vec(num_envs={HUGE_NUM_ENVS})",
                   _on_a_small_machine(lambda: _vector(env_id, HUGE_NUM_ENVS).reset(seed=0)), ("num_envs",))
    yield Case(env_id, "sizes", f"sample_tasks({HUGE_TASK_COUNT})",
               _on_a_small_machine(lambda: _reset(_single(env_id)).sample_tasks(HUGE_TASK_COUNT)), ("sample_tasks",))
    if "Cheetah" not in env_id:  # MuJoCo's renderer needs an OpenGL context
        render = _on_a_small_machine(
            lambda: _reset(_single(env_id, render_mode="rgb_array", render_scale=HUGE_RENDER_SCALE)).render())
        yield Case(env_id, "sizes", f"render(render_scale={HUGE_RENDER_SCALE})", render, ("render_scale",))


#: policy kwargs that must be refused at construction (C1, C2), for every policy built on a Discrete-action env
BAD_POLICY_KWARGS: tuple[dict[str, Any], ...] = (
    {"head_state_dim": 0}, {"head_state_dim": -1}, {"head_state_dim": 2.5}, {"hyper_dim": 0}, {"hyper_dim": -1},
    {"encoder_hidden": 100_000_000}, {"encoder_hidden": "256"}, {"latent_dim": 0}, {"state_embed": True},
    {"action_embed": -3}, {"reward_embed": 10**9}, {"net_arch": (256, 0)}, {"net_arch": (10**6, 10**6)},
    {"head_bf16": "yes"}, {"split": "no"}, {"obs_clip": 0}, {"obs_clip": -1}, {"obs_clip": math.nan},
    {"obs_clip": math.inf}, {"log_std_init": math.nan}, {"log_std_init": 1e300},
    {"aggregator": "softmax", "aggregator_kwargs": {"temperature": 1e-300}},
    {"aggregator": "softmax", "aggregator_kwargs": {"temperature": math.nan}},
    {"aggregator": "softmax", "aggregator_kwargs": {"temp": 0.1}},
    {"aggregator": "gauss", "aggregator_kwargs": {"kl_weight": -1.0}},
    {"aggregator": None, "split": False, "aggregator_kwargs": {"temperature": 0.1}},
    {"aggregator_kwargs": "temperature=0.1"}, {"encoder_kwargs": {"state_dim": 10**8}, "encoder": "lru"},
    {"optimizer_kwargs": {"lr": 0.1}}, {"optimizer_kwargs": {"momentum": 0.9}}, {"optimizer_class": dict},
    {"hyper_dim": 1024, "net_arch": (8192, 8192)},  # within each bound, but some 2 TiB to train
)


def _build_policy(env_id: str, kwargs: dict[str, Any]) -> Any:
    from stable_baselines3.common.utils import ConstantSchedule

    from metarl_agents.policies import SplAggerPolicy
    from metarl_envs.wrappers import TransitionObservation

    env = TransitionObservation(gym.make(env_id))
    return SplAggerPolicy(env.observation_space, env.action_space, ConstantSchedule(1e-3), **kwargs)


def _policy_kwarg_cases(env_id: str) -> Iterator[Case]:
    if env_id not in ("MetaTMaze-v0", "MetaCheetahVel-v0"):  # one Discrete-action and one Box-action env
        return
    for kwargs in BAD_POLICY_KWARGS:
        label = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
        names = tuple(kwargs) + tuple(k for v in kwargs.values() if isinstance(v, dict) for k in v)
        yield Case(env_id, "policy kwargs", label, _on_a_small_machine(lambda k=kwargs: _build_policy(env_id, k)), names)


def env_input_cases(env_id: str) -> Iterator[Case]:
    """The categories that issue 36's environment and policy-kwarg items added."""
    native = gym.spec(env_id).vector_entry_point is not None
    yield from _reset_option_cases(env_id, native)
    yield from _odd_action_cases(env_id, native)
    yield from _family_kwarg_cases(env_id, native)
    yield from _size_cases(env_id, native)
    yield from _policy_kwarg_cases(env_id)


def classify(case: Case) -> tuple[str, str]:
    """("clear" | "unclear" | "silent", what happened)."""
    try:
        case.run()
    except (ValueError, TypeError, gym.error.Error) as exc:
        message = str(exc)
        named = any(name.lower() in message.lower() for name in case.names)
        return ("clear" if named else "unclear"), f"{type(exc).__name__}: {message[:160]}"
    except Exception as exc:  # noqa: BLE001  (any other kind is the finding)
        return "unclear", f"{type(exc).__name__}: {str(exc)[:160]}"
    return "silent", "accepted"


def table(results: list[tuple[Case, str, str]]) -> str:
    counts: Counter = Counter()
    for case, outcome, _ in results:
        counts[case.env_id, case.category, outcome] += 1
        counts[case.env_id, case.category, "tried"] += 1
        counts["all", case.category, outcome] += 1
        counts["all", case.category, "tried"] += 1
    lines = ["| family | category | tried | clear error | unclear | silently accepted |", "|---|---|---|---|---|---|"]
    for env_id in (*FAMILIES, "all"):
        for category in CATEGORIES:
            row = [counts[env_id, category, k] for k in ("tried", "clear", "unclear", "silent")]
            if row[0]:
                lines.append(f"| {env_id} | {category} | " + " | ".join(map(str, row)) + " |")
    total = [sum(counts["all", c, k] for c in CATEGORIES) for k in ("tried", "clear", "unclear", "silent")]
    lines.append("| **all** | **all** | " + " | ".join(f"**{x}**" for x in total) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    import warnings

    warnings.simplefilter("ignore")
    results = [(case, *classify(case)) for case in all_cases()]
    print(table(results))
    print()
    for case, outcome, detail in results:
        if outcome != "clear":
            print(f"{outcome:8s} {case.id}: {detail}")


# -- files, stores, command lines and divergence ----------------------------------------------------------------
# Hostile or damaged files (model files, run checkpoints, result stores), command lines and settings that
# make training diverge. Each case runs in a fresh temporary folder. An answer is *clear* when it is the
# error the package documents for it (ValueError, StoreError, CheckpointError, TrainingDivergedError, or a
# command line's exit status 2 with one line on stderr) and names one of the case's words; anything else
# raised is *unclear*; a case that raises nothing was *silently* accepted. A file the package did not write
# must be left as it was: a case that changes one is unclear, whatever it raised.

SAFETY_CATEGORIES = ("model files", "checkpoints", "stores", "report cells", "command lines", "divergence")


@dataclass(frozen=True)
class FileCase:
    category: str
    label: str
    run: Callable[[Any], Any]  # called with a fresh temporary folder (pathlib.Path)
    names: tuple[str, ...]

    @property
    def id(self) -> str:
        return f"{self.category}-{self.label}"


class _Changed(AssertionError):
    """A case modified a file the package did not write."""


def _files(folder: Any) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _untouched(folder: Any, action: Callable[[], Any]) -> Any:
    """Run ``action``; raise :class:`_Changed` if a file that was in ``folder`` changed or vanished."""
    before = _files(folder)
    try:
        return action()
    finally:
        after = _files(folder)
        changed = [name for name, data in before.items() if after.get(name) != data]
        if changed:
            raise _Changed(f"modified {changed}")


def _tiny_model(folder: Any) -> tuple[Any, Any]:
    from metarl_agents.training.build import build_model
    from metarl_agents.training.config import RunConfig

    config = RunConfig.from_preset("MetaTMaze-v0", "RNN", n_envs=2, n_steps=4, n_minibatches=1,
                                   env_kwargs={"length": 3}, policy_kwargs={"encoder_hidden": 8, "head": "mlp",
                                                                            "net_arch": [8], "head_state_dim": 4})
    return config, build_model(config)


def _model_file_cases() -> Iterator[FileCase]:
    import base64
    import hashlib
    import io
    import json
    import pickle
    import zipfile

    import torch

    from metarl_agents.training.model_file import MAGIC, load_model, save_model

    class Payload:
        def __reduce__(self) -> tuple:
            return math.factorial, (5,)  # harmless, but code all the same

    def crafted_zip(folder: Any) -> Any:
        path = folder / "model.zip"
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("data", json.dumps({"policy_class": {":serialized:": base64.b64encode(
                pickle.dumps(Payload())).decode()}}))
        return _untouched(folder, lambda: load_model(path))

    def pickle_behind_header(folder: Any) -> Any:
        buffer = io.BytesIO()
        torch.save({"format": "metarl-model", "version": 1, "config": "{}", "policy": Payload()}, buffer)
        data = buffer.getvalue()
        path = folder / "model.pt"
        path.write_bytes(MAGIC + hashlib.sha256(data).hexdigest().encode() + b"\n" + data)
        return _untouched(folder, lambda: load_model(path))

    def damaged(folder: Any, cut: bool) -> Any:
        config, model = _tiny_model(folder)
        path = folder / "model.pt"
        save_model(model, config, path)
        raw = bytearray(path.read_bytes())
        if cut:
            raw = raw[:len(raw) // 2]
        else:
            raw[-300:-292] = bytes(b ^ 0xFF for b in raw[-300:-292])
        path.write_bytes(bytes(raw))
        return _untouched(folder, lambda: load_model(path))

    def raw_file(folder: Any, data: bytes) -> Any:
        path = folder / "model.pt"
        path.write_bytes(data)
        return _untouched(folder, lambda: load_model(path))

    yield FileCase("model files", "SB3 zip with a cloudpickle payload", crafted_zip, ("SB3",))
    yield FileCase("model files", "pickle behind a valid header and digest", pickle_behind_header, ("weights only",))
    yield FileCase("model files", "eight flipped bytes", lambda f: damaged(f, False), ("damaged",))
    yield FileCase("model files", "truncated", lambda f: damaged(f, True), ("damaged",))
    yield FileCase("model files", "empty file", lambda f: raw_file(f, b""), ("model.pt",))
    yield FileCase("model files", "plain torch.save", lambda f: raw_file(f, _torch_bytes({"a": 1})), ("model.pt",))


def _torch_bytes(value: Any) -> bytes:
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(value, buffer)
    return buffer.getvalue()


def _fake_spec(seed: int = 1, env_id: str = "MetaTMaze-v0") -> Any:
    from metarl_agents.leaderboard.grid import RunSpec

    return RunSpec(env_id=env_id, agent="RNN", seed=seed, learning_rate=1e-3, frames=1000, paper_frames=1000,
                   preset_name="MetaTMaze-v0", preset_hash="abc", eval_every=500, n_eval_tasks=2)


def _checkpoint_cases() -> Iterator[FileCase]:
    import sqlite3

    from metarl_agents.leaderboard.checkpoint import read_checkpoint, write_checkpoint
    from metarl_agents.leaderboard.runner import checkpoint_dir, train_one
    from metarl_agents.leaderboard.store import ResultStore

    def damaged(folder: Any, how: str) -> Any:
        import torch

        path = folder / "c.pt"
        write_checkpoint(path, {"run_key": "k"}, {"w": torch.arange(64.0)})
        raw = bytearray(path.read_bytes())
        offset = raw.find(torch.arange(64.0).numpy().tobytes())
        if how == "flipped":
            raw[offset:offset + 8] = bytes(b ^ 0xFF for b in raw[offset:offset + 8])
        elif how == "nan":
            raw[offset:offset + 256] = b"\xff" * 256
        else:
            raw = raw[:offset]
        path.write_bytes(bytes(raw))
        return read_checkpoint(path, {"run_key": "k"})

    class NeverTrains:
        """A trainer that must not be reached: a case ends at the checkpoint path."""

        def build(self, spec: Any) -> Any:
            raise AssertionError("trained a run whose checkpoint path is foreign")

        def resume(self, spec: Any, checkpoint: Any) -> Any:
            raise AssertionError(f"resumed from {checkpoint}, which the store named")

    def stored_path(folder: Any, stored: str) -> Any:
        db, spec = folder / "store" / "r.db", _fake_spec()
        with ResultStore(db) as store:
            record = store.register_run(spec.store_fields())
            store.record_evaluation(record.id, 500, 1.0, [1.0], 1.0, None)
        (folder / "out").mkdir()
        (folder / "out" / "backup.pt").write_bytes(b"someone's backup")
        checkpoint_dir(db).mkdir()
        conn = sqlite3.connect(db)
        conn.execute("UPDATE runs SET checkpoint_path = ?", (stored.replace("FOLDER", str(folder)),))
        conn.commit()
        conn.close()
        return _untouched(folder / "out", lambda: train_one(spec, db, NeverTrains()))

    yield FileCase("checkpoints", "eight flipped bytes in a tensor", lambda f: damaged(f, "flipped"), ("damaged",))
    yield FileCase("checkpoints", "a tensor overwritten with NaN", lambda f: damaged(f, "nan"), ("damaged",))
    yield FileCase("checkpoints", "truncated", lambda f: damaged(f, "cut"), ("damaged",))
    for stored in ("../out/backup.pt", "FOLDER/out/backup.pt", "r.db.checkpoints/../../out/backup.pt",
                   "r.db.checkpoints/other-run.f500.pt"):
        yield FileCase("checkpoints", f"store names {stored}", lambda f, s=stored: stored_path(f, s),
                       ("not one of its files",))


def _store_cases() -> Iterator[FileCase]:
    import sqlite3

    from metarl_agents.leaderboard.merge import merge_stores
    from metarl_agents.leaderboard.report import write_report
    from metarl_agents.leaderboard.runner import run_grid
    from metarl_agents.leaderboard.store import APPLICATION_ID, ResultStore

    def store(folder: Any, seeds: Any = (1, 2)) -> Any:
        db = folder / "store" / "r.db"
        with ResultStore(db) as opened:
            for seed in seeds:
                record = opened.register_run(_fake_spec(seed).store_fields())
                opened.record_evaluation(record.id, 1000, 2.0, [2.0], 1.0, None, finished=True)
        return db

    def foreign_wal(folder: Any) -> Any:
        db = folder / "store" / "r.db"
        db.parent.mkdir()
        conn = sqlite3.connect(db, isolation_level=None)
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA wal_autocheckpoint = 0")
        conn.execute("CREATE TABLE customers (name TEXT)")
        conn.execute("INSERT INTO customers VALUES ('ada')")
        sidecars = {s: db.with_name(db.name + s).read_bytes() for s in ("-wal", "-shm")}
        conn.close()
        for suffix, data in sidecars.items():
            db.with_name(db.name + suffix).write_bytes(data)
        return db

    def damaged_page(folder: Any) -> Any:
        db = store(folder, range(60))
        data = bytearray(db.read_bytes())
        data[2 * 4096 + 8:3 * 4096] = b"\x07" * (4096 - 8)
        db.write_bytes(bytes(data))
        return db

    def edited(sql: str) -> Callable[[Any], Any]:
        def make(folder: Any) -> Any:
            db = store(folder)
            conn = sqlite3.connect(db)
            conn.execute(sql)
            conn.commit()
            conn.close()
            return db
        return make

    def clean_read(read: Callable[[Any, Any], Any]) -> Callable[[Any], Any]:
        """Reads of a clean store must leave its folder as it was, file for file; they then raise nothing,
        which the table counts as clear (the finding was the files they left behind)."""
        def run(folder: Any) -> Any:
            db = store(folder)
            before = _files(db.parent)
            read(db, folder)
            if _files(db.parent) != before:
                raise _Changed(f"the read left {sorted(set(_files(db.parent)) - set(before))} beside the store")
            raise ValueError("store read without writing a file")
        return run

    uses = {
        "run": lambda db, f: run_grid([_fake_spec(9)], db, show_progress=False),
        "merge --db": lambda db, f: merge_stores(db, [store(f / "other")]),
        "merge source": lambda db, f: merge_stores(f / "dest.db", [db]),
        "report": lambda db, f: write_report(db, f / "report"),
    }
    makers = {
        "foreign database with our id and a hot WAL": (foreign_wal, ("not a metarl leaderboard store",)),
        "damaged page": (damaged_page, ("damaged",)),
        "text in a REAL column": (edited("UPDATE runs SET lr = 'fast'"), ("column lr",)),
        "invalid JSON": (edited("UPDATE runs SET env_kwargs = '{oops'"), ("column env_kwargs",)),
        "infinite return": (edited("UPDATE evaluations SET meta_episode_return = 9e999"), ("meta_episode_return",)),
        "frames of 2**63": (edited("UPDATE evaluations SET frames = 9223372036854775808"), ("evaluations.frames",)),
    }
    for label, (make, names) in makers.items():
        for use, action in uses.items():
            if use == "run" and make not in (foreign_wal, damaged_page):
                continue  # a sweep reads only its own runs' rows: another run's bad value is no input to it
            def case(folder: Any, make: Callable = make, action: Callable = action) -> Any:
                db = make(folder)
                return _untouched(db.parent, lambda: action(db, folder))
            yield FileCase("stores", f"{use}: {label}", case, names)
    yield FileCase("stores", "report of a clean store", clean_read(lambda db, f: write_report(db, f / "report")),
                   ("without writing",))
    yield FileCase("stores", "merge source of a clean store", clean_read(lambda db, f: merge_stores(f / "d.db", [db])),
                   ("without writing",))


def _report_cell_cases() -> Iterator[FileCase]:
    import csv

    from metarl_agents.leaderboard.report import write_report
    from metarl_agents.leaderboard.store import ResultStore

    def cells(folder: Any, env_id: str, name: str) -> Any:
        db = folder / "r.db"
        with ResultStore(db) as store:
            record = store.register_run(_fake_spec(1, env_id).store_fields())
            store.record_evaluation(record.id, 1000, -6.0, [-6.0], 1.0, None, finished=True)
        write_report(db, folder / "report")
        with (folder / "report" / name).open(newline="") as handle:
            values = [value for row in csv.reader(handle) for value in row]
        risky = [value for value in values if value.startswith(("=", "+", "@", "\t", "\r"))
                 or (value.startswith("-") and value != "-6.0")]
        if risky:
            return risky  # silent: a spreadsheet would evaluate these
        raise ValueError(f"every cell of {name} is inert (the env id was written as text)")

    for env_id in ('=HYPERLINK("http://x","y")', "+1+1", "-1+1", "@SUM(A1)", "\t=1"):
        for name in ("leaderboard.csv", "evaluations.csv"):
            yield FileCase("report cells", f"{name}: env id {env_id!r}", lambda f, e=env_id, n=name: cells(f, e, n),
                           ("inert",))


def _command_line_cases() -> Iterator[FileCase]:
    import contextlib
    import io

    def command(main: Callable, argv: list[str]) -> Any:
        error = io.StringIO()
        try:
            with contextlib.redirect_stderr(error), contextlib.redirect_stdout(io.StringIO()):
                status = main(argv)
        except SystemExit as exc:
            text = error.getvalue()
            if exc.code == 2 and text.count("\n") == 1 and "Traceback" not in text:
                raise ValueError(text.strip()) from None
            raise RuntimeError(f"exit status {exc.code}: {text[-300:]}") from None
        if status:  # ran, and failed: the failure is in the store, not in a clear message about the input
            raise RuntimeError(f"exit status {status}: {error.getvalue()[-300:]}")
        return "ran"

    # A command that wrongly starts training trains only a few frames of a tiny T-maze.
    tiny = ["--no-progress", "--frames", "8", "--n-envs", "2", "--override", "n_steps=4", "--override",
            "n_minibatches=1", "--n-eval-tasks", "1", "--env-kwarg", "length=3"]

    def train(*extra: str) -> Callable[[Any], Any]:
        from metarl_agents.cli.train import main

        return lambda folder: command(main, ["--env", "MetaTMaze-v0", "--agent", "RNN", *tiny,
                                             *[e.replace("FOLDER", str(folder)) for e in extra]])

    def bench(*extra: str) -> Callable[[Any], Any]:
        from metarl_agents.cli.bench import main

        return lambda folder: command(main, ["run", *tiny, *[e.replace("FOLDER", str(folder)) for e in extra]])

    grid = ["--db", "FOLDER/r.db"]
    cases = [
        ("--agents RNN RNN --workers 2", bench("--envs", "MetaTMaze-v0", "--agents", "RNN", "RNN", "--workers", "2",
                                              *grid), ("--agents",)),
        ("--envs twice", bench("--envs", "MetaTMaze-v0", "MetaTMaze-v0", "--agents", "RNN", *grid), ("--envs",)),
        ("--lrs 1e-3 0.001", bench("--envs", "MetaTMaze-v0", "--agents", "RNN", "--lrs", "1e-3", "0.001", *grid),
         ("--lrs",)),
        ("--seeds 3 3", bench("--envs", "MetaTMaze-v0", "--agents", "RNN", "--seeds", "3", "3", *grid), ("--seeds",)),
        ("--db /dev/full/x.db", bench("--envs", "MetaTMaze-v0", "--agents", "RNN", "--db", "/dev/full/x.db"),
         ("/dev/full",)),
        ("--out ''", train("--out", ""), ("--out",)),
        ("--out /dev/full/x", train("--out", "/dev/full/x"), ("--out",)),
        ("--out /proc/x", train("--out", "/proc/x"), ("--out",)),
        ("--lr 1e38", train("--lr", "1e38", "--out", "FOLDER/o"), ("learning_rate",)),
        ("--lr 1e4", train("--lr", "1e4", "--out", "FOLDER/o"), ("learning_rate",)),
        ("--lr 1e30", train("--lr", "1e30", "--out", "FOLDER/o"), ("learning_rate",)),
    ]
    for label, run, names in cases:
        yield FileCase("command lines", label, run, names)


def _divergence_cases() -> Iterator[FileCase]:
    def learn(env_id: str, policy_kwargs: dict[str, Any] | None = None, **settings: Any) -> Callable[[Any], Any]:
        def run(folder: Any) -> Any:
            from metarl_agents.policies import RNNPolicy
            from metarl_agents.training.ppo import MetaPPO
            from metarl_agents.training.vec_env import make_vec_env

            env = make_vec_env(env_id, 2, seed=0, **({"length": 3} if env_id == "MetaTMaze-v0" else {}))
            model = MetaPPO(RNNPolicy, env, n_steps=8, n_minibatches=1, seed=0, device="cpu",
                            policy_kwargs={"encoder_hidden": 8, "head": "mlp", "net_arch": [8], "head_state_dim": 4,
                                           **(policy_kwargs or {})}, **settings)
            return model.learn(64)
        return run

    cases = [
        ("learning_rate=1e38", learn("MetaTMaze-v0", learning_rate=1e38), ("step of the optimizer",)),
        ("learning_rate=inf", learn("MetaTMaze-v0", learning_rate=math.inf), ("parameter",)),
        ("obs_clip=nan, Categorical", learn("MetaTMaze-v0", {"obs_clip": math.nan}), ("obs_clip",)),
        ("obs_clip=nan, Normal", learn("MetaCheetahVel-v0", {"obs_clip": math.nan}), ("obs_clip",)),
        ("vf_coef=1e300", learn("MetaTMaze-v0", vf_coef=1e300), ("weighted sum overflowed",)),
    ]
    for label, run, names in cases:
        yield FileCase("divergence", label, run, names)


def safety_cases() -> list[FileCase]:
    return [*_model_file_cases(), *_checkpoint_cases(), *_store_cases(), *_report_cell_cases(),
            *_command_line_cases(), *_divergence_cases()]


def classify_file_case(case: FileCase) -> tuple[str, str]:
    """("clear" | "unclear" | "silent", what happened), the case run in a fresh temporary folder."""
    import shutil
    import tempfile
    from pathlib import Path

    from metarl_agents.leaderboard.checkpoint import CheckpointError
    from metarl_agents.leaderboard.store import StoreError
    from metarl_agents.training.ppo import TrainingDivergedError

    folder = Path(tempfile.mkdtemp(prefix="metarl-bad-input-"))
    try:
        case.run(folder)
    except (ValueError, StoreError, CheckpointError, TrainingDivergedError) as exc:
        message = str(exc)
        named = any(name.lower() in message.lower() for name in case.names)
        return ("clear" if named and "\n" not in message else "unclear"), f"{type(exc).__name__}: {message[:160]}"
    except Exception as exc:  # noqa: BLE001  (any other kind is the finding)
        return "unclear", f"{type(exc).__name__}: {str(exc)[:160]}"
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return "silent", "accepted"


def safety_table(results: list[tuple[FileCase, str, str]]) -> str:
    counts: Counter = Counter()
    for case, outcome, _ in results:
        counts[case.category, outcome] += 1
        counts[case.category, "tried"] += 1
    lines = ["| category | tried | clear error | unclear | silently accepted |", "|---|---|---|---|---|"]
    for category in SAFETY_CATEGORIES:
        lines.append(f"| {category} | " + " | ".join(str(counts[category, k]) for k in
                                                     ("tried", "clear", "unclear", "silent")) + " |")
    total = [sum(counts[c, k] for c in SAFETY_CATEGORIES) for k in ("tried", "clear", "unclear", "silent")]
    lines.append("| **all** | " + " | ".join(f"**{x}**" for x in total) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    file_results = [(case, *classify_file_case(case)) for case in safety_cases()]
    print()
    print(safety_table(file_results))
    print()
    for case, outcome, detail in file_results:
        if outcome != "clear":
            print(f"{outcome:8s} {case.id}: {detail}")
