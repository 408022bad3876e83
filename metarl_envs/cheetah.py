"""Cheetah-Dir and Cheetah-Vel: Gymnasium's HalfCheetah-v5 robot with a hidden goal direction or speed.

## Description
The planar half cheetah of ``HalfCheetah-v5`` (Gymnasium's ``half_cheetah.xml``, frame skip 5, so
one step is ``dt = 0.05`` s). The task is not observed; the agent has to infer it from rewards.

* ``MetaCheetahDir-v0``: run forward (task ``+1``) or backward (task ``-1``).
* ``MetaCheetahVel-v0``: run forward at a target velocity ``v*``.

## Action Space
``Box(-1, 1, (6,), float32)``: torques of the back thigh, shin, foot and front thigh, shin, foot.
Finite actions outside the box (up to float32's largest value) are accepted, as ``HalfCheetah-v5``
accepts them: MuJoCo clamps the control to ``[-1, 1]`` itself (the model's actuators are
``ctrllimited``), while the control cost is computed on the action as given. That is what the reference experiments stepped: the raw Gaussian
sample (SB3 and, by default, MetaPPO clip before stepping; MetaPPO's ``clip_actions=False`` does not).

## Observation Space
``Box(-f32max, f32max, (20,), float32)`` (the whole finite float32 range): ``qpos[1:]`` (8: root z, root angle, six joint angles),
``qvel`` (9), and the torso position xyz (3; the torso body frame ``data.xpos``, which is what
Gymnasium's ``MujocoEnv.get_body_com("torso")`` returns and what the reference Cheetah-Dir/Vel
implementations call the torso centre of mass). With ``episodes_per_trial > 1`` a trailing
episode-boundary flag makes it ``(21,)``.

## Rewards
With ``v = (x_after - x_before) / dt`` the forward velocity of the root and ``a`` the action:

* Dir: ``d * v - 0.05 * ||a||^2``.
* Vel: ``-|v - v*| - 0.05 * ||a||^2``.

``info`` carries ``x_position``, ``x_velocity`` (``v``), ``reward_forward`` (the task's velocity
term: ``d * v`` or ``-|v - v*|``) and ``reward_ctrl`` (``-0.05 * ||a||^2``).

## Starting State
As ``HalfCheetah-v5``: ``qpos = init_qpos + U(-0.1, 0.1)`` and ``qvel = init_qvel + 0.1 * N(0, 1)``
per coordinate. The numbers come from the env's per-copy counter stream (keyed from
``np_random``), the normals by the Box-Muller transform, so a seed fixes the whole trajectory.

## Episode End
The cheetah never terminates. An episode is ``episode_steps`` (200) steps and ends with ``truncated=True`` -- a time
limit: learners bootstrap from the value. A trial holds ``episodes_per_trial`` (1) episodes.

## Arguments
``episodes_per_trial`` (>= 1, 1), Vel's ``velocity_range`` (``(low, high)``, ``-1000 <= low <= high <= 1000``;
``(0.0, 3.0)``, BO-MRL uses ``(0.0, 2.0)``), ``render_mode`` (``"rgb_array"`` or ``"ansi"``),
``width`` / ``height`` of ``rgb_array`` frames (480), ``nthread`` (threads that step the copies,
the calling thread included; 0 or 1 = the calling thread alone; default: 0 below 64 copies, else up
to 8 by the CPU count), ``episode_steps`` (200; e.g. 400 to roll a trajectory on past its horizon, as
BO-MRL's continuation returns do). No step limit is registered: a trial ends by itself after
``episodes_per_trial * episode_steps`` steps.

## Tasks
Dir: ``[d]`` with ``d`` in ``{-1, +1}``, uniform. Vel: ``[v*]`` with ``v* ~ U(velocity_range)``.

## Rendering
``rgb_array`` goes through Gymnasium's ``MujocoRenderer`` with the model's ``track`` camera, which
follows the cheetah (as HalfCheetah-v3/v4 did; the free camera of Gymnasium 1.4's v5 stays where
the episode started, so a running cheetah leaves the picture). Headless
rendering needs ``MUJOCO_GL=egl`` (GPU or Mesa EGL) or ``MUJOCO_GL=osmesa`` (software); on Linux
without ``DISPLAY`` / ``WAYLAND_DISPLAY`` the first ``render()`` sets ``MUJOCO_GL=egl`` unless
``MUJOCO_GL`` is already set (set ``MUJOCO_GL=osmesa`` yourself where EGL is missing).

## Vectorisation
``gymnasium.make_vec(id, num_envs=N)`` gives the native batched vector env: the ``N`` copies'
physics states live in one array and every step is a single call into MuJoCo's C library
(``mujoco.batch``, ``nthread`` threads; by default the calling thread alone below 64 copies), with
no Python loop over copies. Each copy's state includes the constraint solver's warm start, so a copy
steps exactly as ``HalfCheetah-v5``'s ``MjData`` does (the physics agrees bit for bit), and copy
``i`` of a vector env seeded ``s`` is identical, bit for bit, to a single env seeded ``s + i``.

## Optimal and chance returns (defaults)
Uniform random actions: Dir about -20 per trial (the control cost, 0.05 * 6 / 3 a step), Vel about
-330 (``v*`` averages 1.5). Learned policies: see the SplAgger and BO-MRL papers.

## Version History
* v0: initial release.
"""

from __future__ import annotations

import abc
import os
import sys
import warnings
from typing import Any, ClassVar

import mujoco
import numpy as np
from gymnasium import spaces
from gymnasium.envs.mujoco.mujoco_env import expand_model_path

from metarl_envs.core import FamilyCore, MetaEnv, MetaVectorEnv, check_int
from metarl_envs.rng import CounterRNG

#: Largest rendered image side (MuJoCo's offscreen buffer is allocated at this size).
MAX_IMAGE_SIDE = 8192
#: Largest target speed (m/s) of ``velocity_range``: a cheetah runs at most about 15 m/s, and the bound keeps
#: the reward ``-|v - v*|`` and a trial's return finite and the drawn targets exact.
MAX_TARGET_SPEED = 1000.0
#: What ``mujoco.batch`` holds per copy besides the state rows bound as numpy views (about 900 bytes measured).
BATCH_BYTES_PER_COPY = 1024

FRAME_SKIP = 5
EPISODE_STEPS = 200
CTRL_COST_WEIGHT = 0.05
RESET_NOISE_SCALE = 0.1


def load_half_cheetah(width: int = 480, height: int = 480) -> mujoco.MjModel:
    """Compile Gymnasium's ``half_cheetah.xml`` with an offscreen buffer of at least ``width x height``.

    Recent MuJoCo releases flag the file's ``settotalmass`` attribute as deprecated and write that
    warning to ``MUJOCO_LOG.TXT`` in the working directory; it is swallowed here (the compiled model
    is unchanged), any other compiler warning is re-raised as a Python ``RuntimeWarning``. The file is
    Gymnasium's, and MuJoCo's suggested replacements do not give the same model (MuJoCo 4.0.1): compiling
    without the attribute and calling ``mj_setTotalmass`` + ``mj_setConst`` matches every array but not
    ``stat.meaninertia`` (5.599 instead of 3.723), which scales the constraint solver's tolerance; scaling
    the geoms' densities instead moves some masses by one ulp.
    """
    messages: list[str] = []
    previous = mujoco.get_mju_user_warning()
    mujoco.set_mju_user_warning(messages.append)
    try:
        model = mujoco.MjModel.from_xml_path(expand_model_path("half_cheetah.xml"))
    finally:
        mujoco.set_mju_user_warning(previous)
    for message in messages:
        if "settotalmass" not in message:
            warnings.warn(f"MuJoCo: {message}", RuntimeWarning, stacklevel=2)
    model.vis.global_.offwidth = max(model.vis.global_.offwidth, width)
    model.vis.global_.offheight = max(model.vis.global_.offheight, height)
    return model


def default_threads(num_envs: int) -> int:
    """Threads for ``num_envs`` copies: none besides the calling thread for small batches."""
    return 0 if num_envs < 64 else min(8, os.cpu_count() or 1)


class CheetahCore(FamilyCore):
    """``num_envs`` half cheetahs; subclasses define the task and its reward.

    The copies are the simulations of one ``mujoco.batch.Batch``: each is a row of MuJoCo's
    ``mjSTATE_INTEGRATION`` state (time, ``qpos``, ``qvel``, the constraint solver's warm start, the
    controls, ...), and a step is one ``Batch.step`` of ``FRAME_SKIP`` substeps for all copies, on
    ``nthread`` threads inside MuJoCo's C library. A copy steps exactly as one ``MjData`` under
    ``mj_step`` does, so the physics is ``HalfCheetah-v5``'s bit for bit, at any thread count.
    """

    limit_is_truncation = True
    accepts_unclipped_actions = True  # MuJoCo clamps ctrl; the control cost sees the raw action
    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array", "ansi"], "render_fps": 20}

    # ``state``: MuJoCo's integration state (time, qpos, qvel, warm start, controls) of every copy.
    state_attributes = ("tasks", "state", "torso_position", "x_position", "x_velocity", "reward_forward",
                        "reward_ctrl")

    def __init__(self, num_envs: int, width: int = 480, height: int = 480, nthread: int | None = None,
                 episode_steps: int = EPISODE_STEPS) -> None:
        super().__init__(num_envs)
        self.width = check_int("width", width, 1, MAX_IMAGE_SIDE)
        self.height = check_int("height", height, 1, MAX_IMAGE_SIDE)
        self.nthread = default_threads(num_envs) if nthread is None else check_int("nthread", nthread, 0, 256)
        self.model = load_half_cheetah(self.width, self.height)
        self.init_qpos = self.model.qpos0.copy()
        self.init_qvel = np.zeros(self.model.nv)
        self.dt = self.model.opt.timestep * FRAME_SKIP
        self.torso = self.model.body("torso").id
        self.torso_position = np.zeros((num_envs, 3))
        self.per_episode_limit = check_int("episode_steps", episode_steps, 1, 100_000)
        obs_dim = self.model.nq - 1 + self.model.nv + 3
        limit = np.finfo(np.float32).max  # unbounded in practice; finite so that check_env does not warn
        self.observation_space = spaces.Box(-limit, limit, shape=(obs_dim,), dtype=np.float32)
        low, high = self.model.actuator_ctrlrange.T.astype(np.float32)
        self.action_space = spaces.Box(low, high, dtype=np.float32)
        self.tasks = np.ones((num_envs, 1))
        self.x_position = np.zeros(num_envs)
        self.x_velocity = np.zeros(num_envs)
        self.reward_forward = np.zeros(num_envs)
        self.reward_ctrl = np.zeros(num_envs)
        self._never_terminal = np.zeros(num_envs, dtype=bool)
        self._never_terminal.flags.writeable = False
        self._renderers: dict[int, Any] = {}
        self._start_batch()

    def extra_bytes_per_copy(self) -> int:
        return BATCH_BYTES_PER_COPY

    def _start_batch(self, state: np.ndarray | None = None) -> None:
        """The MuJoCo batch and live views of its fields (rebuilt after unpickling, from ``state``)."""
        from mujoco import batch

        # Batch's thread count includes the calling thread (and 0 would mean every CPU).
        self._batch = batch.Batch(self.model, self.num_envs, nthread=max(1, self.nthread))
        if state is not None:
            self._batch.state[:] = state
        self._qpos, self._qvel = self._batch.bind("qpos"), self._batch.bind("qvel")
        # A state row is (time, qpos, qvel, ...): the observed qpos[1:] and qvel are one slice of it.
        skip = mujoco.mj_stateSize(self.model, mujoco.mjtState.mjSTATE_TIME) + 1
        self._observed_joints = self._batch.state[:, skip : skip + self.model.nq - 1 + self.model.nv]
        self._root_x = self._qpos[:, 0]
        self._ctrl = self._batch.bind("ctrl")
        # A derived field, refreshed in place by every call (as data.xpos by mj_step): views stay live.
        self._xpos = self._batch.bind("xpos")
        self._torso_xpos = self._xpos[:, self.torso]
        # Constants as arrays: numpy mixes a scalar into an operation on tiny arrays more slowly.
        self._ctrl_cost_weight = np.full(self.num_envs, -CTRL_COST_WEIGHT)
        self._dt = np.full(self.num_envs, self.dt)

    @property
    def state(self) -> np.ndarray:
        """The copies' ``mjSTATE_INTEGRATION`` rows, ``(num_envs, nstate)`` (live: writes are the state)."""
        return self._batch.state

    @property
    def qpos(self) -> np.ndarray:
        """Joint positions of every copy, ``(num_envs, nq)`` (a view of ``state``)."""
        return self._qpos

    @property
    def qvel(self) -> np.ndarray:
        """Joint velocities of every copy, ``(num_envs, nv)`` (a view of ``state``)."""
        return self._qvel

    @abc.abstractmethod
    def velocity_reward(self, velocity: np.ndarray) -> np.ndarray:
        """The task's reward for forward velocities ``velocity`` (one per copy)."""

    # --- dynamics --------------------------------------------------------------------------
    def start_episodes(self, idx: np.ndarray, rng: CounterRNG) -> None:
        nq, nv = self.model.nq, self.model.nv
        u = rng.uniform(nq + 2 * nv, idx)
        qpos = self.init_qpos + RESET_NOISE_SCALE * (2.0 * u[:, :nq] - 1.0)
        radius = np.sqrt(-2.0 * np.log1p(-u[:, nq : nq + nv]))  # Box-Muller; 1 - u is in (0, 1]
        qvel = self.init_qvel + RESET_NOISE_SCALE * radius * np.cos(2.0 * np.pi * u[:, nq + nv :])
        # As HalfCheetah-v5's reset: mj_resetData (time, warm start and controls zero), the noisy
        # qpos / qvel, then mj_forward for the first observation's torso position.
        self._batch.reset(idx, stage=mujoco.mjtStage.mjSTAGE_NONE)
        self._qpos[idx] = qpos
        self._qvel[idx] = qvel
        self._batch.forward(idx)
        self.torso_position[idx] = self._torso_xpos[idx]
        self.x_position[idx] = qpos[:, 0]

    def step(self, actions: np.ndarray, rng: CounterRNG) -> tuple[np.ndarray, np.ndarray]:
        # ufuncs rather than array methods (``.sum`` goes through Python): a single env's step is
        # mostly this bookkeeping on one-element arrays, so each call matters.
        ctrl = self._ctrl
        ctrl[:] = actions
        self.reward_ctrl = np.multiply(self._ctrl_cost_weight, np.add.reduce(np.square(ctrl), 1))
        self._batch.step(nstep=FRAME_SKIP)
        # Like ``data.xpos`` after ``mj_step``, the torso position is that of the last substep's start.
        self.torso_position = self._torso_xpos.copy()
        x_position = self._root_x.copy()
        self.x_velocity = np.divide(np.subtract(x_position, self.x_position), self._dt)
        self.x_position = x_position
        self.reward_forward = self.velocity_reward(self.x_velocity)
        return np.add(self.reward_forward, self.reward_ctrl), self._never_terminal

    def observe(self, out: np.ndarray) -> None:
        joints = self._observed_joints.shape[1]
        out[:, :joints] = self._observed_joints
        out[:, joints : joints + 3] = self.torso_position

    def step_info(self, i: int) -> dict[str, float]:
        return {
            "x_position": self.x_position.item(i),
            "x_velocity": self.x_velocity.item(i),
            "reward_forward": self.reward_forward.item(i),
            "reward_ctrl": self.reward_ctrl.item(i),
        }

    # --- rendering -------------------------------------------------------------------------
    def render_ansi(self, i: int) -> str:
        return (f"x={self.x_position[i]:+.3f} v={self.x_velocity[i]:+.3f} task={self.tasks[i, 0]:+.3f} "
                f"reward={self.reward_forward[i] + self.reward_ctrl[i]:+.3f}\n")

    def render_rgb(self, i: int) -> np.ndarray:
        if i not in self._renderers:
            from gymnasium.envs.mujoco.mujoco_rendering import MujocoRenderer

            if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
                # Headless: Gymnasium would try GLFW first, which only warns and then fails.
                os.environ.setdefault("MUJOCO_GL", "egl")

            data = mujoco.MjData(self.model)
            self._renderers[i] = (data, MujocoRenderer(
                self.model, data, width=self.width, height=self.height, camera_name="track"
            ))
        data, renderer = self._renderers[i]
        self._batch.get_data(i, data)
        mujoco.mj_forward(self.model, data)
        return renderer.render("rgb_array")

    def close(self) -> None:
        for _, renderer in self._renderers.values():
            renderer.close()
        self._renderers.clear()

    def __getstate__(self) -> dict[str, Any]:
        # OpenGL contexts and the MuJoCo batch do not pickle; they are rebuilt on demand / on load.
        transient = ("_batch", "_qpos", "_qvel", "_observed_joints", "_root_x", "_ctrl", "_xpos", "_torso_xpos",
                     "_ctrl_cost_weight", "_dt")
        state = {k: v for k, v in self.__dict__.items() if k not in transient}
        state["_renderers"] = {}
        state["_physics"] = self._batch.state.copy()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        physics = state.pop("_physics")
        self.__dict__.update(state)
        self._start_batch(physics)


class CheetahDirCore(CheetahCore):
    """Cheetah-Dir: the task is the running direction ``d`` in ``{-1, +1}``."""

    family = "MetaCheetahDir"

    def __init__(self, num_envs: int, width: int = 480, height: int = 480, nthread: int | None = None,
                 episode_steps: int = EPISODE_STEPS) -> None:
        super().__init__(num_envs, width, height, nthread, episode_steps)
        self.task_space = spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float64)

    def tasks_from_uniforms(self, u: np.ndarray) -> np.ndarray:
        return np.where(u < 0.5, 1.0, -1.0)

    def check_task(self, task: Any) -> np.ndarray:
        try:
            arr = np.asarray(task, dtype=np.float64).reshape(1)
        except (TypeError, ValueError):
            arr = None
        if arr is None or abs(arr[0]) != 1.0:
            raise self.invalid_task(task, "[+1] (run forward) or [-1] (run backward)")
        return arr

    def velocity_reward(self, velocity: np.ndarray) -> np.ndarray:
        return self.tasks[:, 0] * velocity


class CheetahVelCore(CheetahCore):
    """Cheetah-Vel: the task is a target forward velocity ``v*`` drawn from ``velocity_range``."""

    family = "MetaCheetahVel"

    def __init__(self, num_envs: int, velocity_range: tuple[float, float] = (0.0, 3.0), width: int = 480,
                 height: int = 480, nthread: int | None = None, episode_steps: int = EPISODE_STEPS) -> None:
        super().__init__(num_envs, width, height, nthread, episode_steps)
        bounds = list(velocity_range) if isinstance(velocity_range, (tuple, list, np.ndarray)) else []
        numbers = len(bounds) == 2 and all(
            isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) for v in bounds
        )
        if not (numbers and np.all(np.abs(bounds) <= MAX_TARGET_SPEED) and bounds[0] <= bounds[1]):
            raise ValueError(
                f"velocity_range must be two numbers (low, high) with -{MAX_TARGET_SPEED:g} <= low <= high <= "
                f"{MAX_TARGET_SPEED:g} (m/s), got {velocity_range!r}"
            )
        low, high = self.velocity_range = (float(bounds[0]), float(bounds[1]))
        self.task_space = spaces.Box(low, high, shape=(1,), dtype=np.float64)
        self.tasks[:] = low

    def tasks_from_uniforms(self, u: np.ndarray) -> np.ndarray:
        low, high = self.velocity_range
        return low + (high - low) * u

    def check_task(self, task: Any) -> np.ndarray:
        low, high = self.velocity_range
        try:
            arr = np.asarray(task, dtype=np.float64).reshape(1)
        except (TypeError, ValueError):
            arr = None
        if arr is None or not low <= arr[0] <= high:
            raise self.invalid_task(task, f"[v*] with v* in velocity_range [{low}, {high}]")
        return arr

    def velocity_reward(self, velocity: np.ndarray) -> np.ndarray:
        return -np.abs(velocity - self.tasks[:, 0])


class MetaCheetahEnv(MetaEnv):
    """Adds HalfCheetah-v5's physical quantities to the trial ``info`` and closes the renderer."""

    core_family = CheetahCore

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = super().reset(seed=seed, options=options)
        info["x_position"] = float(self.core.x_position[0])
        return obs, info

    def step(self, action: Any):
        obs, reward, terminated, truncated, info = super().step(action)
        info.update(self.core.step_info(0))
        return obs, reward, terminated, truncated, info

    def close(self) -> None:
        self.core.close()
        super().close()


class MetaCheetahVectorEnv(MetaVectorEnv):
    """The batched cheetahs as a Gymnasium vector env (``gymnasium.make_vec``), with the single env's
    physical ``info`` keys as vector infos."""

    # A single env's reset info carries ``x_position`` too: after an autoreset it is the new trial's.
    _RESET_INFO_KEYS = (*MetaVectorEnv._RESET_INFO_KEYS, "x_position")

    def reset(self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None):
        obs, info = super().reset(seed=seed, options=options)
        info["x_position"], info["_x_position"] = self.core.x_position.copy(), info["_task"].copy()
        return obs, info

    def step(self, actions: Any):
        obs, reward, terminated, truncated, info = super().step(actions)
        info["x_position"] = self.core.x_position.copy()  # a new trial's start where one ended
        return obs, reward, terminated, truncated, info

    def step_info(self) -> dict[str, np.ndarray]:
        core, ones = self.core, self._every_copy.copy()
        info = {"x_position": core.x_position, "x_velocity": core.x_velocity,
                "reward_forward": core.reward_forward, "reward_ctrl": core.reward_ctrl}
        return {**{k: v.copy() for k, v in info.items()}, **{f"_{k}": ones for k in info}}

    def close_extras(self, **kwargs: Any) -> None:
        self.core.close()
