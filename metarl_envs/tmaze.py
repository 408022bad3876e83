"""T-maze task families: a long corridor whose end is a junction; the task is the rewarded side.

## Description
The agent starts at position 0 of a corridor of ``length`` cells; the last cell (``length - 1``)
is a T junction. An indicator near the start shows which arm (UP or DOWN) is rewarded; the agent
has to remember it for the whole corridor, across noise, and -- because a trial holds several
episodes of the same task -- can also carry it from one episode to the next. Four variants:

* ``MetaTMaze-v0`` (the SplAgger paper's "T-LS"): every action moves the agent right until the
  junction, where LEFT is read as UP and RIGHT as DOWN.
* ``MetaTMazeLongShort-v0`` (AMRL's Long-Short): no forced moves; at every corridor cell the agent
  must answer the noise bit (UP for +1, DOWN for -1) to move on.
* ``MetaTMazeAgreement-v0``: two independent indicators (positions 1 and 50); the correct arm is
  DOWN when they agree and UP when they differ.
* ``MetaTMazeLatent-v0``: no visible indicator; the noise bit is +1 with probability ``p_up`` when
  the goal is UP and ``p_down`` when it is DOWN, so the goal has to be inferred -- and, once an
  episode's outcome reveals it, remembered for the rest of the trial.

## Action Space
``Discrete(4)``: 0 LEFT, 1 RIGHT, 2 UP, 3 DOWN.

## Observation Space
``Box(4,)`` float32 ``[is_start, indicator, is_end, noise]`` with low ``[0, -1, 0, -1]`` and high
``[1, 1, 1, 1]``; with ``episodes_per_trial > 1`` a trailing episode-boundary flag in ``[0, 1]``.
``indicator`` is the goal (+1 UP, -1 DOWN) at an indicator position, else 0; ``noise`` is a fresh
+-1 draw after every step and at every episode start.

## Rewards
+4 for choosing the goal arm at the junction, -3 for the other arm (either ends the episode).
LongShort: +0.1 for each correct check. Everything else 0.

## Starting State
Position 0 with a fresh noise bit, at every episode start.

## Episode End
An inner episode ends when the agent chooses an arm, or by the timeout: as in the reference
experiments, after ``episode_limit`` (150) ordinary steps comes one *timeout step* that ignores the
action (the agent does not move), pays 0 and ends the episode -- a timed-out episode is
``episode_limit + 1`` (151) steps long. A trial ends after ``episodes_per_trial`` (4) episodes; the
next inner episode of a trial starts in the same step with the boundary flag set (see
:mod:`metarl_envs.core`). The registered ids allow ``4 x 151 = 604`` steps per trial.

## Arguments
``length`` (>= 3; Agreement: > ``second_indicator_pos`` + 1), ``episodes_per_trial`` (>= 1),
``episode_limit`` (ordinary steps before the timeout step, >= 1), ``indicator_pos`` (in
``[1, length - 2]``), Agreement's ``second_indicator_pos``, Latent's ``p_up`` / ``p_down`` (in ``[0, 1]``), ``render_mode``.

## Tasks
``[goal]`` with goal +1 (UP) or -1 (DOWN), uniform. Agreement: ``[i1, i2]``, each +-1, uniform.

## Optimal and chance returns (defaults)
MetaTMaze, Agreement: optimal trial 16.0 (4 x 4); memoryless guessing 2.0 (0.5 x 4 - 0.5 x 3 per
episode). LongShort: optimal 55.6 (4 x (99 x 0.1 + 4)). Latent: Bayes-optimal about 15.9.

## Version History
* v0: initial release; the timeout step (``episode_limit + 1`` steps per timed-out episode) as in
  the reference experiments.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from gymnasium import spaces

from metarl_envs.core import FamilyCore, MetaEnv, check_float, check_int
from metarl_envs.rendering import PALETTE, canvas, upscale
from metarl_envs.rng import CounterRNG

#: Longest corridor (the observation table has a row per cell).
MAX_LENGTH = 10**6

LEFT, RIGHT, UP, DOWN = 0, 1, 2, 3
CORRECT_REWARD, WRONG_REWARD, CHECK_REWARD = 4.0, -3.0, 0.1
# Indexed by "the chosen arm is the goal arm" (False, True).
_END_REWARD = np.array([WRONG_REWARD, CORRECT_REWARD])
# Indexed by the noise bit (0 for +1, 1 for -1).
_NOISE_VALUE = np.array([1.0, -1.0], dtype=np.float32)


def _longshort_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Long-Short outcomes indexed by ``((at_end * 4 + action) * 2 + noise_bit) * 2 + goal_arm``."""
    reward, moved, decided = np.zeros(32), np.zeros(32, dtype=np.int64), np.zeros(32, dtype=bool)
    for at_end in (0, 1):
        for action in range(4):
            for noise_bit in (0, 1):
                for goal_arm in (0, 1):
                    code = ((at_end * 4 + action) * 2 + noise_bit) * 2 + goal_arm
                    answer = action - UP  # 0 UP, 1 DOWN; negative for LEFT/RIGHT (no-ops)
                    if at_end and answer >= 0:
                        decided[code] = True
                        reward[code] = CORRECT_REWARD if answer == goal_arm else WRONG_REWARD
                    elif not at_end and answer == noise_bit:
                        moved[code] = 1
                        reward[code] = CHECK_REWARD
    return reward, moved, decided


_LONGSHORT_REWARD, _LONGSHORT_MOVE, _LONGSHORT_DECIDED = _longshort_tables()


class TMazeCore(FamilyCore):
    """The forced-right T-maze with a visible indicator (``MetaTMaze-v0``); base of the variants.

    Arms and noise are kept as bits (0 = UP / +1, 1 = DOWN / -1) so that a step is a handful of
    integer array operations; the ``[is_start, indicator, is_end]`` part of the observation is
    read from a per-task table indexed by position.
    """

    family = "MetaTMaze"
    reward_range = (WRONG_REWARD, CORRECT_REWARD)
    forced_right: ClassVar[bool] = True
    n_indicators: ClassVar[int] = 1

    state_attributes = ("tasks", "task_id", "goal_arm", "pos", "steps", "noise_bit")

    def __init__(self, num_envs: int, length: int = 100, indicator_pos: int = 1, episode_limit: int = 150) -> None:
        super().__init__(num_envs)
        self.length = check_int("length", length, 3, MAX_LENGTH)
        self.indicator_pos = check_int("indicator_pos", indicator_pos, 1, self.length - 2)
        self.episode_limit = check_int("episode_limit", episode_limit, 1)
        self.per_episode_limit = self.episode_limit + 1  # the ordinary steps and the timeout step
        self.observation_space = spaces.Box(
            np.array([0, -1, 0, -1], dtype=np.float32), np.array([1, 1, 1, 1], dtype=np.float32), dtype=np.float32
        )
        self.action_space = spaces.Discrete(4)
        self.task_space = spaces.Box(-1.0, 1.0, shape=(self.n_indicators,), dtype=np.float32)
        self.task_uniforms = self.n_indicators
        self._last = np.int64(self.length - 1)
        self._timeout_at = np.int64(self.episode_limit)  # an array scalar: cheaper to compare against
        self.pos = np.zeros(num_envs, dtype=np.int64)
        self.steps = np.zeros(num_envs, dtype=np.int64)  # steps taken in the current episode
        self.noise_bit = np.zeros(num_envs, dtype=np.int64)
        self.goal_arm = np.zeros(num_envs, dtype=np.int64)  # 0 UP, 1 DOWN
        self.task_id = np.zeros(num_envs, dtype=np.int64)
        self._obs_table = self._build_obs_table()
        self.tasks = np.ones((num_envs, self.n_indicators), dtype=np.float32)
        self.set_tasks(np.arange(num_envs), self.tasks)

    # --- tasks -----------------------------------------------------------------------------
    def tasks_from_uniforms(self, u: np.ndarray) -> np.ndarray:
        return np.where(u < 0.5, 1.0, -1.0).astype(np.float32)

    def check_task(self, task: Any) -> np.ndarray:
        try:
            arr = np.asarray(task, dtype=np.float32).reshape(self.n_indicators)
        except (TypeError, ValueError):
            arr = None
        if arr is None or not np.all(np.abs(arr) == 1.0):
            raise self.invalid_task(task, f"an array of {self.n_indicators} value(s), each +1 (UP) or -1 (DOWN)")
        return arr

    def set_tasks(self, idx: np.ndarray, tasks: np.ndarray) -> None:
        self.tasks[idx] = tasks
        bits = (self.tasks[idx] < 0).astype(np.int64)  # per indicator: 0 UP, 1 DOWN
        self.task_id[idx] = bits @ (1 << np.arange(self.n_indicators))
        self.goal_arm[idx] = self.goal_arm_of(bits)

    def goal_arm_of(self, bits: np.ndarray) -> np.ndarray:
        """The rewarded arm (0 UP, 1 DOWN) from the indicator bits of each task."""
        return bits[:, 0]

    def indicator_cells(self, task: np.ndarray) -> dict[int, float]:
        """Indicator value shown at each indicator position for ``task``."""
        return {self.indicator_pos: float(task[0])}

    def _build_obs_table(self) -> np.ndarray:
        """``[is_start, indicator, is_end]`` for every (task id, position)."""
        n_tasks = 2**self.n_indicators
        table = np.zeros((n_tasks, self.length, 3), dtype=np.float32)
        table[:, 0, 0] = 1.0
        table[:, -1, 2] = 1.0
        for task_id in range(n_tasks):
            task = np.array([-1.0 if task_id >> k & 1 else 1.0 for k in range(self.n_indicators)])
            for pos, value in self.indicator_cells(task).items():
                table[task_id, pos, 1] = value
        return table

    # --- dynamics --------------------------------------------------------------------------
    def noise_bits(self, u: np.ndarray, idx: np.ndarray | slice) -> np.ndarray:
        """Noise bits (0 for +1, 1 for -1) from uniforms; fair coins here."""
        return (u >= 0.5).astype(np.int64)

    def start_episodes(self, idx: np.ndarray, rng: CounterRNG) -> None:
        self.pos[idx] = 0
        self.steps[idx] = 0
        self.noise_bit[idx] = self.noise_bits(rng.uniform(1, idx)[:, 0], idx)

    def step(self, actions: np.ndarray, rng: CounterRNG) -> tuple[np.ndarray, np.ndarray]:
        timeout = self.steps == self._timeout_at
        self.steps = self.steps + 1
        if np.count_nonzero(timeout):
            before = self.pos
            reward, decided = self._move(actions)
            self.pos = np.where(timeout, before, self.pos)  # the timeout step ignores the action ...
            reward, decided = np.where(timeout, 0.0, reward), decided | timeout  # ... pays 0 and ends
        else:
            reward, decided = self._move(actions)
        self.noise_bit = self.noise_bits(rng.uniform(1)[:, 0], slice(None))
        return reward, decided

    def _move(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The ordinary step: move every copy, return ``(reward, the arm was chosen)``."""
        at_end = self.pos == self._last
        if self.forced_right:
            # Every move goes right; at the junction LEFT/UP (even) read as UP, RIGHT/DOWN (odd) as DOWN.
            decided = at_end
            reward = _END_REWARD[((actions & 1) == self.goal_arm).view(np.int8)] * at_end
            self.pos = self.pos + ~at_end
        else:
            # One gather from a table over (at the junction, action, noise bit, goal arm).
            code = ((at_end.view(np.int8) * 4 + actions) * 2 + self.noise_bit) * 2 + self.goal_arm
            reward, moved, decided = _LONGSHORT_REWARD[code], _LONGSHORT_MOVE[code], _LONGSHORT_DECIDED[code]
            self.pos = self.pos + moved
        return reward, decided

    def observe(self, out: np.ndarray) -> None:
        out[:, :3] = self._obs_table[self.task_id, self.pos]
        out[:, 3] = _NOISE_VALUE[self.noise_bit]

    # --- rendering -------------------------------------------------------------------------
    def render_ansi(self, i: int) -> str:
        cells = ["."] * self.length
        for p, v in self.indicator_cells(self.tasks[i]).items():
            cells[p] = "u" if v > 0 else "d"
        cells[-1] = "T"
        cells[int(self.pos[i])] = "A"
        goal = "DOWN" if self.goal_arm[i] else "UP"
        return f"{''.join(cells)}  goal={goal} noise={int(_NOISE_VALUE[self.noise_bit[i]]):+d}\n"

    def render_rgb(self, i: int) -> np.ndarray:
        """Corridor as a strip of cells, the two arms above and below the junction, agent in red.

        Indicator cells are blue (UP) or orange (DOWN), the goal arm's tip green, and the strip under
        the corridor shows the current noise bit (light +1, dark -1).
        """
        up_is_goal = self.goal_arm[i] == 0
        cells = canvas(5, self.length + 2)
        cells[2, 1 : self.length + 1] = PALETTE["floor"]
        cells[0:5, self.length] = PALETTE["floor"]
        cells[0, self.length] = PALETTE["goal"] if up_is_goal else PALETTE["wall"]
        cells[4, self.length] = PALETTE["wall"] if up_is_goal else PALETTE["goal"]
        for p, v in self.indicator_cells(self.tasks[i]).items():
            cells[1, p + 1] = PALETTE["up"] if v > 0 else PALETTE["down"]
        cells[2, 1] = PALETTE["start"]
        cells[2, int(self.pos[i]) + 1] = PALETTE["agent"]
        cells[3, 1 : self.length + 1] = 90 if self.noise_bit[i] else 200
        return upscale(cells, 4)


class LongShortCore(TMazeCore):
    """AMRL's Long-Short T-maze: the agent answers each noise bit to move on."""

    family = "MetaTMazeLongShort"
    forced_right = False


class AgreementCore(TMazeCore):
    """Two indicators; the rewarded arm is DOWN when they agree, UP when they differ."""

    family = "MetaTMazeAgreement"
    n_indicators = 2

    def __init__(self, num_envs: int, length: int = 100, indicator_pos: int = 1, second_indicator_pos: int = 50,
                 episode_limit: int = 150) -> None:
        # Validated before the base constructor, which builds the observation table from it.
        length = check_int("length", length, 3, MAX_LENGTH)
        indicator_pos = check_int("indicator_pos", indicator_pos, 1, length - 2)
        self.second_indicator_pos = check_int("second_indicator_pos", second_indicator_pos, indicator_pos + 1, length - 2)
        super().__init__(num_envs, length, indicator_pos, episode_limit)

    def goal_arm_of(self, bits: np.ndarray) -> np.ndarray:
        return (bits[:, 0] == bits[:, 1]).astype(np.int64)  # agree -> DOWN (1), differ -> UP (0)

    def indicator_cells(self, task: np.ndarray) -> dict[int, float]:
        return {self.indicator_pos: float(task[0]), self.second_indicator_pos: float(task[1])}


class LatentCore(TMazeCore):
    """No visible indicator: the goal shows only in the statistics of the noise bit."""

    family = "MetaTMazeLatent"

    state_attributes = (*TMazeCore.state_attributes, "p_plus")

    def __init__(self, num_envs: int, length: int = 100, p_up: float = 0.7, p_down: float = 0.5,
                 episode_limit: int = 150) -> None:
        self.p_up = check_float("p_up", p_up, 0.0, 1.0)
        self.p_down = check_float("p_down", p_down, 0.0, 1.0)
        self.p_plus = np.zeros(num_envs)
        super().__init__(num_envs, length, 1, episode_limit)

    def set_tasks(self, idx: np.ndarray, tasks: np.ndarray) -> None:
        super().set_tasks(idx, tasks)
        self.p_plus[idx] = np.where(self.goal_arm[idx] == 0, self.p_up, self.p_down)

    def noise_bits(self, u: np.ndarray, idx: np.ndarray | slice) -> np.ndarray:
        return (u >= self.p_plus[idx]).astype(np.int64)

    def indicator_cells(self, task: np.ndarray) -> dict[int, float]:
        return {}


class MetaTMazeEnv(MetaEnv):
    __doc__ = __doc__
    core_class = TMazeCore
