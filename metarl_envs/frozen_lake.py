"""Frozen Lake task families (the BO-MRL experiments): a 4x4 lake whose map is the task.

## Description
The agent walks on a 4x4 grid from the start (0, 0) to the goal (3, 3). A task is a *map*: which
cells are dangerous. Two families:

* ``MetaFrozenLake-v0`` (hole tasks, BO-MRL's "high task variance" set): marked cells are holes.
  Holes and the goal are absorbing: once there, the agent stays there whatever it does.
* ``MetaFrozenLakePenalty-v0`` (penalty tasks, "low task variance"): marked cells are penalty
  cells the agent can cross (not absorbing); only the goal is absorbing.

Moves are deterministic by default; with ``slippery=True`` they follow Gymnasium's FrozenLake: the
intended direction or one of the two perpendicular ones, each with probability 1/3. A move into
the border leaves the agent where it is.

## Action Space
``Discrete(4)``: 0 LEFT, 1 DOWN, 2 RIGHT, 3 UP (Gymnasium's FrozenLake order).

## Observation Space
``observation="index"`` (default): ``Discrete(16)``, the cell index ``row * 4 + col``.
``observation="onehot"``: ``Box(0, 1, (16,), float32)``, the one-hot cell; with
``episodes_per_trial > 1`` a trailing episode-boundary flag makes it ``(17,)``. An index has no
room for the flag, so ``episodes_per_trial > 1`` requires ``observation="onehot"``.

## Rewards
Per step, by the cell the agent lands in (or stays in): +1 at the goal, -1 in a hole (hole tasks),
-0.5 on a penalty cell (penalty tasks), 0 elsewhere.

## Starting State
Cell 0 (the top-left corner), at every episode start.

## Episode End
An episode is exactly ``horizon`` (49) steps: absorbing cells keep paying their reward, nothing
terminates early. Reaching the horizon is the episode's definition, not a time-limit truncation, so
the trial's last step returns ``terminated=True``.

## Arguments
``slippery`` (bool, False), ``horizon`` (int >= 1, 49), ``observation`` ("index" or "onehot"),
``hole_prob`` (probability that a random cell is marked, in ``[0, 1)``, 0.2),
``episodes_per_trial`` (>= 1, 1; > 1 needs ``observation="onehot"``), ``render_mode``.

## Tasks
A task is a flat integer array of 16 cell codes in row-major order: 0 frozen, 1 marked (a hole for
hole tasks, a penalty cell for penalty tasks). The start (cell 0) and the goal (cell 15) are never
marked. Hole tasks: cells with ``row + col <= 2`` are always frozen, every other non-goal cell is a
hole with probability ``hole_prob``, and a map is redrawn until a path from start to goal avoids
all holes. Penalty tasks: the same generator without the ``row + col`` rule (every non-start,
non-goal cell may be marked; redrawn until a penalty-free path exists). A task passed to
``set_task`` / ``reset(options={"task": ...})`` is validated: shape, codes, unmarked start and goal,
and, for hole tasks, the ``row + col`` rule and a path to the goal.

``tasks_from_uniforms`` (and so ``sample_tasks`` and the task drawn at every ``reset``) turns one
uniform into one map by inverting the cumulative distribution of the maps that the redraw-until-a-
path-exists generator produces: all ``2**k`` settings of the ``k`` random cells are enumerated
(setting ``j`` marks the ``b``-th random cell, in row-major order, when bit ``b`` of ``j`` is set),
the ones without a path are dropped, and the others keep their probability ``p**h (1 - p)**(k - h)``
renormalised. That *is* the rejection sampler's distribution, drawn from exactly one uniform per
task and vectorised over copies.

``benchmark_tasks("hole")`` (10 maps) and ``benchmark_tasks("penalty")`` (20 maps) are the fixed
task sets of the BO-MRL experiment. ``source="paper"`` (the default) gives the maps the BO-MRL
authors released and ran (shipped as package data, ``metarl_envs/data/bomrl_frozen_lake_maps.json``;
3 of the 10 hole maps have no hole, and a uniform policy scores -0.24 on them).
``source="generated"`` gives our own seeded sets, drawn with
``numpy.random.default_rng([BENCHMARK_SEED, kind])`` (kind 0 hole, 1 penalty) at ``hole_prob=0.2``:
harder hole maps (a uniform policy scores -0.56), useful as a held-out check.

## Optimal and chance returns (defaults)
BO-MRL protocol: discount 0.8 over the 49 steps. A map with a 6-move path (to a penalty-free path
for penalty tasks) has the optimal discounted return ``sum_{t=5}^{48} 0.8**t = 1.63831`` (arrival
at step index 5); maps that force a detour have less. ``transition_model(task)`` returns the exact
tabular model ``(P, R)`` for value iteration or exact policy evaluation.

## Version History
* v0: initial release.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from importlib import resources
from typing import Any, ClassVar

import numpy as np
from gymnasium import spaces
from gymnasium.utils import colorize

from metarl_envs.core import FamilyCore, MetaEnv, check_float, check_int
from metarl_envs.rendering import PALETTE, upscale
from metarl_envs.rng import CounterRNG

SIZE = 4
N_CELLS = SIZE * SIZE
START, GOAL = 0, N_CELLS - 1
LEFT, DOWN, RIGHT, UP = 0, 1, 2, 3
FROZEN, MARKED = 0, 1
GOAL_REWARD = 1.0
MARKED_REWARD = {"hole": -1.0, "penalty": -0.5}
MARKED_ABSORBS = {"hole": True, "penalty": False}
#: Seed of the benchmark task sets (see :func:`benchmark_tasks`).
BENCHMARK_SEED = 2410
BENCHMARK_SIZES = {"hole": 10, "penalty": 20}
KINDS = ("hole", "penalty")
#: Where :func:`benchmark_tasks` takes its maps from.
SOURCES = ("paper", "generated")
PAPER_MAPS_FILE = "data/bomrl_frozen_lake_maps.json"

_ROW, _COL = np.divmod(np.arange(N_CELLS), SIZE)
_DELTAS = {LEFT: (0, -1), DOWN: (1, 0), RIGHT: (0, 1), UP: (-1, 0)}


def _move_table() -> np.ndarray:
    """``MOVES[s, a]``: the cell reached from ``s`` by moving in direction ``a`` (walls stop you)."""
    table = np.empty((N_CELLS, 4), dtype=np.int64)
    for a, (dr, dc) in _DELTAS.items():
        table[:, a] = np.clip(_ROW + dr, 0, SIZE - 1) * SIZE + np.clip(_COL + dc, 0, SIZE - 1)
    return table


MOVES = _move_table()
_ADJACENT = np.zeros((N_CELLS, N_CELLS), dtype=np.int64)
_ADJACENT[np.arange(N_CELLS)[:, None], MOVES] = 1


def has_path(maps: np.ndarray) -> np.ndarray:
    """Whether the goal can be reached from the start without entering a marked cell, per map.

    ``maps`` has shape ``(..., 16)``; a flood fill over all maps at once.
    """
    free = np.asarray(maps) == FROZEN
    reach = np.zeros(free.shape, dtype=bool)
    reach[..., START] = True
    for _ in range(N_CELLS):  # a path never needs more moves than there are cells
        reach |= ((reach @ _ADJACENT) > 0) & free
    return reach[..., GOAL]


def random_cells(kind: str) -> np.ndarray:
    """The cells the generator may mark: all but start and goal, and for holes only ``row + col > 2``."""
    cells = np.arange(1, GOAL)
    return cells[_ROW[cells] + _COL[cells] > 2] if kind == "hole" else cells


@functools.lru_cache(maxsize=16)
def map_distribution(kind: str, hole_prob: float) -> tuple[np.ndarray, np.ndarray]:
    """All maps the generator can produce and their cumulative probabilities (see module doc)."""
    cells = random_cells(kind)
    k = len(cells)
    bits = (np.arange(2**k)[:, None] >> np.arange(k)) & 1
    maps = np.zeros((2**k, N_CELLS), dtype=np.int8)
    maps[:, cells] = bits
    marked = bits.sum(axis=1)
    prob = hole_prob**marked * (1.0 - hole_prob) ** (k - marked)
    keep = has_path(maps) & (prob > 0)
    cdf = np.cumsum(prob[keep])
    cdf /= cdf[-1]
    cdf[-1] = 1.0  # uniforms are < 1, so every draw lands on a map
    maps = maps[keep]
    maps.flags.writeable = cdf.flags.writeable = False  # cached: shared by every caller
    return maps, cdf


def maps_from_uniforms(u: np.ndarray, kind: str = "hole", hole_prob: float = 0.2) -> np.ndarray:
    """One map per uniform in ``u`` (any shape ``(n,)`` or ``(n, 1)``), drawn from the generator."""
    maps, cdf = map_distribution(kind, float(hole_prob))
    return maps[np.searchsorted(cdf, np.asarray(u).reshape(-1), side="right")]


def parse_map(rows: Sequence[str]) -> np.ndarray:
    """A task from Gymnasium-style map rows (``S`` start, ``F`` frozen, ``H`` marked, ``G`` goal)."""
    letters = "".join(rows)
    if len(letters) != N_CELLS or letters[START] != "S" or letters[GOAL] != "G" or set(letters[1:GOAL]) - {"F", "H"}:
        raise ValueError(f"a map must be {SIZE} rows of {SIZE} letters, S first, G last and F or H between, "
                         f"got {rows!r}")
    return np.array([c == "H" for c in letters], dtype=np.int8)


@functools.lru_cache(maxsize=1)
def _paper_maps() -> dict[str, np.ndarray]:
    raw = json.loads(resources.files("metarl_envs").joinpath(PAPER_MAPS_FILE).read_text())
    maps = {kind: np.stack([parse_map(rows) for rows in raw[kind]]) for kind in KINDS}
    for arr in maps.values():
        arr.flags.writeable = False  # cached: shared by every caller
    return maps


def benchmark_tasks(kind: str, source: str = "paper") -> np.ndarray:
    """The fixed task sets: 10 hole maps or 20 penalty maps, shape ``(n, 16)`` (a fresh copy).

    ``source="paper"``: the BO-MRL authors' released maps; ``"generated"``: our seeded sets.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    if source == "paper":
        return _paper_maps()[kind].copy()
    rng = np.random.default_rng([BENCHMARK_SEED, KINDS.index(kind)])
    return maps_from_uniforms(rng.random(BENCHMARK_SIZES[kind]), kind)


def cell_rewards(codes: np.ndarray, cells: np.ndarray, kind: str) -> np.ndarray:
    """Reward of landing in (or staying in) ``cells`` whose map codes are ``codes`` (broadcast)."""
    return np.where(cells == GOAL, GOAL_REWARD, np.where(codes == MARKED, MARKED_REWARD[kind], 0.0))


def absorbing(codes: np.ndarray, cells: np.ndarray, kind: str) -> np.ndarray:
    """Whether the agent stays forever in ``cells``: the goal, and holes (not penalty cells)."""
    return (cells == GOAL) | ((codes == MARKED) & MARKED_ABSORBS[kind])


def transition_model(task: np.ndarray, kind: str = "hole", slippery: bool = False
                     ) -> tuple[np.ndarray, np.ndarray]:
    """The exact tabular model of a (valid) map: ``P[s, a, s']`` and ``R[s, a]``.

    ``R[s, a]`` is the expected reward of taking ``a`` in ``s``: the reward of the cell landed in
    (or stayed in), averaged over the slip directions.
    """
    task = np.asarray(task)
    cells = np.arange(N_CELLS)
    slips = (-1, 0, 1) if slippery else (0,)
    P = np.zeros((N_CELLS, 4, N_CELLS))
    for slip in slips:
        P[cells[:, None], np.arange(4), MOVES[:, (np.arange(4) + slip) % 4]] += 1.0 / len(slips)
    stuck = np.flatnonzero(absorbing(task, cells, kind))
    P[stuck] = 0.0
    P[stuck, :, stuck] = 1.0
    R = P @ cell_rewards(task, cells, kind)
    return P, R


class FrozenLakeCore(FamilyCore):
    """Hole tasks (``MetaFrozenLake-v0``); :class:`PenaltyCore` changes only ``kind``."""

    family = "MetaFrozenLake"
    kind: ClassVar[str] = "hole"
    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array", "ansi"], "render_fps": 4}

    @property
    def reward_range(self) -> tuple[float, float]:
        return (MARKED_REWARD[self.kind], GOAL_REWARD)

    state_attributes = ("tasks", "_next_cell", "_cell_reward", "pos", "last_action")

    def __init__(self, num_envs: int, slippery: bool = False, horizon: int = 49, observation: str = "index",
                 hole_prob: float = 0.2) -> None:
        super().__init__(num_envs)
        if not isinstance(slippery, (bool, np.bool_)):
            raise ValueError(f"slippery must be True or False, got {slippery!r}")
        if observation not in ("index", "onehot"):
            raise ValueError(f"observation must be 'index' or 'onehot', got {observation!r}")
        self.hole_prob = check_float("hole_prob", hole_prob, 0.0, 1.0)
        if self.hole_prob == 1.0:
            raise ValueError("hole_prob must be a number in [0, 1) (at 1 no map has a path), got 1.0")
        self.slippery = bool(slippery)
        self.per_episode_limit = check_int("horizon", horizon, 1)
        self.observation = observation
        if observation == "index":
            self.observation_space = spaces.Discrete(N_CELLS)
        else:
            self.observation_space = spaces.Box(0.0, 1.0, shape=(N_CELLS,), dtype=np.float32)
        self.action_space = spaces.Discrete(4)
        self.task_space = spaces.MultiBinary(N_CELLS)
        self.tasks = np.zeros((num_envs, N_CELLS), dtype=np.int8)
        self.pos = np.zeros(num_envs, dtype=np.int64)
        self.last_action = np.full(num_envs, -1, dtype=np.int64)
        self._rows = np.arange(num_envs)
        self._never = np.zeros(num_envs, dtype=bool)
        # Per-copy lookup tables, refreshed when tasks change: a step is then two gathers.
        self._next_cell = np.zeros((num_envs, N_CELLS, 4), dtype=np.int64)
        self._cell_reward = np.zeros((num_envs, N_CELLS))
        self.set_tasks(self._rows, self.tasks)

    # --- tasks -----------------------------------------------------------------------------
    def tasks_from_uniforms(self, u: np.ndarray) -> np.ndarray:
        return maps_from_uniforms(u, self.kind, self.hole_prob)

    def check_task(self, task: Any) -> np.ndarray:
        allowed = (
            f"a flat array of {N_CELLS} cell codes (0 frozen, 1 {self.kind}) "
            f"with start (cell {START}) and goal (cell {GOAL}) unmarked"
        )
        if self.kind == "hole":
            allowed += ", cells with row + col <= 2 frozen, and a hole-free path from start to goal"
        arr = np.asarray(task)
        if arr.shape != (N_CELLS,) or not np.isin(arr, (FROZEN, MARKED)).all():
            raise self.invalid_task(task, allowed)
        arr = arr.astype(np.int8)
        if arr[START] or arr[GOAL]:
            raise self.invalid_task(task, allowed)
        if self.kind == "hole" and (arr[_ROW + _COL <= 2].any() or not has_path(arr)):
            raise self.invalid_task(task, allowed)
        return arr

    def transition_model(self, task: Any) -> tuple[np.ndarray, np.ndarray]:
        return transition_model(self.check_task(task), self.kind, self.slippery)

    def set_tasks(self, idx: np.ndarray, tasks: np.ndarray) -> None:
        self.tasks[idx] = tasks
        cells = np.arange(N_CELLS)
        codes = self.tasks[idx]
        stays = absorbing(codes, cells, self.kind)  # (n, 16)
        self._next_cell[idx] = np.where(stays[:, :, None], cells[None, :, None], MOVES[None])
        self._cell_reward[idx] = cell_rewards(codes, cells, self.kind)

    # --- dynamics --------------------------------------------------------------------------
    def start_episodes(self, idx: np.ndarray, rng: CounterRNG) -> None:
        self.pos[idx] = START
        self.last_action[idx] = -1

    def step(self, actions: np.ndarray, rng: CounterRNG) -> tuple[np.ndarray, np.ndarray]:
        directions = actions
        if self.slippery:
            directions = (actions + np.floor(3.0 * rng.uniform(1)[:, 0]).astype(np.int64) - 1) % 4
        self.pos = self._next_cell[self._rows, self.pos, directions]
        self.last_action = actions
        return self._cell_reward[self._rows, self.pos], self._never

    def observe(self, out: np.ndarray) -> None:
        if self.observation == "index":
            out[:, 0] = self.pos
        else:
            out[:, :N_CELLS] = 0.0
            out[self._rows, self.pos] = 1.0

    # --- rendering -------------------------------------------------------------------------
    def letters(self, i: int) -> list[str]:
        marked = "H" if self.kind == "hole" else "P"
        letters = [marked if code else "F" for code in self.tasks[i]]
        letters[START], letters[GOAL] = "S", "G"
        return letters

    def render_ansi(self, i: int) -> str:
        """Gymnasium FrozenLake's text picture: S start, F frozen, H hole (P penalty), G goal."""
        letters = self.letters(i)
        letters[self.pos[i]] = colorize(letters[self.pos[i]], "red", highlight=True)
        action = int(self.last_action[i])
        header = f"  ({['Left', 'Down', 'Right', 'Up'][action]})\n" if action >= 0 else "\n"
        return header + "\n".join("".join(letters[r * SIZE : (r + 1) * SIZE]) for r in range(SIZE)) + "\n"

    def render_rgb(self, i: int) -> np.ndarray:
        """The grid, 16 pixels a cell with 1-pixel seams; the agent is a red square in its cell."""
        colours = {"S": "start", "F": "floor", "H": "hole", "P": "penalty", "G": "goal"}
        cells = np.array([PALETTE[colours[c]] for c in self.letters(i)], dtype=np.uint8)
        cells = cells.reshape(SIZE, SIZE, 3)
        img = upscale(cells, 16)
        img[::16] = img[:, ::16] = PALETTE["background"]
        r, c = divmod(int(self.pos[i]), SIZE)
        img[r * 16 + 5 : r * 16 + 12, c * 16 + 5 : c * 16 + 12] = PALETTE["agent"]
        return img


class PenaltyCore(FrozenLakeCore):
    """Penalty tasks (``MetaFrozenLakePenalty-v0``): marked cells cost 0.5 a step, only the goal absorbs."""

    family = "MetaFrozenLakePenalty"
    kind = "penalty"


class MetaFrozenLakeEnv(MetaEnv):
    __doc__ = __doc__
    core_class = FrozenLakeCore

    def transition_model(self, task: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Exact ``(P (16, 4, 16), R (16, 4))`` of ``task`` (default: the current task)."""
        return self.core.transition_model(self.get_task() if task is None else task)
