"""2-D point navigation (Finn et al. 2017, MAML's ``2D navigation``): walk a point mass to a hidden goal.

## Description
A point in the plane starts every episode at ``start`` and moves by ``max_step`` times its action,
clipped to ``[-1, 1]`` per coordinate, each step. The goal (the task) is not observed: the agent
must infer it from the reward, the negative distance to the goal. It is the cheapest continuous-control
task on which meta-RL shows: a policy gradient step from a good prior finds the goal's direction.

* ``MetaPointNav2D-v0``: MAML's setting: start at the origin, goals uniform in ``[-0.5, 0.5]^2``,
  steps of at most 0.1, 100 steps. From the origin every goal is at most 0.71 away, so an untrained
  Gaussian policy that adapts already does well; ``start=(-1.5, -1.5)`` (all goals 1.3 to 2.7 away)
  leaves meta-learning room to show.

## Action Space
``Box(-1, 1, (2,), float32)``: the displacement in units of ``max_step`` (MAML's environment takes the
displacement itself, clipped to ``+-0.1``; the unit box is what SB3 expects). Finite actions outside
the box are accepted and clipped by the dynamics, so Gaussian policies can step the raw sample.

## Observation Space
``Box(start - episode_steps * max_step, start + episode_steps * max_step, (2,), float32)``: the
position (the bounds are the farthest an episode can go). With ``episodes_per_trial > 1`` a trailing
episode-boundary flag makes it ``(3,)``.

## Rewards
``-||position - goal||`` after the step: at most 0, at least minus the largest distance between a
reachable position and a goal (the ``reward_range``).

## Starting State
``start`` (deterministic) at every episode start.

## Episode End
After exactly ``episode_steps`` (100) steps (``terminated=True``: the horizon is part of the task).
MAML's environment also ends an episode within 0.01 of the goal; here episodes keep their length so
that batches of trajectories stay rectangular, and a point that stays on the goal earns 0 a step, so
the best behaviour is the same.

## Arguments
``start`` (two finite numbers, ``(0, 0)``), ``goal_low`` / ``goal_high`` (two finite numbers each,
``low <= high`` per coordinate; ``(-0.5, -0.5)`` / ``(0.5, 0.5)``), ``max_step`` (``(0, 10]``, 0.1),
``episode_steps`` (>= 1, 100), ``episodes_per_trial`` (>= 1, 1), ``render_mode`` (``"rgb_array"``:
the reachable square with the goal in green and the point in red; ``"ansi"``), ``render_scale``.

## Tasks
``[gx, gy]`` (float64) uniform in ``[goal_low, goal_high]``; any goal in that box may be set.

## Optimal and chance returns (defaults)
Stepping straight at the goal at full speed and staying there: about -0.5 on average over the goals
(from ``start=(-1.5, -1.5)``: about -16). Standing still at the origin: about -38 (100 times the mean
distance to a goal); uniformly random actions: about -62.

## Version History
* v0: initial release.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from gymnasium import spaces

from metarl_envs.core import FamilyCore, MetaEnv, check_float, check_int
from metarl_envs.rendering import PALETTE, canvas
from metarl_envs.rng import CounterRNG

#: Side of the square ``rgb_array`` cell map (before enlargement).
FRAME_SIDE = 64


def _pair(name: str, value: Any) -> np.ndarray:
    """Two finite numbers as a float64 array, or a ``ValueError`` naming ``name``."""
    numbers = isinstance(value, (tuple, list, np.ndarray)) and len(value) == 2 and all(
        isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) for v in value)
    if not numbers or not np.all(np.isfinite(np.asarray(value, dtype=np.float64))):
        raise ValueError(f"{name} must be two finite numbers (x, y), got {value!r}")
    return np.asarray(value, dtype=np.float64)


class PointNavCore(FamilyCore):
    """``num_envs`` points in the plane; the state is each point's position."""

    family = "MetaPointNav2D"
    accepts_unclipped_actions = True  # the dynamics clip, as MAML's environment does
    task_uniforms: ClassVar[int] = 2

    state_attributes = ("tasks", "position")

    def __init__(self, num_envs: int, start: Any = (0.0, 0.0), goal_low: Any = (-0.5, -0.5),
                 goal_high: Any = (0.5, 0.5), max_step: float = 0.1, episode_steps: int = 100) -> None:
        super().__init__(num_envs)
        self.start = _pair("start", start)
        self.goal_low, self.goal_high = _pair("goal_low", goal_low), _pair("goal_high", goal_high)
        if np.any(self.goal_low > self.goal_high):
            raise ValueError(f"goal_low must be <= goal_high in each coordinate, got {goal_low!r} and {goal_high!r}")
        self.max_step = check_float("max_step", max_step, 0.0, 10.0, open_low=True)
        self.per_episode_limit = check_int("episode_steps", episode_steps, 1, 100_000)
        reach = self.per_episode_limit * self.max_step
        self.observation_space = spaces.Box((self.start - reach).astype(np.float32),
                                            (self.start + reach).astype(np.float32), dtype=np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self.task_space = spaces.Box(self.goal_low, self.goal_high, dtype=np.float64)
        # The farthest a reachable position can be from a goal: the reward's lower bound (widened by
        # a few rounding errors, as positions accumulate them step by step).
        farthest = np.maximum(np.abs(self.start + reach - self.goal_low), np.abs(self.goal_high - self.start + reach))
        self.reward_range = (-float(np.sqrt(np.square(farthest).sum())) * (1 + 1e-9), 0.0)
        self.tasks = np.tile((self.goal_low + self.goal_high) / 2, (num_envs, 1))
        self.position = np.tile(self.start, (num_envs, 1))

    # --- tasks -----------------------------------------------------------------------------
    def tasks_from_uniforms(self, u: np.ndarray) -> np.ndarray:
        return self.goal_low + (self.goal_high - self.goal_low) * u

    def check_task(self, task: Any) -> np.ndarray:
        try:
            arr = np.asarray(task, dtype=np.float64).reshape(2)
        except (TypeError, ValueError):
            arr = None
        if arr is None or not np.all(np.isfinite(arr)) or np.any(arr < self.goal_low) or np.any(arr > self.goal_high):
            raise self.invalid_task(task, f"[gx, gy] in the goal box {self.goal_low.tolist()} .. {self.goal_high.tolist()}")
        return arr

    # --- dynamics --------------------------------------------------------------------------
    def start_episodes(self, idx: np.ndarray, rng: CounterRNG) -> None:
        self.position[idx] = self.start

    def step(self, actions: np.ndarray, rng: CounterRNG) -> tuple[np.ndarray, np.ndarray]:
        self.position = self.position + self.max_step * np.clip(actions.astype(np.float64), -1.0, 1.0)
        distance = np.sqrt(np.square(self.position - self.tasks).sum(1))
        return -distance, np.zeros(self.num_envs, dtype=bool)

    def observe(self, out: np.ndarray) -> None:
        out[:, :2] = self.position

    # --- rendering -------------------------------------------------------------------------
    def render_ansi(self, i: int) -> str:
        x, y = self.position[i]
        gx, gy = self.tasks[i]
        return f"point=({x:+.3f}, {y:+.3f}) goal=({gx:+.3f}, {gy:+.3f}) distance={np.hypot(x - gx, y - gy):.3f}\n"

    def render_rgb(self, i: int) -> np.ndarray:
        """The reachable square (``start +- episode_steps * max_step``); goal green, point red."""
        image = canvas(FRAME_SIDE, FRAME_SIDE, "floor")
        low, high = self.observation_space.low.astype(np.float64), self.observation_space.high.astype(np.float64)

        def pixel(p: np.ndarray) -> tuple[int, int]:
            col, row = np.clip(((p - low) / (high - low) * (FRAME_SIDE - 1)).round().astype(int), 0, FRAME_SIDE - 1)
            return FRAME_SIDE - 1 - row, col  # y grows upwards

        for point, colour in ((self.tasks[i], "goal"), (self.position[i], "agent")):
            row, col = pixel(point)
            image[max(row - 1, 0) : row + 2, max(col - 1, 0) : col + 2] = PALETTE[colour]
        return image


class MetaPointNav2DEnv(MetaEnv):
    __doc__ = __doc__
    core_class = PointNavCore
