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
