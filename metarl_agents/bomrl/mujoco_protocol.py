"""BO-MRL and MAML-TRPO on the MuJoCo Cheetah tasks with the authors' protocol, on the batched env.

One :class:`CheetahMetaLearner` holds the Gaussian MLP meta-policy (an SB3 ``ActorCriticPolicy``, 128-128
tanh, state-independent log-std initialised at -0.7, mean layer scaled by 0.1 at init) and runs

* :meth:`~CheetahMetaLearner.meta_iteration`: one meta-training step on a task batch (10 velocities
  ``v* ~ U(0, 2)`` or the directions ``[-1, +1, -1, +1]``), BO-MRL (``alg1|alg2|alg3``: implicit
  hypergradient by truncated conjugate gradient) or MAML (one differentiable policy-gradient step),
  then a TRPO step of the meta-parameters with a backtracking line search that judges each candidate
  on the importance-sampled post-adaptation return, the adaptation rerun from the candidate (and, as in
  the authors' code, not on its measured KL: ``line_search_kl``);
* :meth:`~CheetahMetaLearner.meta_test`: ``K = 0 ... rounds`` rounds of (20 trajectories -> adapt) on the
  fixed test tasks (``v = 0.1 ... 1.9`` or ``d = +-1``), recording deterministic and stochastic returns.

``task="point"`` runs the same code on ``MetaPointNav2D-v0``, the cheap rung that checks the learners;
``method="trpo"`` is plain single-task TRPO (no adaptation, one fixed task: on Cheetah-Dir forward
running), the rung that checks the shared TRPO machinery (:mod:`metarl_agents.bomrl.trpo`) alone.

Collection runs on BO-MRL's one rollout collector (:mod:`metarl_agents.bomrl.rollouts`).

All trajectories of all tasks run in one ``gymnasium.make_vec`` env (the batched MuJoCo core): every
step is one batched policy forward -- a ``torch.func.vmap`` over the per-task parameter sets -- and one
env step. Each trajectory is rolled on past its 200-step horizon for a further 200 steps with the same
policy, which gives the continuation return ``G_cont`` of the return estimate
``Q(s_t, a_t) = sum_{k=t}^{199} gamma^(k-t) r_k + gamma^(200-t) G_cont``; advantages are ``Q`` centred by
the batch mean.

The defaults follow the authors' released code where it changes what is learned: the policy sees
HalfCheetah-v4's 17 observations (joint positions without the root x, joint velocities; not the
torso position our env appends, which grows without bound as the cheetah runs), acts with the raw
Gaussian sample (MuJoCo clamps the control, the control cost sees the raw action), and normalises
observations by running statistics (clipped to +-5) that are seeded by rollouts of the initial
policy and absorb every meta-training trajectory -- pre- and post-adaptation, continuations
included. The statistics change only between meta-iterations, so they are frozen during every
adaptation and during meta-test. The authors computed in float64 (``dtype="float64"``); float32, the
default, changes one meta-step's hypergradient by about 1 % and halves the lower level's CPU time.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.policies import ActorCriticPolicy
from torch.func import functional_call, vmap

import metarl_envs  # noqa: F401  (registers the ids)
from metarl_agents.bomrl.cg import cosine
from metarl_agents.bomrl.neural import BOMRL, Batch, BOMRLConfig, Params, smooth_clip_surrogate
from metarl_agents.bomrl.rollouts import reward_to_go, roll_out
from metarl_agents.bomrl.trpo import TRPOStep, trpo_step

#: ``point`` (MAML's 2-D point navigation) is the cheap rung of the ladder that checks the learners
#: before the Cheetah runs: the same code, a task that learns in minutes.
TASK_IDS = {"vel": "MetaCheetahVel-v0", "dir": "MetaCheetahDir-v0", "point": "MetaPointNav2D-v0"}
#: The meta-learning methods: BO-MRL's three algorithms and the MAML-TRPO baseline.
METHODS = ("alg1", "alg2", "alg3", "maml")
#: Methods that learn one task without adaptation, on the same code: ``trpo`` is the ladder's single-task
#: rung (plain TRPO, see :meth:`CheetahMetaLearner.sample_tasks`).
SINGLE_TASK_METHODS = ("trpo",)
#: TRPO meta-step bounds of the authors' code: BO-MRL 0.01 (Vel) / 0.03 (Dir), MAML-TRPO 0.01 / 0.003;
#: single-task TRPO the usual 0.01.
MAX_KL = {("vel", "bomrl"): 0.01, ("dir", "bomrl"): 0.03, ("vel", "maml"): 0.01, ("dir", "maml"): 0.003,
          ("point", "bomrl"): 0.01, ("point", "maml"): 0.01, ("vel", "trpo"): 0.01, ("dir", "trpo"): 0.01,
          ("point", "trpo"): 0.01}
OBS_CLIP = 5.0
#: HalfCheetah-v4's observation (``qpos[1:]`` and ``qvel``): the first 17 of our env's 20 (which add the torso xyz).
JOINT_OBSERVATIONS = 17
OBSERVATIONS = ("joints", "full")
CHEETAH_TASKS = ("vel", "dir")
OBS_UPDATES = ("all", "pre")
DTYPES = {"float64": torch.float64, "float32": torch.float32}
#: The value each setting added after the first release had before it existed: a checkpoint whose saved
#: protocol lacks a key was made with this value (a checkpoint without one resumes when the run asks for it).
LEGACY_SETTINGS: dict[str, Any] = {"observation": "full", "clip_actions": True, "obs_warmup": 0, "obs_update": "pre",
                                   "dtype": "float32", "env_kwargs": {}, "meta_log_std": True,
                                   "line_search_kl": True}


@dataclass
class CheetahProtocol:
    """Every setting of a Cheetah meta-RL run; the defaults are the paper's (``None`` = per task/method)."""

    task: str = "vel"
    method: str = "alg1"
    n_trajectories: int = 20
    post_trajectories: int = 100
    horizon: int = 200
    continuation: int = 200
    gamma: float = 0.995
    hidden: tuple[int, ...] = (128, 128)
    log_std_init: float = -0.7
    #: Whether the meta-step updates the prior's log-std (the authors' code does). ``False`` keeps it at
    #: ``log_std_init``; adaptation still moves each task's log-std. ``None``: ``False`` for Alg2, ``True``
    #: otherwise. Alg2 holds the adapted policy to the prior by KL(adapted || prior), which charges a move of
    #: the mean (delta mu)^2 / (2 sigma_prior^2): widening the prior's std weakens that penalty, the meta-step
    #: learns to do so, and the sampled trajectories pay for the noise (see benchmarks/BOMRL.md). Alg1's
    #: KL(prior || adapted) divides by the adapted policy's variance instead, so the prior's std buys no such
    #: freedom there (on Cheetah-Vel its meta-learned std narrows).
    meta_log_std: bool | None = None
    lam: float = 0.5
    inner_steps: int = 50
    inner_lr: float = 1e-3
    max_divergence: float = 3.0
    maml_lr: float = 0.1
    #: MAML-TRPO's meta-test: every adaptation round after the first steps ``maml_lr`` times this (the
    #: authors' test scripts halve it; 1.0 repeats the training step, which overshoots from an adapted policy).
    maml_later_rounds_scale: float = 0.5
    cg_iterations: int = 10
    cg_damping: float = 1e-2
    cg_relative_damping: float = 0.1
    power_iterations: int = 5
    max_kl: float | None = None
    line_search_steps: int = 10
    accept_ratio: float = 0.1
    #: Whether the meta-step's line search also rejects a candidate whose measured KL exceeds ``max_kl``
    #: (TRPO's rule). The quadratic model that sizes the full step underestimates its KL by a few percent
    #: here, so the test halved most meta-steps (a quarter of the KL each), and BO-MRL climbed half as
    #: fast as without it (benchmarks/BOMRL.md). ``None``: as the authors' code for the meta-learners on the
    #: Cheetah tasks (no test), TRPO's rule for single-task TRPO and on the point task.
    line_search_kl: bool | None = None
    tasks_per_iteration: int | None = None
    test_rounds: int = 3
    test_trajectories: int = 20
    test_velocities: list[float] = field(default_factory=lambda: [round(0.1 * i, 1) for i in range(1, 20)])
    observation: str = "joints"
    #: ``None``: the authors' value on the Cheetah tasks (False, 100, "all"), the legacy one elsewhere.
    clip_actions: bool | None = None
    obs_warmup: int | None = None
    obs_update: str | None = None
    dtype: str = "float32"
    nthread: int = 0
    #: Extra keyword arguments of the env (e.g. ``start`` or the goal box of ``point``).
    env_kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.task not in TASK_IDS:
            raise ValueError(f"task must be one of {sorted(TASK_IDS)}, got {self.task!r}")
        if self.method not in METHODS + SINGLE_TASK_METHODS:
            raise ValueError(f"method must be one of {METHODS + SINGLE_TASK_METHODS}, got {self.method!r}")
        for name in ("n_trajectories", "post_trajectories", "horizon", "cg_iterations", "test_trajectories"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {getattr(self, name)!r}")
        if self.continuation < 0 or self.test_rounds < 0 or self.inner_steps < 0:
            raise ValueError("continuation, test_rounds and inner_steps must be >= 0")
        authors = {"clip_actions": False, "obs_warmup": 100, "obs_update": "all"}
        for name, value in authors.items():
            if getattr(self, name) is None:
                setattr(self, name, value if self.task in CHEETAH_TASKS else LEGACY_SETTINGS[name])
        for name, allowed in (("observation", OBSERVATIONS), ("obs_update", OBS_UPDATES), ("dtype", tuple(DTYPES))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.meta_log_std is None:
            self.meta_log_std = self.method != "alg2"
        if not isinstance(self.meta_log_std, bool):
            raise ValueError(f"meta_log_std must be true, false or null, got {self.meta_log_std!r}")
        if self.line_search_kl is None:
            self.line_search_kl = not (self.task in CHEETAH_TASKS and self.method in METHODS)
        if not isinstance(self.line_search_kl, bool):
            raise ValueError(f"line_search_kl must be true, false or null, got {self.line_search_kl!r}")
        if not isinstance(self.clip_actions, bool):
            raise ValueError(f"clip_actions must be true or false, got {self.clip_actions!r}")
        if not isinstance(self.obs_warmup, int) or self.obs_warmup < 0:
            raise ValueError(f"obs_warmup must be an integer >= 0, got {self.obs_warmup!r}")
        if isinstance(self.maml_later_rounds_scale, bool) or not isinstance(self.maml_later_rounds_scale, (int, float)) \
                or not 0 < self.maml_later_rounds_scale <= 1:
            raise ValueError(f"maml_later_rounds_scale must be in (0, 1], got {self.maml_later_rounds_scale!r}")
        if not 0 <= self.gamma <= 1:
            raise ValueError(f"gamma must be in [0, 1], got {self.gamma!r}")
        self.hidden = tuple(self.hidden)
        if self.max_kl is None:
            self.max_kl = MAX_KL[(self.task, self.method if self.method in ("maml", "trpo") else "bomrl")]
        if self.tasks_per_iteration is None:
            self.tasks_per_iteration = 4 if self.task == "dir" else 10
        if not isinstance(self.env_kwargs, dict) or "episode_steps" in self.env_kwargs:
            raise ValueError(f"env_kwargs must be a dict of env arguments (the episode length comes from horizon "
                             f"and continuation), got {self.env_kwargs!r}")
        self.env_kwargs = dict(self.env_kwargs)

    @property
    def env_id(self) -> str:
        return TASK_IDS[self.task]

    def make_env(self, **kwargs: Any) -> gym.Env:
        """One env of the task with the protocol's env arguments."""
        return gym.make(self.env_id, **self.all_env_kwargs(), **kwargs)

    def all_env_kwargs(self) -> dict[str, Any]:
        """The env arguments: the Cheetah-Vel velocity range, ``env_kwargs`` and the episode length."""
        kwargs: dict[str, Any] = {"velocity_range": (0.0, 2.0)} if self.task == "vel" else {}
        return {**kwargs, **self.env_kwargs, "episode_steps": self.horizon + self.continuation}

    def test_tasks(self) -> np.ndarray:
        if self.task == "point":  # a 3 x 3 grid over the goal box
            space = self.make_env().unwrapped.task_space
            xs, ys = (np.linspace(lo, hi, 3) for lo, hi in zip(space.low, space.high, strict=True))
            return np.array([[x, y] for x in xs for y in ys])
        values = self.test_velocities if self.task == "vel" else [-1.0, 1.0]
        return np.asarray(values, dtype=np.float64).reshape(-1, 1)

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    @property
    def joint_observations(self) -> bool:
        """Whether the policy sees only HalfCheetah-v4's 17 observations (a Cheetah task, ``"joints"``)."""
        return self.observation == "joints" and self.task in CHEETAH_TASKS

    def observe(self, obs: np.ndarray) -> np.ndarray:
        """The part of the env's observation the policy sees (the last axis)."""
        return obs[..., :JOINT_OBSERVATIONS] if self.joint_observations else obs


def make_policy(protocol: CheetahProtocol, seed: int) -> ActorCriticPolicy:
    """The authors' Gaussian MLP: default PyTorch init, the mean layer's weights times 0.1 and bias 0."""
    env = protocol.make_env()
    torch.manual_seed(seed)
    observation_space = env.observation_space
    if protocol.joint_observations:
        observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(JOINT_OBSERVATIONS,), dtype=np.float32)
    policy = ActorCriticPolicy(observation_space, env.action_space, lambda _: 0.0, ortho_init=False,
                               net_arch=dict(pi=list(protocol.hidden), vf=[]), activation_fn=torch.nn.Tanh,
                               log_std_init=protocol.log_std_init)
    with torch.no_grad():
        policy.action_net.weight.mul_(0.1)
        policy.action_net.bias.zero_()
    env.close()
    return policy.to(protocol.torch_dtype)


@dataclass
class Rollouts:
    """Trajectories of ``G`` task groups of ``n`` copies: training part (``t < horizon``) and returns."""

    obs: torch.Tensor  # (G, n, horizon, obs_dim), normalised
    raw_obs: np.ndarray  # (G, n, horizon, obs_dim)
    actions: torch.Tensor  # (G, n, horizon, act_dim), unclipped samples
    q_values: np.ndarray  # (G, n, horizon): discounted return-to-go incl. the continuation
    returns: np.ndarray  # (G, n): undiscounted return of the first ``horizon`` steps
    obs_moments: tuple[np.ndarray, np.ndarray, int]  # mean, variance, count of every raw obs seen (all steps)
    rewards: np.ndarray  # (G, n, horizon + continuation): every step's reward


class CheetahMetaLearner:
    """BO-MRL (Alg1/2/3) or MAML-TRPO on Cheetah-Vel/Dir; see the module docstring."""

    def __init__(self, protocol: CheetahProtocol, seed: int = 0) -> None:
        self.protocol = protocol
        self.seed = seed
        alg = int(protocol.method[-1]) if protocol.method.startswith("alg") else 1
        shared = {f.name: getattr(protocol, f.name) for f in fields(BOMRLConfig) if hasattr(protocol, f.name)}
        config = BOMRLConfig(alg=alg, meta_optimizer="trpo", normalize_observations=True, normalize_advantages=False,
                             **shared)
        self.agent = BOMRL(make_policy(protocol, seed), config, seed=seed)
        self.names = self.agent.actor_names
        self.rng = np.random.default_rng(seed)
        self.torch_rng = torch.Generator().manual_seed(seed)
        self._envs: dict[int, gym.vector.VectorEnv] = {}
        self._forward = vmap(lambda params, obs: functional_call(self.agent._actor, params, (obs,)))

    # --- data -----------------------------------------------------------------------------------
    def _env(self, n: int) -> gym.vector.VectorEnv:
        if n not in self._envs:
            p = self.protocol
            threads = {} if p.task == "point" else {"nthread": p.nthread}
            self._envs[n] = gym.make_vec(p.env_id, num_envs=n, **threads, **p.all_env_kwargs())
        return self._envs[n]

    def normalize(self, obs: np.ndarray) -> np.ndarray:
        """The policy's input for raw env observations ``obs``: the observed part, normalised and clipped."""
        rms = self.agent.obs_rms
        normalized = np.clip((self.protocol.observe(obs) - rms.mean) / np.sqrt(rms.var + 1e-8), -OBS_CLIP, OBS_CLIP)
        return normalized.astype(np.float64 if self.protocol.dtype == "float64" else np.float32)

    def warm_up_normalizer(self) -> None:
        """Seed the observation statistics with ``obs_warmup`` stochastic rollouts of the current policy
        (once, before the first meta-iteration or meta-test), as the authors' code does before training,
        so that iteration 0 does not act on raw observations."""
        p = self.protocol
        if p.obs_warmup == 0 or self.agent.obs_rms.count >= 1:
            return
        data = self.collect([self.agent.phi()], p.test_tasks()[:1], p.obs_warmup, continuation=False)
        self.agent.obs_rms.update_from_moments(*data.obs_moments)

    def collect(self, params: list[Params], tasks: np.ndarray, n: int, deterministic: bool = False,
                continuation: bool = True) -> Rollouts:
        """``n`` trajectories per task, task ``g`` acting with ``params[g]``, all in one vector env."""
        p = self.protocol
        G, horizon = len(tasks), p.horizon
        env = self._env(G * n)
        stacked = {k: torch.stack([q[k] for q in params]) for k in self.names}
        obs, _ = env.reset(seed=int(self.rng.integers(2**31)), options={"tasks": np.repeat(tasks, n, axis=0)})

        def step(action: np.ndarray) -> tuple[np.ndarray, np.ndarray, None]:
            obs, reward, *_ = env.step(action)  # every episode runs for ``steps`` steps
            return p.observe(obs), reward, None

        data = roll_out(step, env.single_action_space, p.observe(obs), self.normalize,
                        lambda o: self._forward(stacked, o.reshape(G, n, -1)),
                        steps=horizon + (p.continuation if continuation else 0), record=horizon,
                        deterministic=deterministic, generator=self.torch_rng, clip_actions=p.clip_actions)

        def per_task(array: np.ndarray) -> np.ndarray:
            return array.reshape(G, n, *array.shape[1:])

        rewards = per_task(data.rewards)
        return Rollouts(torch.from_numpy(per_task(data.obs)), per_task(data.raw_obs).astype(np.float32),
                        torch.from_numpy(per_task(data.actions)), reward_to_go(rewards, p.gamma)[:, :, :horizon],
                        rewards[:, :, :horizon].sum(-1), data.obs_moments, rewards)

    def batch(self, rollouts: Rollouts, g: int, params: Params) -> Batch:
        """Task ``g``'s trajectories, flat over (trajectory, time), advantages centred by the batch mean."""
        obs = rollouts.obs[g].reshape(-1, rollouts.obs.shape[-1])
        actions = rollouts.actions[g].reshape(-1, rollouts.actions.shape[-1])
        q = rollouts.q_values[g].reshape(-1)
        with torch.no_grad():
            log_prob = self.agent.log_prob(params, obs, actions)
        advantages = torch.as_tensor(q - q.mean(), dtype=self.protocol.torch_dtype)
        return Batch(obs, actions, advantages, log_prob, rollouts.returns[g])

    # --- adaptation -----------------------------------------------------------------------------
    def surrogate(self, params: Params, batch: Batch) -> torch.Tensor:
        """``mean(A * 2 sigmoid(2 r - 2))``, ``r = pi_params / pi_behaviour`` (the smooth clip)."""
        return smooth_clip_surrogate(self.agent.log_prob(params, batch.obs, batch.actions), batch)

    def maml_step(self, params: Params, batch: Batch, create_graph: bool = False, scale: float = 1.0) -> Params:
        """One policy-gradient step of size ``scale * maml_lr`` on the surrogate (differentiable if ``create_graph``)."""
        grads = torch.autograd.grad(self.surrogate(params, batch), [params[k] for k in self.names], create_graph=create_graph)
        lr = self.protocol.maml_lr * scale
        return {k: params[k] + lr * g for k, g in zip(self.names, grads, strict=True)}

    def adapt(self, params: Params, batch: Batch, later_round: bool = False) -> Params:
        """One adaptation round from prior ``params`` on ``batch`` (collected with ``params``); single-task
        TRPO does not adapt. ``later_round``: a meta-test round after the first (MAML-TRPO's step is then
        scaled by ``maml_later_rounds_scale``)."""
        if self.protocol.method == "trpo":
            return params
        if self.protocol.method == "maml":
            prior = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
            scale = self.protocol.maml_later_rounds_scale if later_round else 1.0
            return {k: v.detach() for k, v in self.maml_step(prior, batch, scale=scale).items()}
        return self.agent.solve_lower(params, batch)

    # --- meta-training --------------------------------------------------------------------------
    def sample_tasks(self) -> np.ndarray:
        """The meta-iteration's task batch; for single-task TRPO ``tasks_per_iteration`` copies of the
        last test task (on Cheetah-Dir direction +1: forward running)."""
        p = self.protocol
        if p.method == "trpo":
            return np.repeat(p.test_tasks()[-1:], p.tasks_per_iteration, axis=0)
        if p.task == "dir":
            return np.resize([-1.0, 1.0], p.tasks_per_iteration).reshape(-1, 1)
        if p.task == "point":
            core = self._env(1).core
            return core.tasks_from_uniforms(self.rng.random((p.tasks_per_iteration, core.task_uniforms)))
        return self.rng.uniform(0.0, 2.0, size=(p.tasks_per_iteration, 1))

    def meta_iteration(self) -> dict[str, float]:
        """One meta-training step; returns the mean pre-/post-adaptation returns and the step taken.

        ``meta_improvement`` is the accepted step's gain in the importance-sampled estimate of the
        post-adaptation return (see :meth:`adapted_return_estimate`), for both methods; for single-task
        TRPO, whose "post-adaptation" return is the pre-adaptation one (nothing adapts), the gain in
        :meth:`importance_sampled_return`. BO-MRL also
        reports ``meta_surrogate_improvement`` (the gain in the meta-loss ``S`` whose gradient is the
        hypergradient: positive by construction, so it shows nothing about learning),
        ``hypergradient_cosine`` (with the first-order direction, the mean post-adaptation policy
        gradient), ``cg_nonpositive_curvature`` (tasks whose Hessian solve stopped at non-positive
        curvature) and ``cg_eigenvalue_scale`` (the mean ``|lambda|_max`` of the lower-level Hessians).
        Every method reports ``meta_full_step_kl`` (the measured KL of the line search's first, full-size
        candidate) and ``meta_halvings`` (how often the search halved the step).
        """
        p, agent = self.protocol, self.agent
        self.warm_up_normalizer()
        tasks = self.sample_tasks()
        phi = agent.phi()
        pre = self.collect([phi] * len(tasks), tasks, p.n_trajectories)
        batches = [self.batch(pre, g, phi) for g in range(len(tasks))]
        diagnostics: dict[str, float] = {}
        bomrl = p.method.startswith("alg")
        if p.method == "trpo":  # no adaptation: the prior is the adapted policy
            post, objective, judged_before = pre, self.importance_sampled_return(batches), None
            judge = objective
        else:
            thetas = [self.adapt(phi, b) for b in batches]
            post = self.collect(thetas, tasks, p.post_trajectories)
            post_batches = [self.batch(post, g, thetas[g]) for g in range(len(tasks))]
            judge, judged_before = self.adapted_return_estimate(batches, post_batches), self._estimate_at(thetas, post_batches)
            if bomrl:
                objective, diagnostics, first_order = self._bomrl_objective(phi, thetas, batches, post_batches)
            else:
                objective = self._maml_objective(batches, post_batches)
        ph = {k: v.clone().requires_grad_(True) for k, v in phi.items()}
        gradient = list(torch.autograd.grad(objective(ph), [ph[k] for k in self.names]))
        if not p.meta_log_std:
            # The Fisher of a state-independent log-std is a block of its own, so a zero gradient there
            # gives a natural-gradient step that leaves the log-std where it is.
            gradient = [torch.zeros_like(g) if k == "policy.log_std" else g for k, g in zip(self.names, gradient, strict=True)]
        if bomrl:
            diagnostics["hypergradient_cosine"] = cosine(gradient, first_order)
            with torch.no_grad():
                before = float(objective(phi))
        states = torch.cat([b.obs for b in batches])
        step = self.trpo_step(phi, gradient, judge, states, judged_before=judged_before)
        diagnostics.update(meta_full_step_kl=step.full_step_kl, meta_halvings=step.halvings)
        if bomrl:
            with torch.no_grad():
                diagnostics["meta_surrogate_improvement"] = float(objective(agent.phi())) - before if step.kl > 0 else 0.0
        if p.obs_update == "all":
            agent.obs_rms.update_from_moments(*pre.obs_moments)
            if post is not pre:
                agent.obs_rms.update_from_moments(*post.obs_moments)
        else:
            agent.obs_rms.update(pre.raw_obs.reshape(-1, pre.raw_obs.shape[-1]).astype(np.float64))
        return {"pre_adaptation_return": float(pre.returns.mean()), "post_adaptation_return": float(post.returns.mean()),
                "meta_kl": step.kl, "meta_improvement": step.improvement, **diagnostics}

    def importance_sampled_return(self, batches: list[Batch]):
        """TRPO's surrogate ``mean_tasks mean(r A)``, ``r = pi_params / pi_behaviour``, on data of the
        behaviour policy: its gain from ``r = 1`` estimates the change of the return to first order,
        which the KL bound keeps trustworthy; its gradient at the behaviour policy is the policy gradient."""

        def estimate(params: Params) -> torch.Tensor:
            return sum(((self.agent.log_prob(params, b.obs, b.actions) - b.log_prob).exp() * b.advantages).mean()
                       for b in batches) / len(batches)

        return estimate

    def adapted_return_estimate(self, batches: list[Batch], post_batches: list[Batch]):
        """``J(phi') = mean_tasks surrogate(adapt(phi', batch), post)``: the post-adaptation return of the
        prior ``phi'``, estimated by importance sampling from the post-adaptation data (the surrogate's
        smooth clip keeps the ratios in (0, 2)), with the adaptation rerun from ``phi'`` on the same
        pre-adaptation data. MAML-TRPO's objective is the same estimate for its one-step adaptation;
        for BO-MRL it is what a meta-step must raise (the meta-loss ``S`` rises along its own gradient
        whatever happens to the return)."""

        def estimate(params: Params) -> torch.Tensor:
            with torch.enable_grad():
                adapted = [self.adapt(params, b) for b in batches]
            return self._estimate_at(adapted, post_batches)

        return estimate

    def _estimate_at(self, thetas: list[Params], post_batches: list[Batch]) -> torch.Tensor:
        with torch.no_grad():
            return sum(self.surrogate(t, b) for t, b in zip(thetas, post_batches, strict=True)) / len(thetas)

    def _bomrl_objective(self, phi: Params, thetas: list[Params], batches: list[Batch], post_batches: list[Batch]):
        """``S(phi') = -mean_tasks <grad_theta D(phi', theta)|theta', x>``, ``x = H^-1 grad_theta J(theta')``:
        its gradient at ``phi`` is the implicit hypergradient. Also returns the Hessian
        solves' diagnostics (see :meth:`meta_iteration`) and the first-order direction (the sum of the
        tasks' post-adaptation policy gradients)."""
        agent = self.agent
        gradients = [agent.policy_gradient(theta, post) for theta, post in zip(thetas, post_batches, strict=True)]
        solutions = [agent.implicit_solve(phi, theta, batch, g)
                     for theta, batch, g in zip(thetas, batches, gradients, strict=True)]
        first_order = [sum(parts, torch.zeros_like(parts[0])) for parts in zip(*gradients, strict=True)]

        def objective(params: Params) -> torch.Tensor:
            differentiable = any(v.requires_grad for v in params.values())
            with torch.enable_grad():
                total = sum(agent.meta_loss(theta, params, batch.obs, solution.x, differentiable)
                            for theta, batch, solution in zip(thetas, batches, solutions, strict=True))
            return total / len(thetas)

        diagnostics = {"cg_nonpositive_curvature": sum(s.nonpositive_curvature for s in solutions),
                       "cg_eigenvalue_scale": float(np.mean([s.eigenvalue_scale for s in solutions]))}
        return objective, diagnostics, first_order

    def _maml_objective(self, batches: list[Batch], post_batches: list[Batch]):
        """``S(phi') = mean_tasks surrogate(theta(phi'))`` on the post-adaptation data, ``theta(phi')`` the
        inner step from ``phi'``: second-order MAML when differentiated."""

        def objective(params: Params) -> torch.Tensor:
            differentiable = all(v.requires_grad for v in params.values())
            with torch.enable_grad():
                prior = params if differentiable else {k: v.detach().requires_grad_(True) for k, v in params.items()}
                values = [self.surrogate(self.maml_step(prior, b, create_graph=differentiable), post)
                          for b, post in zip(batches, post_batches, strict=True)]
            value = sum(values) / len(values)
            return value if differentiable else value.detach()

        return objective

    def trpo_step(self, phi: Params, gradient: list[torch.Tensor], objective, states: torch.Tensor,
                  judged_before: torch.Tensor | float | None = None) -> TRPOStep:
        """The shared TRPO step (:func:`metarl_agents.bomrl.trpo.trpo_step`) of the meta-parameters from
        ``phi`` along ``gradient`` (an estimate of ``objective``'s gradient), judged on ``objective``
        (``judged_before``: its value at ``phi`` if known); the accepted candidate becomes the prior."""
        p = self.protocol
        step = trpo_step(self.agent.distribution, phi, self.names, gradient, states, p.max_kl, p.cg_iterations,
                         p.cg_damping, p.line_search_steps, objective, p.accept_ratio, judged_before,
                         check_kl=p.line_search_kl)
        if step.params is not None:
            self.agent._set_phi(step.params)
        return step

    # --- meta-test ------------------------------------------------------------------------------
    def meta_test(self, tasks: np.ndarray | None = None) -> dict[str, list[float]]:
        """Returns after ``K = 0 ... test_rounds`` adaptation rounds (means over the test tasks), with
        deterministic (mean) actions and with stochastic actions; per-task values under ``per_task``."""
        p = self.protocol
        self.warm_up_normalizer()
        tasks = p.test_tasks() if tasks is None else np.asarray(tasks, dtype=np.float64).reshape(len(tasks), -1)
        params = [self.agent.phi()] * len(tasks)
        deterministic, stochastic = [], []
        for k in range(p.test_rounds + 1):
            deterministic.append(self.collect(params, tasks, p.test_trajectories, deterministic=True,
                                              continuation=False).returns.mean(1))
            data = self.collect(params, tasks, p.test_trajectories)
            stochastic.append(data.returns.mean(1))
            if k < p.test_rounds:
                params = [self.adapt(params[g], self.batch(data, g, params[g]), later_round=k > 0) for g in range(len(tasks))]
        return {"deterministic": [float(r.mean()) for r in deterministic],
                "stochastic": [float(r.mean()) for r in stochastic],
                "tasks": tasks[:, 0].tolist() if tasks.shape[1] == 1 else tasks.tolist(),
                "per_task_deterministic": [r.tolist() for r in deterministic],
                "per_task_stochastic": [r.tolist() for r in stochastic]}

    # --- state ----------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """Everything a resumed run needs (``weights_only``-safe: tensors, numbers, strings, lists, dicts)."""
        rms = self.agent.obs_rms
        return {"protocol": asdict(self.protocol), "seed": self.seed,
                "policy_state": self.agent.policy.state_dict(),
                "obs_rms": [torch.as_tensor(rms.mean), torch.as_tensor(rms.var), float(rms.count)],
                "numpy_rng": _jsonable_state(self.rng.bit_generator.state),
                "torch_rng": self.torch_rng.get_state()}

    def load_state(self, state: dict[str, Any]) -> None:
        self.agent.policy.load_state_dict(state["policy_state"])
        mean, var, count = state["obs_rms"]
        self.agent.obs_rms.mean, self.agent.obs_rms.var, self.agent.obs_rms.count = mean.numpy().copy(), var.numpy().copy(), count
        self.rng.bit_generator.state = _from_jsonable_state(state["numpy_rng"])
        self.torch_rng.set_state(state["torch_rng"])

    def close(self) -> None:
        for env in self._envs.values():
            env.close()
        self._envs.clear()


def _jsonable_state(state: dict[str, Any]) -> dict[str, Any]:
    """A numpy bit-generator state with its (> 64-bit) integers as strings, for ``weights_only`` loading."""
    return {k: (_jsonable_state(v) if isinstance(v, dict) else str(v) if isinstance(v, int) else v) for k, v in state.items()}


def _from_jsonable_state(state: dict[str, Any]) -> dict[str, Any]:
    return {k: (_from_jsonable_state(v) if isinstance(v, dict) else int(v) if isinstance(v, str) and v.isdigit() else v)
            for k, v in state.items()}
