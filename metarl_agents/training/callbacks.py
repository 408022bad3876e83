"""Training callbacks that compose, in Stable-Baselines3's style.

:class:`EvaluationCallback` evaluates on a fixed schedule during ``learn`` and hands every result to its
child callbacks (``callback_on_new_best``, ``callback_after_eval``) and to an ``on_result`` consumer, as SB3's
``EvalCallback`` does; it exposes ``last_mean_reward`` and ``best_mean_reward`` under SB3's names, so SB3's own
children (``StopTrainingOnRewardThreshold``, ``StopTrainingOnNoModelImprovement``) work under it, and
:class:`StopTrainingOnReturn` works under SB3's ``EvalCallback``. Evaluations happen at rollout starts, right
after an update, so every evaluated point is a model the run actually has (and can checkpoint).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback, EventCallback

from metarl_agents.value_check import check_count

Result = dict[str, Any]


class StopTrainingOnReturn(BaseCallback):
    """Stop training after ``patience`` consecutive evaluations with a return >= ``threshold``.

    A child of an evaluation callback (this module's or SB3's ``EvalCallback``): it reads the parent's
    ``last_mean_reward`` after each evaluation. One evaluation below the threshold resets the count, so a
    lucky evaluation does not end a run whose return is still noisy. :meth:`observe` counts a return
    directly, e.g. to continue the streak of a resumed run from its stored evaluations.
    """

    def __init__(self, threshold: float, patience: int = 1, verbose: int = 0) -> None:
        super().__init__(verbose)
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold):
            raise ValueError(f"threshold must be a finite number, got {threshold!r}")
        self.threshold, self.patience = float(threshold), check_count("patience", patience)
        self.streak = 0  #: consecutive evaluations so far at or above the threshold

    @property
    def met(self) -> bool:
        """The rule is met: the last ``patience`` evaluations all reached the threshold."""
        return self.streak >= self.patience

    def observe(self, meta_episode_return: float) -> bool:
        """Count one evaluation's return; whether the rule is now met."""
        self.streak = self.streak + 1 if meta_episode_return >= self.threshold else 0
        return self.met

    def _on_step(self) -> bool:
        if self.parent is None:
            raise RuntimeError("StopTrainingOnReturn is a child of an evaluation callback: pass it as its "
                               "callback_after_eval")
        if self.observe(self.parent.last_mean_reward) and self.verbose:
            print(f"stopping: {self.streak} evaluation(s) in a row reached {self.threshold:g}")
        return not self.met


class EvaluationCallback(EventCallback):
    """Call ``evaluate(model)`` at the first rollout start at or past each multiple of ``eval_freq`` frames.

    ``evaluate`` returns a dict with ``meta_episode_return``; ``frames`` and ``wall_time_s`` are added, the
    result appended to :attr:`results` and logged as ``eval/meta_episode_return``. Then, in this order:
    ``on_result(result)`` (e.g. write it to disk, so a run stopped by a child still has its last point),
    ``callback_on_new_best`` (when the return beats every earlier one) and ``callback_after_eval``. Training
    stops at the next step once a child returns False.

    ``eval_at_start``: also evaluate the model ``learn`` starts with (frame 0 on a fresh curve); without it,
    the first evaluation is at the next multiple (a resumed run's current point is already recorded).
    ``eval_at_end``: evaluate once more when ``learn`` ends, unless that point was just evaluated or a child
    stopped training (the weights are then those of the last evaluation).
    """

    def __init__(self, evaluate: Callable[[Any], Result], eval_freq: int,
                 callback_on_new_best: BaseCallback | None = None, callback_after_eval: BaseCallback | None = None,
                 on_result: Callable[[Result], None] | None = None, eval_at_start: bool = True,
                 eval_at_end: bool = True, verbose: int = 0) -> None:
        super().__init__(callback_after_eval, verbose=verbose)
        self.eval_freq = check_count("eval_freq (frames)", eval_freq)
        self.evaluate_model, self.on_result = evaluate, on_result
        self.callback_on_new_best = callback_on_new_best
        if callback_on_new_best is not None:
            callback_on_new_best.parent = self
        self.eval_at_start, self.eval_at_end = eval_at_start, eval_at_end
        self.results: list[Result] = []
        self.last_mean_reward = self.best_mean_reward = -np.inf  # SB3's names, read by its children

    def _init_callback(self) -> None:
        # Called by learn() once num_timesteps is set (also by models without on_training_start).
        super()._init_callback()
        if self.callback_on_new_best is not None:
            self.callback_on_new_best.init_callback(self.model)
        frames = int(self.model.num_timesteps)
        self._next_eval = frames if self.eval_at_start else (frames // self.eval_freq + 1) * self.eval_freq
        self.continue_training = True  #: False once a child asked to stop
        self._t0 = time.time()

    def _on_rollout_start(self) -> None:
        if self.model.num_timesteps >= self._next_eval:
            self.evaluate()

    def _on_step(self) -> bool:
        return self.continue_training

    def _on_training_end(self) -> None:
        frames = int(self.model.num_timesteps)
        if self.eval_at_end and self.continue_training and (not self.results or self.results[-1]["frames"] != frames):
            self.evaluate()

    def evaluate(self) -> Result:
        """Evaluate now, pass the result on and schedule the next evaluation."""
        frames = int(self.model.num_timesteps)
        result = self.evaluate_model(self.model)
        result.update(frames=frames, wall_time_s=round(time.time() - self._t0, 3))
        self.results.append(result)
        self._next_eval = (frames // self.eval_freq + 1) * self.eval_freq
        self.last_mean_reward = float(result["meta_episode_return"])
        logger = getattr(self.model, "logger", None)  # the runner's Model protocol does not require one
        if logger is not None:
            logger.record("eval/meta_episode_return", self.last_mean_reward)
        if self.verbose:
            print(f"frames {frames}: meta-episode return {self.last_mean_reward:.3f}")
        if self.on_result is not None:
            self.on_result(result)
        keep_going = True
        if self.last_mean_reward > self.best_mean_reward:
            self.best_mean_reward = self.last_mean_reward
            if self.callback_on_new_best is not None:
                keep_going = self.callback_on_new_best.on_step()
        if self.callback is not None:
            keep_going = self._on_event() and keep_going
        self.continue_training = self.continue_training and keep_going
        return result


class OnRolloutEnd(BaseCallback):
    """Call ``hook(model)`` after every rollout (e.g. to move a progress display)."""

    def __init__(self, hook: Callable[[Any], None]) -> None:
        super().__init__()
        self.hook = hook

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        self.hook(self.model)
