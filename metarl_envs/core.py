"""The batched-core contract, trial semantics and the two Gymnasium faces every family shares.

A family is written once, as a :class:`FamilyCore`: the dynamics of ``N`` copies held in arrays
with a leading ``N`` axis and stepped in one vectorised call. Everything that is the same for all
families lives here, once:

* :class:`TrialRunner` turns episodes into *trials* (meta-episodes): ``episodes_per_trial``
  consecutive episodes of one task, the episode-boundary flag, per-episode time limits, and the
  bookkeeping that ends up in ``info``.
* :class:`MetaEnv` is the ``gymnasium.Env``: a runner at ``N = 1``.
* :class:`MetaVectorEnv` is the native ``gymnasium.vector.VectorEnv`` registered as each id's
  ``vector_entry_point``: the same runner at ``N = num_envs``, with SAME_STEP autoreset.

Copy ``i`` of a vector env seeded with ``seed`` behaves exactly like a single env seeded with
``seed + i`` (Gymnasium's ``SyncVectorEnv`` convention), because each copy draws from its own
counter-based stream (:mod:`metarl_envs.rng`).
"""

from __future__ import annotations

import abc
import dataclasses
import importlib
from collections.abc import Mapping
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from metarl_envs.rendering import upscale
from metarl_envs.rng import CounterRNG
from metarl_envs.sizes import (
    CHECK_FROM_NUM_ENVS,
    STREAM_BYTES_PER_COPY,
    TASK_OBJECT_BYTES,
    array_bytes,
    check_fits_in_memory,
    describe_bytes,
)
from metarl_envs.state import StateOwner

#: ``rgb_array`` frames are enlarged (nearest neighbour, integer factor) until their long side has at
#: least this many pixels, unless a ``render_scale`` is given.
MIN_FRAME_SIDE = 256
#: Upper bound of integer kwargs without a tighter one of their own: far above any useful setting, and
#: low enough that step counters and array sizes cannot overflow int64 or exhaust memory at construction.
MAX_INT_KWARG = 10**9
#: Upper bound of ``num_envs`` (checked before anything is allocated).
MAX_NUM_ENVS = 2**24


def check_int(name: str, value: Any, low: int, high: int | None = None) -> int:
    """Validate an integer kwarg, naming it and the allowed range in the error."""
    allowed = f"[{low}, {high}]" if high is not None else f">= {low}"
    if high is None:
        high = MAX_INT_KWARG
        if isinstance(value, (int, np.integer)) and value > high:
            allowed = f"in [{low}, {high}] (an upper bound that keeps sizes and step counters far from overflow)"
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer {allowed}, got {value!r}")
    if value < low or (high is not None and value > high):
        raise ValueError(f"{name} must be an integer {allowed}, got {value!r}")
    return int(value)


def check_float(name: str, value: Any, low: float, high: float, *, open_low: bool = False) -> float:
    """Validate a float kwarg in ``[low, high]`` (or ``(low, high]``)."""
    ok = isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool)
    if ok:
        value = float(value)
        ok = (value > low if open_low else value >= low) and value <= high
    if not ok:
        bracket = "(" if open_low else "["
        raise ValueError(f"{name} must be a number in {bracket}{low}, {high}], got {value!r}")
    return value


def check_render_scale(render_scale: Any) -> int | None:
    """``None`` (enlarge to a long side of at least ``MIN_FRAME_SIDE`` pixels) or an integer factor >= 1."""
    return None if render_scale is None else check_int("render_scale", render_scale, 1)


def scale_frame(frame: np.ndarray, render_scale: int | None) -> np.ndarray:
    """``frame`` enlarged by ``render_scale``, or by the least factor that reaches ``MIN_FRAME_SIDE``."""
    if render_scale is not None and render_scale > 1:
        height, width = frame.shape[:2]
        check_fits_in_memory(
            f"render_scale={render_scale} (a {height * render_scale}x{width * render_scale} frame)",
            frame.nbytes * render_scale**2, "use a smaller render_scale, or None for a long side of at least "
            f"{MIN_FRAME_SIDE} pixels")
    scale = render_scale if render_scale is not None else max(1, -(-MIN_FRAME_SIDE // max(frame.shape[:2])))
    return frame if scale == 1 else upscale(frame, scale)


def check_reset_options(family: str, options: Any, allowed: tuple[str, ...]) -> Mapping[str, Any]:
    """``options`` of a ``reset``: None or a dict whose keys are among ``allowed``, else ``ValueError``.

    A misspelt key (``taks``) or a vector env's key given to a single env (``tasks``, ``reset_mask``)
    would otherwise be ignored, and the reset would draw a task nobody asked for.
    """
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise ValueError(f"{family}: reset options must be a dict (or None) with keys among {list(allowed)}, "
                         f"got {options!r}")
    unknown = sorted(map(repr, set(options) - set(allowed)))
    if unknown:
        raise ValueError(f"{family}: unknown reset option(s) {', '.join(unknown)}; allowed: {list(allowed)}")
    return options


class FamilyCore(StateOwner, abc.ABC):
    """Dynamics of ``num_envs`` copies of one task family.

    Subclasses set the class attribute ``family`` and, in ``__init__`` (after validating their
    kwargs), ``observation_space`` (one copy, one episode: no trial flag), ``action_space``
    (``Discrete``, or ``Box`` for continuous control), ``task_space``, ``per_episode_limit`` and ``self.tasks`` (an array with a
    leading ``num_envs`` axis). State lives in arrays with a leading ``num_envs`` axis; no method
    may loop over copies in Python. ``state_attributes`` names every attribute the next step depends
    on (what a checkpoint saves); per-task lookup tables that ``set_tasks`` fills count as state.
    """

    state_attributes: ClassVar[tuple[str, ...]] = ("tasks",)

    family: ClassVar[str]
    #: Whether reaching ``per_episode_limit`` is a time-limit truncation (bootstrap from the value)
    #: rather than the natural end of the episode.
    limit_is_truncation: ClassVar[bool] = False
    #: Bounds of one step's reward (what ``TransitionObservation`` uses for its ``r_prev`` slot).
    reward_range: tuple[float, float] = (-float("inf"), float("inf"))
    #: Whether finite Box actions outside the action space are accepted (the dynamics clamp them
    #: themselves, as MuJoCo does for ``ctrllimited`` actuators) instead of raising ``ValueError``.
    accepts_unclipped_actions: ClassVar[bool] = False
    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array", "ansi"], "render_fps": 8}

    observation_space: spaces.Box | spaces.Discrete
    action_space: spaces.Discrete | spaces.Box
    task_space: spaces.Space
    per_episode_limit: int
    tasks: np.ndarray

    def __init__(self, num_envs: int) -> None:
        self.num_envs = check_int("num_envs", num_envs, 1, MAX_NUM_ENVS)

    def extra_bytes_per_copy(self) -> int:
        """Memory a copy holds outside the core's numpy attributes (e.g. a physics engine's own state)."""
        return 0

    # --- tasks -----------------------------------------------------------------------------
    #: How many uniforms :meth:`tasks_from_uniforms` consumes per task.
    task_uniforms: ClassVar[int] = 1

    @abc.abstractmethod
    def tasks_from_uniforms(self, u: np.ndarray) -> np.ndarray:
        """Map uniforms of shape ``(n, task_uniforms)`` to ``n`` tasks drawn from the task distribution."""

    @abc.abstractmethod
    def check_task(self, task: Any) -> np.ndarray:
        """Return ``task`` as a valid task array or raise ``ValueError`` naming family and value."""

    def set_tasks(self, idx: np.ndarray, tasks: np.ndarray) -> None:
        """Give copies ``idx`` these (valid) tasks; override to refresh per-task lookup arrays."""
        self.tasks[idx] = tasks

    def invalid_task(self, task: Any, allowed: str) -> ValueError:
        return ValueError(f"{self.family}: invalid task {task!r}; allowed: {allowed}")

    def checked_task(self, task: Any) -> np.ndarray:
        """:meth:`check_task` after refusing what numpy would cast silently (strings, booleans, complex)."""
        try:
            kind = np.asarray(task).dtype.kind
        except (TypeError, ValueError):  # ragged
            kind = "O"
        if task is None or kind not in "iuf":
            self.check_task(task)  # the family's own message (naming the allowed tasks) where it refuses
            raise ValueError(f"{self.family}: invalid task {task!r}; a task is a number or an array of numbers "
                             f"(not a string, boolean, complex or None) in {self.task_space}")
        return self.check_task(task)

    # --- dynamics --------------------------------------------------------------------------
    @abc.abstractmethod
    def start_episodes(self, idx: np.ndarray, rng: CounterRNG) -> None:
        """Put copies ``idx`` at the start of a new episode of their current task."""

    @abc.abstractmethod
    def step(self, actions: np.ndarray, rng: CounterRNG) -> tuple[np.ndarray, np.ndarray]:
        """Advance every copy one step; return ``(reward float64 (N,), episode_over bool (N,))``.

        Copies whose episode is over stay as they are until the runner calls :meth:`start_episodes`.
        Draw the same number of uniforms for every copy on every step, so that a copy's stream does
        not depend on what the other copies do.
        """

    @abc.abstractmethod
    def observe(self, out: np.ndarray) -> None:
        """Write every copy's observation into ``out[:, :obs_dim]`` (float32, shape ``(N, >=obs_dim)``)."""

    # --- rendering -------------------------------------------------------------------------
    @abc.abstractmethod
    def render_ansi(self, i: int) -> str:
        """A text picture of copy ``i``."""

    @abc.abstractmethod
    def render_rgb(self, i: int) -> np.ndarray:
        """A small ``uint8`` RGB image of copy ``i``."""


class TrialRunner(StateOwner):
    """Trials of ``episodes_per_trial`` episodes over a :class:`FamilyCore`, for all copies at once."""

    # ``_obs`` holds the trial-flag column between steps.
    state_attributes = ("episode", "t", "episode_return", "_obs", "_flag_set")
    state_parts = ("core", "rng")

    def __init__(self, core: FamilyCore, episodes_per_trial: int) -> None:
        self.core = core
        self.episodes_per_trial = check_int("episodes_per_trial", episodes_per_trial, 1)
        self.has_flag = self.episodes_per_trial > 1
        n = core.num_envs
        self.rng = CounterRNG(n)
        self.episode = np.zeros(n, dtype=np.int64)
        self.t = np.zeros(n, dtype=np.int64)
        self.episode_return = np.zeros(n, dtype=np.float64)
        # Constants as arrays: mixing Python scalars into tiny-array ops costs more than the op.
        self._one = np.ones(n, dtype=np.int64)
        self._limit = np.full(n, core.per_episode_limit, dtype=np.int64)
        self._last_episode = np.int64(self.episodes_per_trial - 1)
        self._none = np.zeros(n, dtype=bool)
        self._flag_set = False  # whether some copy shows the boundary flag (cleared on the next step)
        self._discrete_actions = isinstance(core.action_space, spaces.Discrete)
        self._action_shape = (n, *core.action_space.shape)
        if not self._discrete_actions:
            self._action_limit = np.finfo(core.action_space.dtype).max
        base = core.observation_space
        # Families with a Discrete observation (a cell index) write the index into column 0.
        self.discrete_obs = isinstance(base, spaces.Discrete)
        if self.discrete_obs and self.has_flag:
            raise ValueError(
                f"{core.family}: a Discrete (index) observation has no room for the trial flag; "
                f"use episodes_per_trial=1 or a Box observation, got episodes_per_trial={episodes_per_trial}"
            )
        self.obs_dim = 1 if self.discrete_obs else base.shape[0] + int(self.has_flag)
        self._obs = np.zeros((n, self.obs_dim), dtype=np.float32)
        if self.discrete_obs:
            self.observation_space = spaces.Discrete(base.n)
        elif self.has_flag:
            low = np.append(base.low, np.float32(0.0))
            high = np.append(base.high, np.float32(1.0))
            self.observation_space = spaces.Box(low, high, dtype=np.float32)
        else:
            self.observation_space = spaces.Box(base.low, base.high, dtype=np.float32)

    @property
    def max_trial_steps(self) -> int:
        return self.episodes_per_trial * self.core.per_episode_limit

    def start_trials(self, idx: np.ndarray, tasks: np.ndarray | None = None) -> None:
        """Begin new trials for copies ``idx``: the given tasks, or tasks drawn from their streams."""
        core = self.core
        if tasks is None:
            tasks = core.tasks_from_uniforms(self.rng.uniform(core.task_uniforms, idx))
        core.set_tasks(idx, tasks)
        self.episode[idx] = 0
        self.t[idx] = 0
        self.episode_return[idx] = 0.0
        core.start_episodes(idx, self.rng)
        if self.has_flag:
            self._obs[idx, -1] = 0.0

    def observe(self) -> np.ndarray:
        """The current observations (a fresh array: callers may keep it)."""
        self.core.observe(self._obs)
        if self.discrete_obs:
            return self._obs[:, 0].astype(np.int64)
        return self._obs.copy()

    def step(self, actions: np.ndarray) -> dict[str, np.ndarray]:
        """Step every copy; start the next inner episode where one ended inside a trial.

        Returns arrays over copies: ``obs`` (after any in-trial episode switch), ``reward``,
        ``episode_end`` (an inner episode ended on this step), ``trial_end``, ``truncated``
        (the trial ended by a per-episode time limit that counts as truncation), ``episode_return``
        (of the episode that ended; valid where ``episode_end``) and ``final_episode_observation``
        (valid where an episode ended but the trial goes on).
        """
        core = self.core
        reward, over = core.step(actions, self.rng)
        # Out-of-place arithmetic: on tiny arrays numpy's in-place path costs twice as much.
        self.t = self.t + self._one
        self.episode_return = self.episode_return + reward
        timeout = self.t >= self._limit
        over = over | timeout
        result = {"reward": reward, "episode_end": over}
        if self._flag_set:
            self._obs[:, -1] = 0.0
            self._flag_set = False
        if np.count_nonzero(over):
            trial_end = over & (self.episode == self._last_episode)
            result["episode_return"] = self.episode_return.copy()
            carry_on = over & ~trial_end
            if np.count_nonzero(carry_on):
                result["final_episode_observation"] = self.observe()
                idx = np.flatnonzero(carry_on)
                self.episode[idx] += 1
                self.t[idx] = 0
                self.episode_return[idx] = 0.0
                core.start_episodes(idx, self.rng)
                if self.has_flag:
                    self._obs[idx, -1] = 1.0
                    self._flag_set = True
            result["trial_end"] = trial_end
            result["truncated"] = trial_end & timeout if core.limit_is_truncation else self._none
        else:
            result["trial_end"] = result["truncated"] = self._none
        result["obs"] = self.observe()
        return result

    def check_actions(self, actions: Any) -> np.ndarray:
        """Actions as an array with a leading ``N`` axis; anything outside the action space raises."""
        space, n = self.core.action_space, self.core.num_envs
        if n == 1 and isinstance(actions, (int, np.integer)) and not isinstance(actions, (bool, np.timedelta64)) \
                and isinstance(space, spaces.Discrete):
            if 0 <= actions < space.n:  # the common single-env case, without building arrays twice
                return np.array([actions], dtype=np.int64)
        arr = self._action_array(actions)
        if self._discrete_actions:
            if arr.shape == () and n == 1:
                arr = arr.reshape(1)
            # dtype kinds, not np.issubdtype: numpy counts timedelta64 as an integer type
            integral = arr.dtype.kind in "iu" or (arr.dtype.kind == "f" and bool(np.all(arr == np.round(arr))))
            if arr.shape != (n,) or not integral or arr.min() < 0 or arr.max() >= space.n:
                raise ValueError(
                    f"{self.core.family}: actions must be {n} integer(s) in Discrete({space.n}) = "
                    f"[0, {space.n - 1}], got {actions!r}"
                )
            return arr.astype(np.int64)
        shape = self._action_shape
        if n == 1 and arr.shape == shape[1:]:
            arr = arr[None]
        if arr.dtype.kind not in "iuf":
            raise ValueError(f"{self.core.family}: actions must be real numbers (not {arr.dtype} values) with shape "
                             f"{shape}, got {actions!r}")
        # The ufunc reduction, not ``.all()`` (a Python-level wrapper): this runs on every step. Comparing
        # magnitudes with the action dtype's largest value refuses NaN, infinities and finite numbers that
        # the cast to float32 would turn into infinities.
        if arr.shape != shape or not np.logical_and.reduce(np.less_equal(np.abs(arr), self._action_limit), axis=None):
            raise ValueError(f"{self.core.family}: actions must be finite with |action| <= {self._action_limit:.4g} "
                             f"(the largest {space.dtype}) and shape {shape}, got {actions!r}")
        if not self.core.accepts_unclipped_actions and ((arr < space.low).any() or (arr > space.high).any()):
            raise ValueError(f"{self.core.family}: action {actions!r} is outside {space}")
        return arr.astype(space.dtype)

    def _action_array(self, actions: Any) -> np.ndarray:
        """``actions`` as a plain array; ragged sequences and masked entries raise ``ValueError``."""
        if isinstance(actions, np.ma.MaskedArray) and np.ma.is_masked(actions):
            raise ValueError(f"{self.core.family}: actions must not hold masked entries, got {actions!r}")
        try:
            return np.asarray(actions)
        except (TypeError, ValueError):
            raise ValueError(f"{self.core.family}: actions must form an array of shape {self._action_shape} "
                             f"(not a ragged sequence), got {actions!r}") from None


def _masked_rows(values: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``values`` where ``mask`` (rows), zeros of the same dtype elsewhere; and the mask."""
    return np.where(mask.reshape(-1, *([1] * (values.ndim - 1))), values, 0).astype(values.dtype), mask.copy()


def check_seed(seed: Any) -> int | None:
    """A seed as Gymnasium takes it: None or an integer >= 0 (numpy integers too; not booleans)."""
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be None or an integer >= 0, got {seed!r}")
    return int(seed)


def _copy_seeds(seed: int | list[int | None] | None, n: int) -> list[int | None]:
    """Each copy's seed: ``seed + i`` for an integer, the list's entries (None or integers >= 0) for a list."""
    if seed is None:
        return [None] * n
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        return [check_seed(seed) + i for i in range(n)]
    if not isinstance(seed, (list, tuple, np.ndarray)):
        raise ValueError(f"seed must be None, an integer >= 0 or a list of {n} of them (or None), got {seed!r}")
    if len(seed) != n:
        raise ValueError(f"seed must be a list of {n} seeds (one per copy), got {len(seed)}: {seed!r}")
    return [check_seed(s) for s in seed]


def resolve_core(core: type[FamilyCore] | str | None, default: type[FamilyCore] | None,
                 family: type[FamilyCore] | None = None) -> type[FamilyCore]:
    """The core class ``core`` names (a class or a ``"module:Class"`` path), else ``default``.

    The registry names each id's core by path, so ``import metarl_envs`` imports no family module.
    With ``family`` (the base class of one family's cores) another family's core is refused: its run
    would be stored under this family's id.
    """
    if core is None:
        if default is None:
            raise ValueError("core must name a FamilyCore subclass (a class or 'module:Class'), got None")
        return default
    if isinstance(core, str):
        module, _, name = core.partition(":")
        try:
            core = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError, ValueError):
            raise ValueError(f"core must name a FamilyCore subclass as 'module:Class', got {core!r}") from None
    if not (isinstance(core, type) and issubclass(core, FamilyCore)):
        raise ValueError(f"core must be a FamilyCore subclass or 'module:Class', got {core!r}")
    if family is not None and not issubclass(core, family):
        raise ValueError(f"core {core.__module__}:{core.__name__} is not a core of this family: allowed are "
                         f"subclasses of {family.__module__}:{family.__name__} (another family has its own id)")
    return core


def family_of(env_class: Any) -> type[FamilyCore] | None:
    """The base class of the cores ``env_class`` (a :class:`MetaEnv` subclass) runs, or None."""
    if isinstance(env_class, type) and issubclass(env_class, MetaEnv):
        return env_class.core_family or env_class.core_class
    return None


def bytes_per_copy(core_class: type[FamilyCore], episodes_per_trial: int, kwargs: dict[str, Any]) -> int:
    """The memory one more copy of a vector env needs: what two small probe runners hold, differenced,
    plus the random streams' working arrays and what the family keeps outside numpy."""
    one, two = (TrialRunner(core_class(n, **kwargs), episodes_per_trial) for n in (1, 2))
    held = [array_bytes(runner, runner.core, runner.rng) for runner in (one, two)]
    return max(0, held[1] - held[0]) + STREAM_BYTES_PER_COPY + two.core.extra_bytes_per_copy()


class MetaEnv(StateOwner, gym.Env):
    """A meta-RL task family as a ``gymnasium.Env``: one trial per Gymnasium episode.

    A family module subclasses this once with its documentation and its default ``core_class``; the
    family's variants are other cores, chosen with the ``core`` kwarg (a class or ``"module:Class"``,
    which is how each id is registered). The other kwargs are the core's kwargs plus
    ``episodes_per_trial``, ``render_mode`` and ``render_scale`` (the integer enlargement of
    ``rgb_array`` frames; ``None``: the least that gives a long side of at least 256 pixels,
    ``MIN_FRAME_SIDE``; the ANSI render is unaffected).

    Trials end by themselves after at most :attr:`max_trial_steps` (``episodes_per_trial`` times the
    family's per-episode limit) steps, so no id registers a ``TimeLimit``: ``gymnasium.make(id,
    episodes_per_trial=8)`` runs 8 episodes per trial, and ``env.spec.max_episode_steps`` reports the
    bound that follows from the env's own kwargs.
    """

    core_class: ClassVar[type[FamilyCore] | None] = None
    #: The base class of the family's cores, which the ``core`` kwarg must subclass (default: ``core_class``).
    core_family: ClassVar[type[FamilyCore] | None] = None
    #: The ``reset`` options a single env understands.
    reset_options: ClassVar[tuple[str, ...]] = ("task",)
    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array", "ansi"], "render_fps": 8}
    _spec: gym.envs.registration.EnvSpec | None = None
    state_attributes = ("_np_random", "_np_random_seed", "_needs_key", "_trial_over")
    state_parts = ("runner",)

    def __init__(self, episodes_per_trial: int = 1, render_mode: str | None = None, render_scale: int | None = None,
                 *, core: type[FamilyCore] | str | None = None, **kwargs: Any) -> None:
        self.render_scale = check_render_scale(render_scale)
        self.core_class = resolve_core(core, type(self).core_class, family_of(type(self)))
        self.runner = TrialRunner(self.core_class(1, **kwargs), episodes_per_trial)
        self._kwargs = dict(kwargs, episodes_per_trial=episodes_per_trial)
        self.core = self.runner.core
        self.observation_space = self.runner.observation_space
        self.action_space = self.core.action_space
        self.task_space = self.core.task_space
        self.reward_range = self.core.reward_range
        self.episodes_per_trial = self.runner.episodes_per_trial
        self.metadata = dict(self.core.metadata)
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}")
        self.render_mode = render_mode
        self._needs_key = True
        self._trial_over = True  # until the first reset
        self._idx = np.zeros(1, dtype=np.int64)

    @property
    def max_trial_steps(self) -> int:
        """The most steps a trial can take; the trial ends by itself there."""
        return self.runner.max_trial_steps

    @property
    def spec(self) -> gym.envs.registration.EnvSpec | None:
        return self._spec

    @spec.setter
    def spec(self, spec: gym.envs.registration.EnvSpec | None) -> None:
        # ``gymnasium.make`` sets the spec after construction; its step limit is this env's trial bound.
        self._spec = None if spec is None else dataclasses.replace(spec, max_episode_steps=self.max_trial_steps)

    # --- task API --------------------------------------------------------------------------
    def sample_tasks(self, n: int) -> list[np.ndarray]:
        """``n`` tasks drawn from the task distribution with ``self.np_random``."""
        n = check_int("sample_tasks(n)", n, 0)
        per_task = 8 * self.core.task_uniforms + self.core.tasks[0].nbytes + TASK_OBJECT_BYTES
        check_fits_in_memory(f"sample_tasks(n={n})", n * per_task, "draw fewer tasks at a time")
        u = self.np_random.random((n, self.core.task_uniforms))
        return list(self.core.tasks_from_uniforms(u))

    def set_task(self, task: Any) -> None:
        """Use ``task`` for the current and following trials until a reset draws a new one."""
        self.core.set_tasks(self._idx, self.core.checked_task(task)[None])

    def get_task(self) -> np.ndarray:
        return self.core.tasks[0].copy()

    # --- Gymnasium API ---------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Start a new trial; ``options={"task": task}`` fixes its task (any other key raises ``ValueError``)."""
        seed = check_seed(seed)
        options = check_reset_options(self.core.family, options, self.reset_options)
        task = None
        if "task" in options:
            task = self.core.checked_task(options["task"])[None]
        super().reset(seed=seed)
        if seed is not None or self._needs_key:
            self.runner.rng.seed([self.np_random])
            self._needs_key = False
        self.runner.start_trials(self._idx, task)
        self._trial_over = False
        return self.runner.observe()[0], {"task": self.core.tasks[0].copy(), "inner_episode": 0}

    def step(self, action: Any):
        if self._trial_over:
            raise gym.error.ResetNeeded(
                f"{self.core.family}: call reset() before step(): "
                + ("the env was never reset" if self._needs_key else "the trial has ended (terminated or truncated)")
            )
        r = self.runner.step(self.runner.check_actions(action))
        info: dict[str, Any] = {"task": self.core.tasks[0].copy(), "inner_episode": self.runner.episode.item()}
        if r["episode_end"].item():
            info["episode_end"] = True
            info["episode_return"] = r["episode_return"].item()
            if "final_episode_observation" in r and not r["trial_end"].item():
                info["final_episode_observation"] = r["final_episode_observation"][0]
        truncated = r["truncated"].item()
        terminated = r["trial_end"].item() and not truncated
        self._trial_over = terminated or truncated
        return r["obs"][0], r["reward"].item(), terminated, truncated, info

    def render(self):
        if self.render_mode == "rgb_array":
            return scale_frame(self.core.render_rgb(0), self.render_scale)
        if self.render_mode == "ansi":
            return self.core.render_ansi(0)
        return None


class MetaVectorEnv(StateOwner, VectorEnv):
    """``num_envs`` copies of a family stepped in one vectorised call (SAME_STEP autoreset).

    When a trial ends the copy is reset within the same ``step``: the returned observation is the
    new trial's first one, and ``info["final_obs"]`` / ``info["final_info"]`` (with their
    ``_final_obs`` / ``_final_info`` masks) hold the ending trial's last observation and info, as
    Gymnasium's ``SyncVectorEnv`` does in SAME_STEP mode and as SB3 needs.
    Infos are Gymnasium vector infos: arrays over copies, each key ``k`` with a mask ``_k``. Every
    step -- observations, rewards, flags and infos, dtypes included -- equals that of a SAME_STEP
    ``SyncVectorEnv`` over the unwrapped single envs with the same seed.
    """

    core_class: ClassVar[type[FamilyCore] | None] = None
    state_attributes = ("_np_random", "_np_random_seed", "_needs_key")
    state_parts = ("runner",)

    def __init__(self, num_envs: int = 1, episodes_per_trial: int = 1, render_mode: str | None = None,
                 max_episode_steps: int | None = None, render_scale: int | None = None, *,
                 core: type[FamilyCore] | str | None = None, **kwargs: Any):
        if max_episode_steps is not None:
            # make_vec passes it only when given (no id registers one); a limit that cut trials short
            # would end them before their episodes_per_trial episodes.
            raise ValueError(
                f"max_episode_steps is not supported by the meta-RL vector envs (got {max_episode_steps!r}): a trial "
                f"ends by itself after episodes_per_trial episodes; shorten episodes with the family's own kwargs"
            )
        num_envs = check_int("num_envs", num_envs, 1, MAX_NUM_ENVS)  # before any family allocates copies
        self.render_scale = check_render_scale(render_scale)
        self.core_class = resolve_core(core, type(self).core_class)
        if num_envs >= CHECK_FROM_NUM_ENVS:
            per_copy = bytes_per_copy(self.core_class, episodes_per_trial, kwargs)
            check_fits_in_memory(f"num_envs={num_envs} ({describe_bytes(per_copy)} per copy)", num_envs * per_copy,
                                 "use fewer copies")
        self.runner = TrialRunner(self.core_class(num_envs, **kwargs), episodes_per_trial)
        self.core = self.runner.core
        self.num_envs = self.core.num_envs
        self.metadata = dict(self.core.metadata, autoreset_mode=AutoresetMode.SAME_STEP)
        self.autoreset_mode = AutoresetMode.SAME_STEP
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}")
        self.render_mode = render_mode
        self.single_observation_space = self.runner.observation_space
        self.single_action_space = self.core.action_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.task_space = self.core.task_space
        self.reward_range = self.core.reward_range
        self._all = np.arange(self.num_envs)
        self._every_copy = np.ones(self.num_envs, dtype=bool)  # copied for info masks (cheaper than np.ones)
        self._needs_key = True

    @property
    def max_trial_steps(self) -> int:
        """The most steps a trial can take; the trial ends by itself there."""
        return self.runner.max_trial_steps

    @property
    def spec(self) -> gym.envs.registration.EnvSpec | None:
        # (vector envs pickled before the spec was checked hold it as a plain attribute)
        return self.__dict__.get("_spec", self.__dict__.get("spec"))

    @spec.setter
    def spec(self, spec: gym.envs.registration.EnvSpec | None) -> None:
        # ``gymnasium.make_vec`` sets the spec after construction; it names the id's single-env class,
        # whose family the ``core`` kwarg must belong to (the vector class is shared by several families).
        if spec is not None and isinstance(spec.entry_point, (str, type)):
            entry = spec.entry_point
            family = family_of(gym.envs.registration.load_env_creator(entry) if isinstance(entry, str) else entry)
            try:
                resolve_core(self.core_class, None, family)
            except ValueError as err:
                raise ValueError(f"{spec.id}: {err}") from None
        self.__dict__["_spec"] = spec

    #: The keys of a reset info (a new trial's first info).
    _RESET_INFO_KEYS: ClassVar[tuple[str, ...]] = ("task", "inner_episode")
    #: The ``reset`` options a vector env understands.
    reset_options: ClassVar[tuple[str, ...]] = ("tasks", "reset_mask")

    def reset(self, *, seed: int | list[int | None] | None = None, options: dict[str, Any] | None = None):
        """Start new trials in every copy; copy ``i`` is seeded with ``seed + i`` (or ``seed[i]``).

        ``options={"tasks": array}`` fixes the tasks (one per copy); otherwise each copy draws its own.
        ``options={"reset_mask": bool array}`` (Gymnasium 1.x) starts new trials only in the masked
        copies; the others keep their state, their random streams and their current observation. As in
        Gymnasium's vector envs, a seed then applies to the masked copies only: ``seed=s`` seeds copy
        ``i`` with ``s + i``, a list seeds copy ``i`` with ``seed[i]`` (``None``: not reseeded), and
        either way a reseeded copy behaves as a single env after ``reset(seed=...)`` with its seed.
        The first reset starts every copy whatever the mask (a copy never started has no trial to
        keep). Unknown option keys raise ``ValueError``.
        """
        options = check_reset_options(self.core.family, options, self.reset_options)
        seeds = _copy_seeds(seed, self.num_envs)
        idx = self._all
        if "reset_mask" in options:
            mask = self._checked_mask(options["reset_mask"])
            if not self._needs_key:
                idx = np.flatnonzero(mask)
        tasks = None
        if "tasks" in options:
            given = options["tasks"]
            if isinstance(given, (str, bytes)) or not hasattr(given, "__len__") or len(given) != self.num_envs:
                raise ValueError(f"options['tasks'] must hold {self.num_envs} tasks (one per copy), got {given!r}")
            tasks = np.stack([self.core.checked_task(t) for t in given])[idx]
        if isinstance(seed, (int, np.integer)):
            self._np_random, self._np_random_seed = seeding.np_random(int(seed))
        if self._needs_key:
            fallback = self.np_random
            self.runner.rng.seed([np.random.default_rng(fallback.integers(0, 2**63)) if s is None
                                  else seeding.np_random(s)[0] for s in seeds])
            self._needs_key = False
        else:
            reseeded = np.array([i for i in idx if seeds[i] is not None], dtype=np.int64)
            if len(reseeded):
                self.runner.rng.seed([seeding.np_random(seeds[i])[0] for i in reseeded], reseeded)
        self.runner.start_trials(idx, tasks)
        selected = np.zeros(self.num_envs, dtype=bool)
        selected[idx] = True
        info = {"task": self.core.tasks.copy(), "_task": selected, "inner_episode": self.runner.episode.copy(),
                "_inner_episode": selected.copy()}
        return self.runner.observe(), info

    def _checked_mask(self, mask: Any) -> np.ndarray:
        """A ``reset_mask`` as Gymnasium's vector envs take it: a bool array over copies selecting one or more."""
        if not (isinstance(mask, np.ndarray) and mask.dtype == np.bool_ and mask.shape == (self.num_envs,)):
            raise ValueError(f"options['reset_mask'] must be a numpy bool array of shape ({self.num_envs},), got {mask!r}")
        if not mask.any():
            raise ValueError(f"options['reset_mask'] must select at least one copy, got {mask!r}")
        return mask

    def step(self, actions: Any):
        if self._needs_key:
            raise gym.error.ResetNeeded(f"{self.core.family}: call reset() before the first step() of a vector env")
        runner = self.runner
        r = runner.step(runner.check_actions(actions))
        n = self.num_envs
        ones = self._every_copy.copy()
        episode = runner.episode.copy()
        info: dict[str, Any] = {"task": self.core.tasks.copy(), "_task": ones, "inner_episode": episode, "_inner_episode": ones}
        info.update(self.step_info())
        ended = r["episode_end"]
        # count_nonzero, not ``.any()`` (a Python-level wrapper): this runs on every step.
        if np.count_nonzero(ended):
            info["episode_end"] = ended.copy()
            info["_episode_end"] = ended.copy()
            info["episode_return"] = np.where(ended, r["episode_return"], 0.0)
            info["_episode_return"] = ended.copy()
            if "final_episode_observation" in r:
                boundary = ended & ~r["trial_end"]
                feo = r["final_episode_observation"]
                info["final_episode_observation"] = np.where(boundary.reshape(-1, *([1] * (feo.ndim - 1))), feo, 0).astype(feo.dtype)
                info["_final_episode_observation"] = boundary
        trial_end = r["trial_end"]
        terminated = trial_end & ~r["truncated"]
        truncated = r["truncated"].copy()
        obs = r["obs"]
        if np.count_nonzero(trial_end):
            idx = np.flatnonzero(trial_end)
            final_obs = np.full(n, None, dtype=object)
            final_obs[idx] = list(obs[idx])
            # As Gymnasium's SyncVectorEnv in SAME_STEP mode: ``final_info`` holds the ending trials'
            # step info (zeros and False masks elsewhere), and their step info is the new trial's
            # reset info, so the step-only keys are masked out for them.
            final_info: dict[str, Any] = {}
            going_on = ~trial_end
            for key in [k for k in info if not k.startswith("_")]:
                values, mask = info[key], info["_" + key]
                if (mask & trial_end).any():
                    final_info[key], final_info["_" + key] = _masked_rows(values, mask & trial_end)
                if key not in self._RESET_INFO_KEYS:
                    del info[key], info["_" + key]
                    if (mask & going_on).any():
                        info[key], info["_" + key] = _masked_rows(values, mask & going_on)
            runner.start_trials(idx)
            obs = runner.observe()
            info["task"] = self.core.tasks.copy()
            info["inner_episode"] = runner.episode.copy()
            info["final_obs"] = final_obs
            info["_final_obs"] = trial_end.copy()
            info["final_info"] = final_info
            info["_final_info"] = trial_end.copy()
        return obs, r["reward"].copy(), terminated, truncated, info

    def step_info(self) -> dict[str, np.ndarray]:
        """Family-specific vector info of this step (arrays over copies, each with its ``_key`` mask)."""
        return {}

    def render(self):
        if self.render_mode == "rgb_array":
            return tuple(scale_frame(self.core.render_rgb(i), self.render_scale) for i in range(self.num_envs))
        if self.render_mode == "ansi":
            return tuple(self.core.render_ansi(i) for i in range(self.num_envs))
        return None
