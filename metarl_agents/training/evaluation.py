"""Meta-evaluation: one full trial on each of ``n_tasks`` held-out tasks (the SplAgger paper's protocol).

The reported number is the **meta-episode return**: the sum over the trial's inner episodes of
the mean (over tasks) episode return. The per-episode means show whether the agent improves from
episode to episode of a trial, which is what meta-learning is about.

The protocol, shared by ``metarl-train``, ``metarl-bench`` and :class:`MetaEvalCallback`: every
evaluation of a run uses the same ``n_tasks`` tasks -- env copies seeded ``seed + 1_000_003 + i``
(:func:`~metarl_agents.training.config.eval_seed`), which the training envs (``seed + i``) never use --
and deterministic actions, one trial per task. The same tasks at every point make a learning curve
show the agent's progress rather than the tasks' difficulty.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import gymnasium as gym
import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

from metarl_agents.training.callbacks import EvaluationCallback, StopTrainingOnReturn
from metarl_agents.training.config import eval_seed
from metarl_agents.training.vec_env import make_vec_env
from metarl_agents.value_check import check_count


class Predictor(Protocol):
    """Anything with SB3's recurrent ``predict``: a model, a policy or a scripted agent."""

    def predict(self, observation: np.ndarray, state: Any = None, episode_start: np.ndarray | None = None,
                deterministic: bool = False) -> tuple[np.ndarray, Any]: ...


def evaluate_meta(model_or_policy: Predictor, env_id: str, n_tasks: int = 16, seed: int = 0,
                  deterministic: bool = True, env_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run one trial per task on ``n_tasks`` copies of ``env_id`` (copy ``i`` seeded ``seed + i``).

    For a run's evaluation protocol pass ``seed=eval_seed(run_seed)``. Returns ``dict(meta_episode_return,
    episode_returns, per_task)``: ``per_task[i]`` lists the inner
    episode returns of task ``i`` and ``episode_returns[k]`` is their mean over tasks for episode ``k``.
    Pick a ``seed`` the training envs never use to get tasks the agent has not trained on.
    """
    n_tasks = check_count("n_tasks", n_tasks)
    if not callable(getattr(model_or_policy, "predict", None)):
        raise ValueError(f"model_or_policy must have SB3's predict(obs, state, episode_start, deterministic), "
                         f"got {type(model_or_policy).__name__}")
    env = make_vec_env(env_id, n_tasks, seed, **(env_kwargs or {}))
    # A generous cap against agents that never finish a trial (an env of ours ends every trial by itself).
    try:
        max_steps = 10 * int(env.get_attr("max_trial_steps")[0])
    except AttributeError:
        max_steps = 10 * (gym.spec(env_id).max_episode_steps or 10_000)
    try:
        obs = env.reset()
        state, starts = None, np.ones(n_tasks, dtype=bool)
        per_task: list[list[float]] = [[] for _ in range(n_tasks)]
        finished = np.zeros(n_tasks, dtype=bool)
        for _ in range(max_steps):
            actions, state = model_or_policy.predict(obs, state, starts, deterministic)
            obs, _, dones, infos = env.step(actions)
            for i in np.flatnonzero(~finished):
                if infos[i].get("episode_end"):
                    per_task[i].append(float(infos[i]["episode_return"]))
            finished |= dones
            starts = dones
            if finished.all():
                break
        else:
            raise RuntimeError(f"{env_id}: not every trial ended within {max_steps} steps")
    finally:
        env.close()
    n_episodes = min(len(r) for r in per_task)
    episode_returns = [float(np.mean([r[k] for r in per_task])) for k in range(n_episodes)]
    return {"meta_episode_return": float(sum(episode_returns)), "episode_returns": episode_returns,
            "per_task": per_task}


class MetaEvalCallback(EvaluationCallback):
    """:class:`~metarl_agents.training.callbacks.EvaluationCallback` with this module's protocol: every
    evaluation runs :func:`evaluate_meta` on the same held-out tasks, from ``seed`` (default:
    ``eval_seed(model.seed)``, the protocol of ``metarl-train`` and ``metarl-bench``), and adds ``seed`` to
    the result.

    It evaluates at the start (frame 0 of a fresh run), at the first rollout start at or past each multiple
    of ``eval_freq`` frames, and at the end. ``stop_at_return`` is short for
    ``callback_after_eval=StopTrainingOnReturn(stop_at_return)`` (stop at the first evaluation that reaches
    it); give the child yourself for a ``patience``, or combine several in SB3's ``CallbackList``.
    """

    def __init__(self, env_id: str, eval_freq: int, n_tasks: int = 16, seed: int | None = None,
                 env_kwargs: dict[str, Any] | None = None,
                 on_result: Callable[[dict[str, Any]], None] | None = None, stop_at_return: float | None = None,
                 verbose: int = 0, callback_on_new_best: BaseCallback | None = None,
                 callback_after_eval: BaseCallback | None = None) -> None:
        if stop_at_return is not None:
            if callback_after_eval is not None:
                raise ValueError("stop_at_return is short for callback_after_eval=StopTrainingOnReturn(stop_at_return);"
                                 " give one of them (several children: SB3's CallbackList)")
            callback_after_eval = StopTrainingOnReturn(stop_at_return)
        super().__init__(self._evaluate_meta, eval_freq, callback_on_new_best=callback_on_new_best,
                         callback_after_eval=callback_after_eval, on_result=on_result, verbose=verbose)
        self.env_id, self.n_tasks, self.seed, self.env_kwargs = env_id, n_tasks, seed, env_kwargs
        self.stop_at_return = stop_at_return

    @property
    def solved(self) -> bool:
        """``stop_at_return`` was given and an evaluation reached it."""
        return self.stop_at_return is not None and self.callback.met

    def _evaluate_meta(self, model: Any) -> dict[str, Any]:
        seed = self.seed if self.seed is not None else eval_seed(model.seed or 0)
        return {**evaluate_meta(model, self.env_id, self.n_tasks, seed, env_kwargs=self.env_kwargs), "seed": seed}
