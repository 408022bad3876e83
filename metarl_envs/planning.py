"""The Planning Game (Ritter et al. 2021, "memory and planning game"): collect goals on a labelled torus.

## Description
An ``size`` x ``size`` torus whose cells carry labels; the assignment of labels to cells is a
random permutation drawn afresh for every trial (the task). The agent sees only its own cell's
label and the goal's label, so to reach goals quickly it has to learn the map from its own moves
within the trial and then plan shortest paths on it. Collecting on the goal cell gives +1 and a
new goal is drawn; a trial is a fixed number of steps, so the score is the number of goals reached.

## Action Space
``Discrete(5)``: 0 up (y+1), 1 down (y-1), 2 left (x-1), 3 right (x+1), 4 collect. Moves wrap
around the torus. Cell ``(x, y)`` has index ``y * size + x``.

## Observation Space
``observation="labels"`` (default): ``Box(2 * size**2,)`` float32 in ``[0, 1]``,
``concat(one_hot(label[agent]), one_hot(label[goal]))``.
``observation="at_goal"`` (``MetaPlanningGameJustGoal-v0``): ``Box(1,)``, 1.0 when the agent
stands on the goal, else 0.0.
With ``episodes_per_trial > 1`` a trailing episode-boundary flag in ``[0, 1]``.

## Rewards
+1 for collecting while on the goal; a new goal is then drawn uniformly among the other cells and
the agent stays where it is. Every other step 0.

## Starting State
A uniform start cell and a uniform goal cell different from the start, at every episode start.

## Episode End
After exactly ``episode_steps`` (100) steps. With the default ``episodes_per_trial=1`` this ends
the trial (``terminated=True``: the horizon is part of the game, not a time limit).

## Arguments
``size`` (>= 2; 3 by default, 4 for ``MetaPlanningGame4x4-v0``), ``observation`` (``"labels"``
or ``"at_goal"``), ``episode_steps`` (>= 1, default 100), ``episodes_per_trial`` (>= 1, default 1),
``render_mode`` (``"rgb_array"``: the grid with labels, agent in red, goal in green; ``"ansi"``).

## Tasks
An ``int64`` array of ``size**2`` labels: a permutation of ``0 .. size**2 - 1``, ``task[cell]``
being the label of ``cell``; uniform over permutations.

## Optimal and chance returns (defaults)
3x3: the mean torus distance to a uniformly drawn other cell is 1.5, so with a known map each goal
costs about 2.5 steps and a trial is worth about 40; a shortest-path policy that knows the map
scores 39.8 on average (4x4: 31.6). A uniformly random policy scores about 1.7 (3x3) and 1.0 (4x4).

## Version History
* v0: initial release.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

from metarl_envs.core import FamilyCore, MetaEnv, check_int
from metarl_envs.rendering import PALETTE, canvas, stamp_number
from metarl_envs.rng import CounterRNG

#: Largest torus side (a task holds size**2 labels per copy).
MAX_SIZE = 100

UP, DOWN, LEFT, RIGHT, COLLECT = 0, 1, 2, 3, 4
_MOVES = {UP: (0, 1), DOWN: (0, -1), LEFT: (-1, 0), RIGHT: (1, 0), COLLECT: (0, 0)}
OBSERVATIONS = ("labels", "at_goal")


def torus_moves(size: int) -> np.ndarray:
    """``moves[cell * 5 + action]`` = the cell reached from ``cell`` with ``action``."""
    y, x = np.divmod(np.arange(size * size), size)
    moves = [((y + dy) % size) * size + (x + dx) % size for dx, dy in (_MOVES[a] for a in range(5))]
    return np.stack(moves, axis=1).ravel()


class PlanningCore(FamilyCore):
    """``num_envs`` copies of the Planning Game; state is the agent's and the goal's cell."""

    family = "MetaPlanningGame"
    reward_range = (0.0, 1.0)

    state_attributes = ("tasks", "agent", "goal")

    def __init__(self, num_envs: int, size: int = 3, observation: str = "labels", episode_steps: int = 100) -> None:
        super().__init__(num_envs)
        self.size = check_int("size", size, 2, MAX_SIZE)
        if observation not in OBSERVATIONS:
            raise ValueError(f"observation must be one of {OBSERVATIONS}, got {observation!r}")
        self.observation = observation
        self.per_episode_limit = check_int("episode_steps", episode_steps, 1)
        self.n_cells = n = self.size * self.size
        obs_dim = 2 * n if observation == "labels" else 1
        self.observation_space = spaces.Box(0.0, 1.0, shape=(obs_dim,), dtype=np.float32)
        self.action_space = spaces.Discrete(5)
        self.task_space = spaces.MultiDiscrete(np.full(n, n))
        self.task_uniforms = n
        self.tasks = np.tile(np.arange(n), (num_envs, 1))
        self.agent = np.zeros(num_envs, dtype=np.int64)
        self.goal = np.ones(num_envs, dtype=np.int64)
        self._moves = torus_moves(self.size)
        self._rows = np.arange(num_envs)
        self._row_start = self._rows * n  # flat index of each copy's first label in ``tasks``

    # --- tasks -----------------------------------------------------------------------------
    def tasks_from_uniforms(self, u: np.ndarray) -> np.ndarray:
        return np.argsort(u, axis=1)

    def check_task(self, task: Any) -> np.ndarray:
        arr = np.asarray(task)
        n = self.n_cells
        valid = (
            arr.shape == (n,)
            and (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating))
            and np.array_equal(np.sort(arr), np.arange(n))
        )
        if not valid:
            raise self.invalid_task(
                task, f"a permutation of 0..{n - 1} ({n} labels, one per cell of the {self.size}x{self.size} torus)"
            )
        return arr.astype(np.int64)

    # --- dynamics --------------------------------------------------------------------------
    def _other_cell(self, u: np.ndarray, excluded: np.ndarray) -> np.ndarray:
        """A cell drawn uniformly among all cells but ``excluded``, from uniforms ``u``."""
        k = (u * (self.n_cells - 1)).astype(np.int64)
        return k + (k >= excluded)

    def start_episodes(self, idx: np.ndarray, rng: CounterRNG) -> None:
        u = rng.uniform(2, idx)
        start = (u[:, 0] * self.n_cells).astype(np.int64)
        self.agent[idx] = start
        self.goal[idx] = self._other_cell(u[:, 1], start)

    def step(self, actions: np.ndarray, rng: CounterRNG) -> tuple[np.ndarray, np.ndarray]:
        # One uniform per copy and step, needed or not, keeps every copy's stream aligned.
        u = rng.uniform(1)
        reward = np.zeros(self.num_envs)
        collected = actions == COLLECT
        if np.count_nonzero(collected):  # skipping the rest when nobody collects makes most steps cheap
            collected &= self.agent == self.goal
            if np.count_nonzero(collected):
                np.copyto(self.goal, self._other_cell(u[:, 0], self.goal), where=collected)
                reward[collected] = 1.0
        self.agent = self._moves.take(self.agent * 5 + actions)
        return reward, np.zeros(self.num_envs, dtype=bool)

    def observe(self, out: np.ndarray) -> None:
        if self.observation == "at_goal":
            out[:, 0] = self.agent == self.goal
            return
        out[:, : 2 * self.n_cells] = 0.0
        out[self._rows, self.tasks.take(self._row_start + self.agent)] = 1.0
        out[self._rows, self.tasks.take(self._row_start + self.goal) + self.n_cells] = 1.0

    # --- rendering -------------------------------------------------------------------------
    def render_ansi(self, i: int) -> str:
        """Rows from top (y = size - 1) to bottom; ``A`` agent, ``G`` goal, ``*`` both."""
        lines = []
        for y in reversed(range(self.size)):
            cells = []
            for x in range(self.size):
                cell = y * self.size + x
                mark = {(True, True): "*", (True, False): "A", (False, True): "G"}.get(
                    (cell == self.agent[i], cell == self.goal[i]), " "
                )
                cells.append(f"{mark}{self.tasks[i, cell]:>2d}")
            lines.append(" ".join(cells))
        return "\n".join(lines) + "\n"

    def render_rgb(self, i: int) -> np.ndarray:
        """The torus grid with each cell's label; the goal cell is green, the agent's cell red."""
        p = max(12, 4 * len(str(self.n_cells - 1)) + 5)  # room for the widest label's 3x5 digits
        image = canvas(self.size * p, self.size * p)
        for cell in range(self.n_cells):
            y, x = divmod(cell, self.size)
            top, left = (self.size - 1 - y) * p, x * p
            colour = PALETTE["goal"] if cell == self.goal[i] else PALETTE["floor"]
            image[top + 1 : top + p - 1, left + 1 : left + p - 1] = colour
            if cell == self.agent[i]:
                image[top + 2 : top + p - 2, left + 2 : left + p - 2] = PALETTE["agent"]
            stamp_number(image, int(self.tasks[i, cell]), top + 3, left + 2)
        return image


class MetaPlanningGameEnv(MetaEnv):
    __doc__ = __doc__
    core_class = PlanningCore
