"""BO-MRL and MAML-TRPO runs on the leaderboard: their grid, their trainer, and how they fit the store.

The agents (``BOMRL-Alg1``, ``BOMRL-Alg2``, ``BOMRL-Alg3``, ``MAML-TRPO``) train with the BO-MRL authors'
MuJoCo protocol (:class:`~metarl_agents.bomrl.mujoco_protocol.CheetahProtocol`, the code behind
``python -m metarl_agents.bomrl.cheetah``) on Cheetah-Vel, Cheetah-Dir and the 2-D point navigation, and go
through the runner's trainer seam like MetaPPO, so their points land in the same store and the report ranks
them with intervals over seeds. A run maps onto the store as follows.

* **Budget.** A run is ``iterations`` meta-iterations (the paper: 500). The store counts frames, so a run's
  frames are the environment steps its meta-iterations collect:
  :func:`~metarl_agents.bomrl.meta_training.frames_per_iteration` each (tasks x (pre- + post-adaptation
  trajectories) x (horizon + continuation)); the normaliser's warm-up and the meta-tests are not counted.
  The paper's budget (``paper_frames``) is 500 such iterations, so a shorter run is labelled REDUCED.
* **Evaluation.** Every ``eval_every_iterations`` meta-iterations and at the end, a meta-test on the
  protocol's fixed test tasks. The stored return is the deterministic return after one adaptation round
  (K = 1; mean over the test tasks), the paper's headline number; the point's ``episode_returns`` hold
  K = 0, 1, ..., ``test_rounds``. Every meta-test of a run draws its trajectories from generators seeded
  with the run's evaluation seed and leaves the training state as it was, so the training curve is the
  one the command gives for the same seed and settings.
* **Learning rate.** A run's ``learning_rate`` (``--lrs``) is the adaptation's step size: BO-MRL's
  lower-level ``inner_lr``, MAML-TRPO's inner ``maml_lr`` (default: the protocol's). The meta-step is a TRPO step bounded by ``max_kl``.
* **Settings.** ``overrides`` replace protocol settings (``n_trajectories``, ``horizon``, ``hidden``, ...),
  ``env_kwargs`` the env's; both are part of a run's identity and are reported as non-paper settings.
* **Checkpoints.** After every evaluation, the command's payload
  (:meth:`~metarl_agents.bomrl.meta_training.MetaTrainingRun.state`) in the leaderboard's checkpoint file:
  a killed run resumes to the same numbers.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from metarl_agents.leaderboard.grid import (
    MIN_EVAL_POINTS,
    RunSpec,
    check_choices,
    parse_seeds,
    positive_int,
    preset_hash,
    refuse_repeats,
    registered_agents,
    registered_envs,
)
from metarl_agents.leaderboard.meta_gradient_agents import (
    AGENT_METHODS,
    ENV_TASKS,
    PAPER_ITERATIONS,
    PROTOCOL,
)
from metarl_agents.training.errors import CheckpointError

#: The seeds a grid runs when none are given (those of the command's paper runs).
DEFAULT_SEEDS = (0, 1, 2)
#: Protocol settings a run's ``overrides`` may not set: they have their own place (agent, env, env_kwargs,
#: lr) or change no result (MuJoCo's thread count).
NOT_OVERRIDES = ("task", "method", "env_kwargs", "inner_lr", "maml_lr", "nthread")


def adaptation_lr_setting(agent: str) -> str:
    """The protocol setting a run's ``learning_rate`` sets: the adaptation's step size."""
    return "maml_lr" if AGENT_METHODS[agent] == "maml" else "inner_lr"


def protocol_for(spec: RunSpec) -> Any:
    """The run's :class:`~metarl_agents.bomrl.mujoco_protocol.CheetahProtocol`."""
    from metarl_agents.bomrl.mujoco_protocol import CheetahProtocol

    return CheetahProtocol(task=ENV_TASKS[spec.env_id], method=AGENT_METHODS[spec.agent],
                           env_kwargs=dict(spec.env_kwargs), **spec.overrides,
                           **{adaptation_lr_setting(spec.agent): spec.learning_rate})


# -- the grid ----------------------------------------------------------------------------------------


def _protocol_defaults(task: str) -> dict[str, Any]:
    """The protocol's settings as its class declares them (per-method values unresolved): what every run of
    the task starts from, the same for every agent, so their runs share a report group."""
    from metarl_agents.bomrl.meta_training import protocol_settings

    settings = {f"setting:{name}": default for name, default in protocol_settings().items()}
    return {"protocol": PROTOCOL, "task": task, **settings}


def _refuse(name: str, value: Any, instead: str) -> None:
    if value is not None and value != {}:
        raise ValueError(f"{name}={value!r} does not apply to the meta-gradient agents ({', '.join(AGENT_METHODS)}): "
                         f"{instead}")


def build_meta_gradient_grid(envs: Sequence[str], agents: Sequence[str], seeds: Sequence[str] | None = None,
                             lrs: Sequence[float] | None = None, iterations: int | None = None,
                             eval_every_iterations: int | None = None,
                             overrides: dict[str, Any] | None = None,
                             env_kwargs: dict[str, Any] | None = None, stop_at_return: float | None = None,
                             patience: int | None = None, frames: int | None = None,
                             eval_every: int | None = None, n_eval_tasks: int | None = None,
                             n_final_eval_tasks: int | None = None,
                             policy_kwargs: dict[str, Any] | None = None,
                             protocol: str | None = None) -> list[RunSpec]:
    """All runs of env x agent x seed x lr for the meta-gradient agents (see the module docstring).

    ``iterations`` (default: the paper's 500) and ``eval_every_iterations`` (default: a tenth of them,
    rounded up) set the budget and the evaluations; ``seeds`` as for :func:`~.grid.build_grid` (default
    0, 1, 2); ``lrs`` the adaptation's step sizes (default: each agent's protocol value). The settings
    that :func:`~.grid.build_grid` takes and that mean something else here (``frames``, ``eval_every``,
    ``n_eval_tasks``, ``n_final_eval_tasks``, ``policy_kwargs``, ``protocol``) are refused with what to use
    instead. Every run's protocol is validated before any run is returned.
    """
    from metarl_agents.bomrl.meta_training import frames_per_iteration, protocol_settings
    from metarl_agents.bomrl.mujoco_protocol import CheetahProtocol

    if not envs or not agents:
        raise ValueError("need at least one env and one agent")
    for option, values in (("--envs", envs), ("--agents", agents), ("--lrs", list(lrs or []))):
        refuse_repeats(option, values)
    check_choices("agent", agents, registered_agents())
    others = [agent for agent in agents if agent not in AGENT_METHODS]
    if others:
        raise ValueError(f"{', '.join(others)} train by frames and {', '.join(a for a in agents if a not in others)} "
                         "by meta-iterations: give them separate `metarl-bench run` commands (they may share --db)")
    check_choices("env", envs, registered_envs())
    unsupported = [env for env in envs if env not in ENV_TASKS]
    if unsupported:
        raise ValueError(f"{', '.join(agents)} run on {', '.join(ENV_TASKS)} only; got {', '.join(unsupported)}")
    _refuse("frames", frames, "set the budget in meta-iterations (--iterations)")
    _refuse("eval_every", eval_every, "set the evaluations in meta-iterations (--eval-every-iterations)")
    _refuse("n_eval_tasks", n_eval_tasks, "the meta-test uses the protocol's test tasks (e.g. --override "
            "test_velocities=[0.5, 1.5] on MetaCheetahVel-v0)")
    _refuse("n_final_eval_tasks", n_final_eval_tasks, "every meta-test uses the protocol's test tasks")
    _refuse("policy_kwargs", policy_kwargs, "the policy is the protocol's (e.g. --override hidden=[64, 64])")
    _refuse("protocol", protocol, f"they always train with the BO-MRL protocol ({PROTOCOL!r})")
    overrides, env_kwargs = dict(overrides or {}), dict(env_kwargs or {})
    allowed = [name for name in protocol_settings() if name not in NOT_OVERRIDES]
    if "inner_lr" in overrides or "maml_lr" in overrides:
        raise ValueError("the adaptation's step size (inner_lr, maml_lr) is a grid axis: set it with --lrs "
                         "(build_meta_gradient_grid(lrs=...))")
    check_choices("override", list(overrides), allowed)
    iterations = positive_int("iterations", PAPER_ITERATIONS if iterations is None else iterations)
    every = positive_int("eval_every_iterations", math.ceil(iterations / MIN_EVAL_POINTS)
                          if eval_every_iterations is None else eval_every_iterations)
    if patience is not None and stop_at_return is None:
        raise ValueError(f"patience={patience!r} needs stop_at_return (the return to reach)")
    if stop_at_return is not None:
        if not math.isfinite(stop_at_return):
            raise ValueError(f"stop_at_return must be a finite number, got {stop_at_return!r}")
        patience = positive_int("patience", 1 if patience is None else patience)
    for lr in lrs or []:
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not (math.isfinite(lr) and lr > 0):
            raise ValueError(f"learning rates must be numbers > 0, got {lr!r}")
    specs = []
    for env_id in envs:
        task = ENV_TASKS[env_id]
        defaults = _protocol_defaults(task)
        for agent in agents:
            setting = adaptation_lr_setting(agent)
            for seed in parse_seeds(seeds, list(DEFAULT_SEEDS)):
                for lr in lrs or [defaults[f"setting:{setting}"]]:
                    try:  # checks every setting
                        run = CheetahProtocol(task=task, method=AGENT_METHODS[agent], env_kwargs=env_kwargs,
                                              **overrides, **{setting: float(lr)})
                    except TypeError as exc:  # a value of the wrong kind, e.g. gamma="high"
                        raise ValueError(f"a protocol setting has a value of the wrong type ({exc}); settings: "
                                         f"{json.dumps(overrides)}") from exc
                    if run.test_rounds < 1:
                        raise ValueError("test_rounds must be >= 1: the leaderboard's return is the meta-test's "
                                         "return after one adaptation round")
                    per_iteration = frames_per_iteration(run)
                    specs.append(RunSpec(env_id=env_id, agent=agent, seed=seed, learning_rate=float(lr),
                                         frames=iterations * per_iteration, paper_frames=PAPER_ITERATIONS * per_iteration,
                                         preset_name=f"{PROTOCOL}-{task}", preset_hash=preset_hash(defaults),
                                         eval_every=every * per_iteration, n_eval_tasks=len(run.test_tasks()),
                                         env_kwargs=env_kwargs, overrides=overrides, stop_at_return=stop_at_return,
                                         patience=patience, protocol=PROTOCOL))
    return specs


# -- the trainer ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MetaGradientConfig:
    """A run's resolved settings, as the store keeps them beside the run (and ``metarl-bench run`` prints)."""

    env_id: str
    agent: str
    seed: int
    iterations: int
    eval_every_iterations: int
    frames_per_iteration: int
    threads: int | None
    protocol: Any  # CheetahProtocol

    def as_dict(self) -> dict[str, Any]:
        """Every field by name, then the protocol's name and each of its settings."""
        run = {item.name: getattr(self, item.name) for item in dataclasses.fields(self) if item.name != "protocol"}
        return {**run, "protocol": PROTOCOL, **dataclasses.asdict(self.protocol)}

    def describe(self) -> str:
        """``key = value`` lines (unset values left out)."""
        return "\n".join(f"{key} = {json.dumps(value)}" for key, value in self.as_dict().items() if value is not None)


class MetaGradientModel:
    """A meta-training run as the runner drives a model: ``num_timesteps`` (the environment steps collected)
    and ``learn`` with SB3's callback hooks, one meta-iteration standing for one rollout and update."""

    n_envs = 1

    def __init__(self, run: Any) -> None:
        from stable_baselines3.common.logger import Logger

        from metarl_agents.bomrl.meta_training import frames_per_iteration

        self.run = run  # a MetaTrainingRun
        self.n_steps = frames_per_iteration(run.protocol)  # frames per "rollout", for the evaluation schedule
        self.logger = Logger(folder=None, output_formats=[])

    @property
    def num_timesteps(self) -> int:
        return self.run.frames

    def get_env(self) -> None:
        return None

    def learn(self, total_timesteps: int, callback: Any = None, reset_num_timesteps: bool = True,
              progress_bar: bool = False) -> MetaGradientModel:
        """Meta-iterations until ``total_timesteps`` more frames are collected (the frame count is that of
        the iterations done, so it is never reset), calling ``callback``'s hooks as SB3's loop does: rollout
        start (between iterations: where evaluations happen), step (False ends training; it comes before
        the iteration, so a stopping rule met at an evaluation costs no further meta-iteration), the
        iteration, rollout end."""
        from stable_baselines3.common.callbacks import CallbackList

        callback = CallbackList(callback if isinstance(callback, list) else [] if callback is None else [callback])
        target = self.num_timesteps + total_timesteps
        callback.init_callback(self)
        callback.on_training_start(locals(), globals())
        while self.num_timesteps < target:
            callback.on_rollout_start()
            if not callback.on_step():
                break
            self.run.iterate()
            callback.on_rollout_end()
        callback.on_training_end()
        return self


class MetaGradientTrainer:
    """The runner's trainer for the meta-gradient agents (CPU only; ``threads`` torch threads, None: leave
    torch's setting alone)."""

    def __init__(self, threads: int | None = None, device: str = "cpu") -> None:
        if device != "cpu":
            raise ValueError(f"the meta-gradient agents ({', '.join(AGENT_METHODS)}) train on the CPU; got "
                             f"device {device!r} (allowed: cpu)")
        self.threads, self.device = threads, device

    def config(self, spec: RunSpec) -> MetaGradientConfig:
        from metarl_agents.bomrl.meta_training import frames_per_iteration

        protocol = protocol_for(spec)
        per_iteration = frames_per_iteration(protocol)
        return MetaGradientConfig(spec.env_id, spec.agent, spec.seed, spec.frames // per_iteration,
                                  spec.eval_every // per_iteration, per_iteration, self.threads, protocol)

    def build(self, spec: RunSpec) -> MetaGradientModel:
        from metarl_agents.bomrl.meta_training import MetaTrainingRun
        from metarl_agents.leaderboard.runner import limit_threads

        if spec.agent not in AGENT_METHODS:
            raise ValueError(f"MetaGradientTrainer trains {', '.join(AGENT_METHODS)}, not {spec.agent!r}")
        if self.threads is not None:
            import torch  # noqa: F401 - imported first, so that its thread count is set too

            limit_threads(self.threads)
        return MetaGradientModel(MetaTrainingRun(protocol_for(spec), spec.seed))

    def save(self, model: MetaGradientModel, spec: RunSpec, path: Path, final: bool = False) -> None:
        """The whole training state also at the end (it is small: the policy, the normaliser, the generators,
        the training curve and the best prior)."""
        from metarl_agents.leaderboard.checkpoint import write_checkpoint

        write_checkpoint(path, spec.store_fields(), model.run.state())  # names the run it belongs to

    def resume(self, spec: RunSpec, checkpoint: Path) -> MetaGradientModel:
        from metarl_agents.leaderboard.checkpoint import read_checkpoint

        state = read_checkpoint(checkpoint, spec.store_fields())  # refuses another run's file before building
        model = self.build(spec)
        try:
            model.run.load_state(state)
        except (KeyError, ValueError, RuntimeError, TypeError) as exc:
            model.run.close()
            raise CheckpointError(f"checkpoint {checkpoint} does not fit run {spec.run_key} "
                                  f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from exc
        return model

    def evaluate(self, model: MetaGradientModel, spec: RunSpec, n_tasks: int | None = None) -> dict[str, Any]:
        """The meta-test: ``meta_episode_return`` the K = 1 deterministic return, ``episode_returns`` K = 0, 1,
        ...; the whole meta-test (stochastic and per-task returns too) under ``meta_test``."""
        if n_tasks is not None:
            raise ValueError(f"the meta-gradient agents' meta-test uses the protocol's test tasks; got n_tasks={n_tasks}")
        test = model.run.meta_test(seed=spec.eval_seed)
        returns = [float(value) for value in test["deterministic"]]
        return {"meta_episode_return": returns[1], "episode_returns": returns, "meta_test": test}


# -- the command line -----------------------------------------------------------------------------------


def add_iteration_options(parser: Any) -> None:
    """``metarl-bench run``'s budget options for these agents."""
    parser.add_argument("--iterations", type=int, metavar="N",
                        help=f"meta-iterations per run of {', '.join(AGENT_METHODS)} (their budget; default: the "
                             f"paper's {PAPER_ITERATIONS}; fewer is labelled REDUCED BUDGET)")
    parser.add_argument("--eval-every-iterations", type=int, metavar="E",
                        help="meta-iterations between the meta-tests of those runs (default: a tenth of the run)")


def uses_meta_gradient_agents(agents: Sequence[str]) -> bool:
    return any(agent in AGENT_METHODS for agent in agents)
