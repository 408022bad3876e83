"""MC-LS (Minecraft Long-Short): a long chain of rooms seen through small procedural RGB frames.

## Description
A pixel version of the Long-Short T-maze, after AMRL's Minecraft maze. The agent first sees an
indicator cell whose frame is green-dominant (task UP) or red-dominant (task DOWN), then walks
through a chain of ``n_rooms`` rooms, and finally has to turn the correct way at the end cell:
RIGHT if the indicator was green, LEFT if it was red. Each room is a small loop of cells ``(x, y)``::

    (-1,3) -> (0,3) <- (1,3)        (0,3) --forward--> next room's (0,0)
      ^                  ^
    (-1,2)             (1,2)
      ^                  ^
    (-1,1) <- (0,1) -> (1,1)        at (0,1): the check, LEFT for type 0, RIGHT for type 1
                ^
              (0,0)

Each room's type (0 or 1) is redrawn every episode and shows as a faint colour cast (cooler for
type 0, warmer for type 1) in the frames of ``(0,0)``, ``(0,1)`` and ``(+-1,1)``: the short-term
memory part. The indicator, seen about 100 steps before the end, is the long-term part. Frames are
10x10 textures generated once per process from a fixed seed (:func:`frame_table`); every cell
position has its own texture, identical in every room.

The cues are calibrated to the reference's Minecraft images, measured as the mean absolute pixel
difference (0-255 scale, over all pixels and channels) between the two versions of a frame:

* room type: 18.0 at each of the four typed cells (the reference: 6 to 28), a shift of
  ``ROOM_TYPE_CASTS`` on top of textures that vary by about +-45 -- present, but easy to miss;
* goal indicator: 101.7 between the UP and DOWN frames (the reference: about 100), clearly visible.

## Action Space
``Discrete(3)``: 0 LEFT, 1 FORWARD, 2 RIGHT.

## Observation Space
``Box(300,)`` float32 in ``[-1, 127/128]``: the current 10x10x3 frame as ``(pixel - 128) / 128``,
row-major (row, column, channel). With ``episodes_per_trial > 1`` (the default 2) a trailing
episode-boundary flag in ``[0, 1]`` (301 values).

## Rewards
+0.1 for every move (blocked actions are no-ops with reward 0), except the check move out of
``(0,1)``, which gives +0.1 when it matches the room type and 0 otherwise (the move happens either
way). At the end cell: +4 for the correct turn, -3 for the wrong one.

## Starting State
The indicator cell, at every episode start; room types are drawn afresh.

## Episode End
An inner episode ends with the turn at the end cell, or by the timeout: as in the reference
experiments, after ``episode_limit`` (199) ordinary steps comes one *timeout step* that ignores the
action (the agent does not move), pays 0 and ends the episode, so a timed-out episode is
``episode_limit + 1`` (200) steps long. A trial ends after ``episodes_per_trial`` (2) episodes;
the next inner episode of a trial starts in the same step with the boundary flag set (see
:mod:`metarl_envs.core`).

## Arguments
``n_rooms`` (>= 1, default 16), ``episode_limit`` (ordinary steps before the timeout step, >= 1,
default 199), ``episodes_per_trial`` (>= 1; the registered id uses 2), ``render_mode`` (``"rgb_array"``: the frame enlarged above a map of the chain;
``"ansi"``: one line).

## Tasks
``[goal]`` with goal +1 (UP: turn RIGHT at the end) or -1 (DOWN: turn LEFT), uniform.

## Optimal and chance returns (defaults)
Optimal episode: 98 steps, 0.1 + 16 x 0.6 + 4 = 13.7; optimal trial 27.4. Walking the rooms
perfectly but guessing the end: 2 x (9.7 + 0.5) = 20.4.

## Version History
* v0: initial release; the faint room-type cue (it was 106-113, far stronger than the
  reference's); the timeout step (199 ordinary steps, then the step that ends the episode)
  as in the reference experiments.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
from gymnasium import spaces

from metarl_envs.core import FamilyCore, MetaEnv, check_int
from metarl_envs.rendering import PALETTE, canvas, upscale
from metarl_envs.rng import CounterRNG

#: Most rooms (each copy holds a view per position of every room).
MAX_ROOMS = 10**4

LEFT, FORWARD, RIGHT = 0, 1, 2
MOVE_REWARD, CORRECT_REWARD, WRONG_REWARD = 0.1, 4.0, -3.0
FRAME_SIZE = 10
OBS_DIM = FRAME_SIZE * FRAME_SIZE * 3

#: Cell positions inside a room, in the order the chain stores them; ``(0,3)`` is last so that
#: "next room's ``(0,0)``" is simply the next index.
ROOM_CELLS: tuple[tuple[int, int], ...] = ((0, 0), (0, 1), (-1, 1), (1, 1), (-1, 2), (1, 2), (-1, 3), (1, 3), (0, 3))
#: Room cells whose frames show the room type.
TYPED_CELLS = frozenset({(0, 0), (0, 1), (-1, 1), (1, 1)})
_ROOM_MOVES: dict[tuple[tuple[int, int], int], tuple[int, int] | None] = {
    ((0, 0), FORWARD): (0, 1),
    ((0, 1), LEFT): (-1, 1),
    ((0, 1), RIGHT): (1, 1),
    ((-1, 1), FORWARD): (-1, 2),
    ((1, 1), FORWARD): (1, 2),
    ((-1, 2), FORWARD): (-1, 3),
    ((1, 2), FORWARD): (1, 3),
    ((-1, 3), RIGHT): (0, 3),
    ((1, 3), LEFT): (0, 3),
    ((0, 3), FORWARD): None,  # into the next room's (0, 0), or the end cell
}
#: Cell kinds: what a chain position is, independent of its room.
INDICATOR, END = 0, len(ROOM_CELLS) + 1
N_KINDS = len(ROOM_CELLS) + 2
_TEXTURE_SEED = 20_240_305
#: Per-channel (R, G, B) shifts of the typed cells' frames: a faint cool (type 0) or warm (type 1)
#: cast. The two types' frames differ by (22 + 7 + 25) / 3 = 18 on average (see the module doc).
ROOM_TYPE_CASTS = ((-11.0, -2.0, 13.0), (11.0, 5.0, -12.0))


# --- frames ----------------------------------------------------------------------------------
@functools.cache
def frame_table() -> np.ndarray:
    """All frames, ``uint8`` of shape ``(N_KINDS, 2 room types, 2 tasks (UP, DOWN), 10, 10, 3)``.

    Built once per process from a fixed seed, so every install sees the same pictures. Only the
    indicator depends on the task and only the typed room cells on the room type; the table still
    spans every combination so that an observation is a single gather by ``(kind, type, task)``.
    """
    rng = np.random.default_rng(_TEXTURE_SEED)
    table = np.empty((N_KINDS, 2, 2, FRAME_SIZE, FRAME_SIZE, 3), dtype=np.float64)

    def texture(block: int) -> np.ndarray:
        """A grey-level pattern of ``block``-sized tiles plus fine grain, mean about 0."""
        tiles = rng.uniform(-35, 35, (FRAME_SIZE // block, FRAME_SIZE // block))
        return upscale(tiles[..., None], block)[..., 0] + rng.uniform(-10, 10, (FRAME_SIZE, FRAME_SIZE))

    for kind, cell in enumerate(ROOM_CELLS, start=1):
        # A near-neutral base colour per position, so that the casts below stay unambiguous.
        base = rng.uniform(105, 150) + rng.uniform(-12, 12, 3)
        frame = base + texture(int(rng.choice([1, 2, 5])))[..., None]
        table[kind] = frame
        if cell in TYPED_CELLS:
            table[kind, 0] = frame + ROOM_TYPE_CASTS[0]
            table[kind, 1] = frame + ROOM_TYPE_CASTS[1]
    grain = texture(2)[..., None]
    table[INDICATOR, :, 0] = (50, 190, 60) + grain  # UP: green-dominant
    table[INDICATOR, :, 1] = (200, 50, 45) + grain  # DOWN: red-dominant
    rows, cols = np.indices((FRAME_SIZE, FRAME_SIZE))
    checker = np.where((rows // 2 + cols // 2) % 2 == 0, 225.0, 35.0)
    table[END] = checker[..., None] + rng.uniform(-8, 8, (FRAME_SIZE, FRAME_SIZE, 1))
    frames = np.clip(np.rint(table), 0, 255).astype(np.uint8)
    frames.setflags(write=False)
    return frames


@functools.cache
def _observation_table() -> np.ndarray:
    """:func:`frame_table` as flat observations, indexed by ``view = (kind * 2 + type) * 2 + task``."""
    obs = ((frame_table().astype(np.float32) - 128.0) / 128.0).reshape(N_KINDS * 4, OBS_DIM)
    obs.setflags(write=False)
    return obs


def _transition_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reward, position increment and episode end for every ``(kind, type, task, action)``."""
    shape = (N_KINDS, 2, 2, 3)
    reward, delta, done = np.zeros(shape), np.zeros(shape, dtype=np.int64), np.zeros(shape, dtype=bool)
    reward[INDICATOR, :, :, RIGHT], delta[INDICATOR, :, :, RIGHT] = MOVE_REWARD, 1
    for (cell, action), target in _ROOM_MOVES.items():
        kind = ROOM_CELLS.index(cell) + 1
        delta[kind, :, :, action] = (len(ROOM_CELLS) if target is None else ROOM_CELLS.index(target)) + 1 - kind
        reward[kind, :, :, action] = MOVE_REWARD
    check = ROOM_CELLS.index((0, 1)) + 1
    reward[check, 0, :, RIGHT] = reward[check, 1, :, LEFT] = 0.0  # type 0 wants LEFT, type 1 RIGHT
    reward[END, :, 0, RIGHT] = reward[END, :, 1, LEFT] = CORRECT_REWARD  # task UP wants RIGHT
    reward[END, :, 0, LEFT] = reward[END, :, 1, RIGHT] = WRONG_REWARD
    done[END, :, :, LEFT] = done[END, :, :, RIGHT] = True
    return reward.ravel(), delta.ravel(), done.ravel()


_REWARD, _DELTA, _DONE = _transition_tables()


# --- the family ------------------------------------------------------------------------------
class MinecraftCore(FamilyCore):
    """``num_envs`` copies of MC-LS; a copy's state is its position along the chain.

    Chain positions: 0 is the indicator, ``1 + 9 r + k`` is cell ``ROOM_CELLS[k]`` of room ``r``,
    and the last is the end cell. Everything a step needs is a row of the frame and transition
    tables, the *view* ``(kind * 2 + room type) * 2 + task``; per episode, ``view_base`` caches
    the task-free part for every position, so a step is a handful of gathers.
    """

    family = "MetaMinecraftLongShort"
    reward_range = (WRONG_REWARD, CORRECT_REWARD)

    state_attributes = ("tasks", "task_bit", "steps", "room_types", "view_base", "flat_pos", "view")

    def __init__(self, num_envs: int, n_rooms: int = 16, episode_limit: int = 199) -> None:
        super().__init__(num_envs)
        self.n_rooms = check_int("n_rooms", n_rooms, 1, MAX_ROOMS)
        self.episode_limit = check_int("episode_limit", episode_limit, 1)
        self.per_episode_limit = self.episode_limit + 1  # the ordinary steps and the timeout step
        self.steps = np.zeros(num_envs, dtype=np.int64)  # steps taken in the current episode
        self._timeout_at = np.int64(self.episode_limit)  # an array scalar: cheaper to compare against
        self.observation_space = spaces.Box(-1.0, 127.0 / 128.0, shape=(OBS_DIM,), dtype=np.float32)
        self.action_space = spaces.Discrete(3)
        self.task_space = spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        cells = len(ROOM_CELLS)
        self.n_positions = 2 + cells * self.n_rooms
        self.kind_of_position = np.concatenate([[INDICATOR], np.tile(np.arange(1, cells + 1), self.n_rooms), [END]])
        self.room_of_position = np.concatenate([[0], np.repeat(np.arange(self.n_rooms), cells), [0]])
        self._typed = np.isin(self.kind_of_position, [ROOM_CELLS.index(c) + 1 for c in TYPED_CELLS])
        self.room_types = np.zeros((num_envs, self.n_rooms), dtype=np.int64)
        self.view_base = np.zeros((num_envs, self.n_positions), dtype=np.int64)
        self._row_start = np.arange(num_envs) * self.n_positions
        self.flat_pos = self._row_start.copy()  # index into view_base.ravel(): row start + position
        self.task_bit = np.zeros(num_envs, dtype=np.int64)  # 0 UP, 1 DOWN
        self.view = np.zeros(num_envs, dtype=np.int64)
        self._observations = _observation_table()
        self.tasks = np.ones((num_envs, 1), dtype=np.float32)

    @property
    def pos(self) -> np.ndarray:
        """Every copy's position along the chain."""
        return self.flat_pos - self._row_start

    # --- tasks -----------------------------------------------------------------------------
    def tasks_from_uniforms(self, u: np.ndarray) -> np.ndarray:
        return np.where(u < 0.5, 1.0, -1.0).astype(np.float32)

    def check_task(self, task: Any) -> np.ndarray:
        try:
            arr = np.asarray(task, dtype=np.float32).reshape(1)
        except (TypeError, ValueError):
            arr = None
        if arr is None or abs(arr[0]) != 1.0:
            raise self.invalid_task(task, "[+1] (UP: turn RIGHT at the end) or [-1] (DOWN: turn LEFT)")
        return arr

    def set_tasks(self, idx: np.ndarray, tasks: np.ndarray) -> None:
        self.tasks[idx] = tasks
        self.task_bit[idx] = self.tasks[idx, 0] < 0
        self._update_views()

    # --- dynamics --------------------------------------------------------------------------
    def _update_views(self) -> None:
        self.view = self.view_base.take(self.flat_pos) + self.task_bit

    def start_episodes(self, idx: np.ndarray, rng: CounterRNG) -> None:
        types = (rng.uniform(self.n_rooms, idx) < 0.5).astype(np.int64)
        self.room_types[idx] = types
        self.view_base[idx] = (self.kind_of_position * 2 + types[:, self.room_of_position] * self._typed) * 2
        self.flat_pos[idx] = self._row_start[idx]
        self.steps[idx] = 0
        self._update_views()

    def step(self, actions: np.ndarray, rng: CounterRNG) -> tuple[np.ndarray, np.ndarray]:
        key = self.view * 3 + actions
        timeout = self.steps == self._timeout_at
        self.steps = self.steps + 1
        if np.count_nonzero(timeout):  # the timeout step ignores the action, pays 0 and ends the episode
            self.flat_pos += np.where(timeout, 0, _DELTA.take(key))
            self._update_views()
            return np.where(timeout, 0.0, _REWARD.take(key)), timeout | _DONE.take(key)
        self.flat_pos += _DELTA.take(key)
        self._update_views()
        return _REWARD.take(key), _DONE.take(key)

    def observe(self, out: np.ndarray) -> None:
        out[:, :OBS_DIM] = self._observations.take(self.view, axis=0)

    # --- rendering -------------------------------------------------------------------------
    def _describe(self, i: int) -> tuple[str, int, tuple[int, int] | None]:
        """``(where, room, cell)`` of copy ``i``; room and cell are meaningful inside rooms only."""
        pos = int(self.pos[i])
        kind, room = int(self.kind_of_position[pos]), int(self.room_of_position[pos])
        if kind == INDICATOR:
            return "indicator", room, None
        if kind == END:
            return "end", room, None
        return "room", room, ROOM_CELLS[kind - 1]

    def render_ansi(self, i: int) -> str:
        where, room, cell = self._describe(i)
        goal = "UP (turn RIGHT)" if self.tasks[i, 0] > 0 else "DOWN (turn LEFT)"
        if where == "room":
            where = f"room {room + 1}/{self.n_rooms} cell {cell} type {self.room_types[i, room]}"
        else:
            where = f"{where} cell"
        return f"MC-LS {where}  task={goal}\n"

    def render_rgb(self, i: int) -> np.ndarray:
        """The current frame (x8) above a map of the chain: rooms tinted by type, agent in red."""
        view = int(self.view[i])
        frame = upscale(frame_table().reshape(N_KINDS * 4, FRAME_SIZE, FRAME_SIZE, 3)[view], 8)
        width = 3 * self.n_rooms + 2
        chain = canvas(4, width)
        tints = {0: PALETTE["up"], 1: PALETTE["down"]}
        for room in range(self.n_rooms):
            for x, y in ROOM_CELLS:
                typed = (x, y) in TYPED_CELLS
                chain[3 - y, 3 * room + 2 + x] = tints[int(self.room_types[i, room])] if typed else PALETTE["floor"]
        chain[3, 0] = (50, 190, 60) if self.tasks[i, 0] > 0 else (200, 50, 45)
        chain[0, width - 1] = PALETTE["goal"]
        where, room, cell = self._describe(i)
        agent = {"indicator": (3, 0), "end": (0, width - 1)}.get(where)
        if agent is None:
            agent = (3 - cell[1], 3 * room + 2 + cell[0])
        chain[agent] = PALETTE["agent"]
        chain = upscale(chain, 2)
        image = canvas(frame.shape[0] + 2 + chain.shape[0], max(frame.shape[1], chain.shape[1]))
        image[: frame.shape[0], : frame.shape[1]] = frame
        image[frame.shape[0] + 2 :, : chain.shape[1]] = chain
        return image


class MetaMinecraftLongShortEnv(MetaEnv):
    __doc__ = __doc__
    core_class = MinecraftCore
