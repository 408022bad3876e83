"""Cheetah-Dir and Cheetah-Vel: Gymnasium's HalfCheetah-v5 robot with a hidden goal direction or speed.

## Description
The planar half cheetah of ``HalfCheetah-v5`` (Gymnasium's ``half_cheetah.xml``, frame skip 5, so
one step is ``dt = 0.05`` s). The task is not observed; the agent has to infer it from rewards.

* ``MetaCheetahDir-v0``: run forward (task ``+1``) or backward (task ``-1``).
* ``MetaCheetahVel-v0``: run forward at a target velocity ``v*``.

## Action Space
``Box(-1, 1, (6,), float32)``: torques of the back thigh, shin, foot and front thigh, shin, foot.
Finite actions outside the box are accepted, as ``HalfCheetah-v5`` accepts them: MuJoCo clamps the
control to ``[-1, 1]`` itself (the model's actuators are ``ctrllimited``), while the control cost is
computed on the action as given. That is what the reference experiments stepped: the raw Gaussian
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
The cheetah never terminates. An episode is 200 steps and ends with ``truncated=True`` -- a time
limit: learners bootstrap from the value. A trial holds ``episodes_per_trial`` (1) episodes.

## Arguments
``episodes_per_trial`` (>= 1, 1; pass ``max_episode_steps=200 * episodes_per_trial`` to
``gymnasium.make``), Vel's ``velocity_range`` (``(low, high)``, finite, ``low <= high``;
``(0.0, 3.0)``, BO-MRL uses ``(0.0, 2.0)``), ``render_mode`` (``"rgb_array"`` or ``"ansi"``),
``width`` / ``height`` of ``rgb_array`` frames (480).

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
The ids have no native vector env: ``gymnasium.make_vec`` uses Gymnasium's sync/async
vectorisation. The core nevertheless follows the batched :class:`~metarl_envs.core.FamilyCore`
contract; it holds one ``MjData`` per copy and steps them in a Python loop (MuJoCo has no batched
step; the reward and task arithmetic is vectorised).

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

from metarl_envs.core import FamilyCore, MetaEnv, check_int
from metarl_envs.rng import CounterRNG

#: Largest rendered image side (MuJoCo's offscreen buffer is allocated at this size).
MAX_IMAGE_SIDE = 8192

FRAME_SKIP = 5
EPISODE_STEPS = 200
CTRL_COST_WEIGHT = 0.05
RESET_NOISE_SCALE = 0.1


def load_half_cheetah(width: int = 480, height: int = 480) -> mujoco.MjModel:
    """Compile Gymnasium's ``half_cheetah.xml`` with an offscreen buffer of at least ``width x height``.

    Recent MuJoCo releases flag the file's ``settotalmass`` attribute as deprecated and write that
    warning to ``MUJOCO_LOG.TXT`` in the working directory; it is swallowed here (the compiled model
    is unchanged), any other compiler warning is re-raised as a Python ``RuntimeWarning``.
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


class CheetahCore(FamilyCore):
    """``num_envs`` half cheetahs, one ``MjData`` each; subclasses define the task and its reward.

    MuJoCo steps one ``MjData`` per call, so ``step``, ``start_episodes`` and ``observe`` loop over
    copies in Python -- the one family allowed to (physics dominates the cost anyway).
    """

    limit_is_truncation = True
    accepts_unclipped_actions = True  # MuJoCo clamps ctrl; the control cost sees the raw action
    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array", "ansi"], "render_fps": 20}

    def __init__(self, num_envs: int, width: int = 480, height: int = 480) -> None:
        super().__init__(num_envs)
        self.width = check_int("width", width, 1, MAX_IMAGE_SIDE)
        self.height = check_int("height", height, 1, MAX_IMAGE_SIDE)
        self.model = load_half_cheetah(self.width, self.height)
        self.datas = [mujoco.MjData(self.model) for _ in range(num_envs)]
        self.init_qpos = self.datas[0].qpos.copy()
        self.init_qvel = self.datas[0].qvel.copy()
        self.dt = self.model.opt.timestep * FRAME_SKIP
        self.torso = self.model.body("torso").id
        self.per_episode_limit = EPISODE_STEPS
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
        self._renderers: dict[int, Any] = {}

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
        for i, position, velocity in zip(idx, qpos, qvel, strict=True):
            data = self.datas[i]
            mujoco.mj_resetData(self.model, data)
            data.qpos[:] = position
            data.qvel[:] = velocity
            mujoco.mj_forward(self.model, data)
        self.x_position[idx] = qpos[:, 0]

    def step(self, actions: np.ndarray, rng: CounterRNG) -> tuple[np.ndarray, np.ndarray]:
        x_before = self.x_position.copy()
        for i, (data, action) in enumerate(zip(self.datas, actions, strict=True)):
            data.ctrl[:] = action
            mujoco.mj_step(self.model, data, nstep=FRAME_SKIP)
            self.x_position[i] = data.qpos[0]
        self.x_velocity = (self.x_position - x_before) / self.dt
        self.reward_forward = self.velocity_reward(self.x_velocity)
        self.reward_ctrl = -CTRL_COST_WEIGHT * np.square(actions.astype(np.float64)).sum(axis=1)
        return self.reward_forward + self.reward_ctrl, np.zeros(self.num_envs, dtype=bool)

    def observe(self, out: np.ndarray) -> None:
        nq, nv = self.model.nq, self.model.nv
        for i, data in enumerate(self.datas):
            out[i, : nq - 1] = data.qpos[1:]
            out[i, nq - 1 : nq - 1 + nv] = data.qvel
            out[i, nq - 1 + nv : nq + nv + 2] = data.xpos[self.torso]

    def step_info(self, i: int) -> dict[str, float]:
        return {
            "x_position": float(self.x_position[i]),
            "x_velocity": float(self.x_velocity[i]),
            "reward_forward": float(self.reward_forward[i]),
            "reward_ctrl": float(self.reward_ctrl[i]),
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

            self._renderers[i] = MujocoRenderer(
                self.model, self.datas[i], width=self.width, height=self.height, camera_name="track"
            )
        return self._renderers[i].render("rgb_array")

    def close(self) -> None:
        for renderer in self._renderers.values():
            renderer.close()
        self._renderers.clear()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_renderers"] = {}  # OpenGL contexts do not pickle; they are rebuilt on demand
        return state


class CheetahDirCore(CheetahCore):
    """Cheetah-Dir: the task is the running direction ``d`` in ``{-1, +1}``."""

    family = "MetaCheetahDir"

    def __init__(self, num_envs: int, width: int = 480, height: int = 480) -> None:
        super().__init__(num_envs, width, height)
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
                 height: int = 480) -> None:
        super().__init__(num_envs, width, height)
        bounds = list(velocity_range) if isinstance(velocity_range, (tuple, list, np.ndarray)) else []
        numbers = len(bounds) == 2 and all(
            isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) for v in bounds
        )
        if not (numbers and np.all(np.isfinite(bounds)) and bounds[0] <= bounds[1]):
            raise ValueError(
                f"velocity_range must be two finite numbers (low, high) with low <= high, got {velocity_range!r}"
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


class MetaCheetahDirEnv(MetaCheetahEnv):
    __doc__ = __doc__
    core_class = CheetahDirCore


class MetaCheetahVelEnv(MetaCheetahEnv):
    __doc__ = __doc__
    core_class = CheetahVelCore
