"""BO-MRL as a wrapper around a Stable-Baselines3 actor-critic policy.

The meta-parameters ``phi`` are the *actor* parameters of an SB3 ``ActorCriticPolicy`` with a
diagonal-Gaussian action distribution (the paper: MLP 128-128 tanh). Any parameter set is evaluated
with ``torch.func.functional_call``, so the lower level, the Hessian-vector products and the
hypergradient never copy modules.

Per task (one meta-training step):

1. ``N`` trajectories with ``pi_phi``; advantages ``A`` = discounted return-to-go centred by the
   batch mean at each time step (and, by default, scaled to unit standard deviation, which fixes the
   balance between the surrogate and ``lam * D`` whatever the reward scale).
2. Lower level: ``theta <- phi``, ``inner_steps`` Adam steps on
   ``L(theta, phi) = -mean(A * 2 sigmoid(2 r - 2)) / lam + D(phi, theta)``, ``r = pi_theta / pi_phi``
   (behaviour probabilities fixed), stopping before ``D`` exceeds ``max_divergence``.
3. ``5N`` trajectories with ``pi_theta'`` give the outer policy gradient ``g = grad_theta J(theta')``.
4. Implicit hypergradient: ``x ~ (H + delta I)^-1 g`` by truncated conjugate gradient with
   Hessian-vector products of ``L`` at ``theta'`` (``H`` is indefinite there: the solve stops at
   non-positive curvature, and ``delta`` scales with ``|lambda|_max(H)``); then ``grad_phi J = -grad_phi <grad_theta D(phi, theta)|theta', x>``
   (``theta'`` and ``x`` fixed; the surrogate term of ``L`` does not depend on ``phi``).

Divergences: ``alg=1`` ``KL(pi_phi || pi_theta)``, ``alg=2`` ``KL(pi_theta || pi_phi)`` (closed-form
Gaussian KL averaged over the visited states), ``alg=3`` ``||theta - phi||^2``.

Collection (:mod:`metarl_agents.bomrl.rollouts`), the TRPO meta-step (:mod:`metarl_agents.bomrl.trpo`)
and conjugate gradient (:mod:`metarl_agents.bomrl.cg`) are the layers this class shares with the
Cheetah protocol's batched learner.

Observations are normalised by running statistics that are updated only on meta-training's
pre-adaptation data and are frozen during every adaptation; :meth:`BOMRL.adapt` folds them into the
first layer of the returned policy, so SB3's ``predict`` on raw observations is exact.
"""

from __future__ import annotations

import copy
import importlib
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.distributions import DiagGaussianDistribution
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.preprocessing import is_image_space
from stable_baselines3.common.running_mean_std import RunningMeanStd
from torch import nn
from torch.func import functional_call

from metarl_agents.bomrl import checkpoint
from metarl_agents.bomrl.cg import CGSolution, conjugate_gradient, cosine, dot
from metarl_agents.bomrl.rollouts import EnvList, reward_to_go, roll_out
from metarl_agents.bomrl.trpo import Params, gaussian_kl, trpo_step

#: The name the Gaussian KL had when it lived here, for code written against it.
_gaussian_kl = gaussian_kl


@dataclass
class BOMRLConfig:
    alg: int = 1
    lam: float = 0.5
    n_trajectories: int = 20
    post_trajectories: int = 100
    gamma: float = 0.995
    inner_steps: int = 50
    inner_lr: float = 1e-3
    max_divergence: float = 3.0
    cg_iterations: int = 10
    cg_damping: float = 1e-2
    #: Damping added in proportion to the lower-level Hessian's largest eigenvalue magnitude.
    cg_relative_damping: float = 0.1
    #: Power iterations that estimate that magnitude (only used when ``cg_relative_damping > 0``).
    power_iterations: int = 5
    meta_optimizer: str = "adam"
    meta_lr: float = 1e-3
    max_kl: float = 0.01
    normalize_observations: bool = True
    normalize_advantages: bool = True

    def __post_init__(self) -> None:
        if self.alg not in (1, 2, 3):
            raise ValueError(f"alg must be 1, 2 or 3, got {self.alg!r}")
        for name in ("lam", "inner_lr", "meta_lr", "max_divergence", "max_kl"):
            if not 0 < getattr(self, name) < float("inf"):
                raise ValueError(f"{name} must be a finite number > 0, got {getattr(self, name)!r}")
        for name in ("n_trajectories", "post_trajectories", "cg_iterations"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if self.meta_optimizer not in ("adam", "trpo"):
            raise ValueError(f"meta_optimizer must be 'adam' or 'trpo', got {self.meta_optimizer!r}")
        if self.inner_steps < 0 or self.cg_damping < 0 or not 0 <= self.gamma <= 1:
            raise ValueError("inner_steps and cg_damping must be >= 0 and gamma in [0, 1]")
        if not 0 <= self.cg_relative_damping < float("inf") or self.power_iterations < 0:
            raise ValueError(f"cg_relative_damping must be a finite number >= 0 and power_iterations >= 0, got "
                             f"{self.cg_relative_damping!r} and {self.power_iterations!r}")


@dataclass
class Batch:
    """Trajectories of one task: flat over (trajectory, time); ``obs`` already normalised."""

    obs: torch.Tensor
    actions: torch.Tensor
    advantages: torch.Tensor
    log_prob: torch.Tensor  # under the behaviour policy, fixed
    episode_returns: np.ndarray


def smooth_clip_surrogate(log_prob: torch.Tensor, batch: Batch) -> torch.Tensor:
    """``mean(A * 2 sigmoid(2 r - 2))``, ``r`` the ratio of ``exp(log_prob)`` to the behaviour policy's
    probability: the paper's smooth clip, which keeps each term's weight in (0, 2) and equals the
    plain importance-sampled surrogate to first order at ``r = 1``."""
    ratio = (log_prob - batch.log_prob).exp()
    return (batch.advantages * 2 * torch.sigmoid(2 * ratio - 2)).mean()


class _Actor(nn.Module):
    """``obs -> (mean, log_std)`` of an SB3 policy, so ``functional_call`` can swap its parameters."""

    def __init__(self, policy: ActorCriticPolicy) -> None:
        super().__init__()
        self.policy = policy

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.policy
        extractor = p.features_extractor if p.share_features_extractor else p.pi_features_extractor
        if isinstance(p.observation_space, spaces.Box) and not is_image_space(p.observation_space):
            # SB3's preprocessing of such a Box is a cast to float32, which would undo a float64 policy.
            features = extractor(obs.to(p.log_std.dtype))
        else:
            features = p.extract_features(obs, extractor)
        mean = p.action_net(p.mlp_extractor.forward_actor(features))
        return mean, p.log_std.expand_as(mean)


class BOMRL:
    """Bilevel meta-RL around an SB3 ``ActorCriticPolicy`` (or a model with ``.policy``, e.g. PPO)."""

    def __init__(self, policy_or_model, config: BOMRLConfig | None = None, seed: int = 0, **overrides) -> None:
        policy = getattr(policy_or_model, "policy", policy_or_model)
        if not isinstance(policy, ActorCriticPolicy) or not isinstance(policy.action_dist, DiagGaussianDistribution):
            raise ValueError("BOMRL needs an SB3 ActorCriticPolicy with a diagonal-Gaussian action "
                             f"distribution (Box actions, use_sde=False), got {type(policy).__name__}")
        if config is not None and overrides:
            raise ValueError("pass either config or keyword overrides, not both")
        self.policy = policy
        self.config = config or BOMRLConfig(**overrides)
        self._actor = _Actor(policy)
        actor_prefixes = ("policy.mlp_extractor.policy_net", "policy.action_net", "policy.log_std",
                          "policy.pi_features_extractor")
        if policy.share_features_extractor:
            actor_prefixes += ("policy.features_extractor",)
        self.actor_names = [n for n, _ in self._actor.named_parameters() if n.startswith(actor_prefixes)]
        obs_dim = int(np.prod(policy.observation_space.shape))
        self.obs_rms = RunningMeanStd(shape=(obs_dim,))
        self.meta_optimizer = torch.optim.Adam(self._phi_parameters(), lr=self.config.meta_lr)
        self.rng = np.random.default_rng(seed)
        self.history: list[dict[str, float]] = []

    # --- parameters and distributions --------------------------------------------------------
    def _phi_parameters(self) -> list[nn.Parameter]:
        named = dict(self._actor.named_parameters())
        return [named[n] for n in self.actor_names]

    def phi(self) -> Params:
        """A detached copy of the meta-parameters (the actor's), by name: safe to keep across steps."""
        return {n: p.detach().clone() for n, p in zip(self.actor_names, self._phi_parameters(), strict=True)}

    def distribution(self, params: Params, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mean, log_std)`` of the Gaussian policy with parameters ``params`` on normalised ``obs``;
        differentiable in ``params`` (the module's own parameters are not touched)."""
        return functional_call(self._actor, params, (obs,))

    def log_prob(self, params: Params, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """``log pi_params(actions | obs)``, summed over action dimensions (the unclipped samples)."""
        mean, log_std = self.distribution(params, obs)
        return torch.distributions.Normal(mean, log_std.exp()).log_prob(actions).sum(-1)

    def normalize(self, obs: np.ndarray) -> np.ndarray:
        """Raw observations scaled by the running statistics (unchanged when normalisation is off)."""
        if not self.config.normalize_observations:
            return obs.astype(np.float32)
        return ((obs - self.obs_rms.mean) / np.sqrt(self.obs_rms.var + 1e-8)).astype(np.float32)

    # --- data ---------------------------------------------------------------------------------
    def collect(self, envs: Sequence[gym.Env], params: Params, n_trajectories: int, task=None,
                deterministic: bool = False) -> tuple[Batch, np.ndarray]:
        """``n_trajectories`` episodes of ``task`` with the policy ``params`` (``envs`` in lockstep, as
        many rounds as needed). Returns the batch and the raw observations it saw (for the normaliser)."""
        options = None if task is None else {"task": task}
        rounds = []
        while sum(len(r.rewards) for r in rounds) < n_trajectories:
            lockstep = EnvList(envs[: n_trajectories - sum(len(r.rewards) for r in rounds)])
            obs = lockstep.reset([int(self.rng.integers(2**31)) for _ in lockstep.envs], options)
            rounds.append(roll_out(lockstep.step, lockstep.action_space, obs, self.normalize,
                                   lambda o: self.distribution(params, o), deterministic=deterministic))
        # Pad to the longest episode; the mask keeps padding out of the batch.
        T = max(r.rewards.shape[1] for r in rounds)
        rewards = np.concatenate([np.pad(r.rewards, ((0, 0), (0, T - r.rewards.shape[1]))) for r in rounds])
        mask = np.concatenate([np.pad(r.running, ((0, 0), (0, T - r.running.shape[1]))) for r in rounds])
        to_go = reward_to_go(rewards, self.config.gamma)
        # Centre per time step (the batch mean over the trajectories still running then): one mean
        # over all steps would penalise early actions just for having more reward still to come.
        counts = mask.sum(0)
        adv = np.where(mask, to_go - (to_go * mask).sum(0) / counts, 0.0)[mask]
        if self.config.normalize_advantages:
            adv = adv / (adv.std() + 1e-8)
        obs_t = torch.as_tensor(np.concatenate([r.obs[r.running] for r in rounds]))
        act_t = torch.as_tensor(np.concatenate([r.actions[r.running] for r in rounds]), dtype=torch.float32)
        with torch.no_grad():
            logp = self.log_prob(params, obs_t, act_t)
        returns = np.array([row[running].sum() for row, running in zip(rewards, mask, strict=True)])
        batch = Batch(obs_t, act_t, torch.as_tensor(adv, dtype=torch.float32), logp, returns)
        return batch, np.concatenate([r.raw_obs[r.running] for r in rounds])

    # --- lower level --------------------------------------------------------------------------
    def divergence(self, theta: Params, phi: Params, obs: torch.Tensor,
                   theta_dist: tuple[torch.Tensor, torch.Tensor] | None = None,
                   phi_dist: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """``D(phi, theta)`` on ``obs``; pass either policy's ``(mean, log_std)`` there if already computed."""
        if self.config.alg == 3:
            return sum(((theta[n] - phi[n]) ** 2).sum() for n in self.actor_names)
        m_t, s_t = theta_dist if theta_dist is not None else self.distribution(theta, obs)
        m_p, s_p = phi_dist if phi_dist is not None else self.distribution(phi, obs)
        kl = gaussian_kl(m_p, s_p, m_t, s_t) if self.config.alg == 1 else gaussian_kl(m_t, s_t, m_p, s_p)
        return kl.mean()

    def _lower_terms(self, theta: Params, phi: Params, batch: Batch,
                     phi_dist: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The lower-level loss and its divergence term from one forward pass of ``theta``."""
        mean, log_std = self.distribution(theta, batch.obs)
        log_prob = torch.distributions.Normal(mean, log_std.exp()).log_prob(batch.actions).sum(-1)
        surrogate = smooth_clip_surrogate(log_prob, batch)
        divergence = self.divergence(theta, phi, batch.obs, (mean, log_std), phi_dist)
        return -surrogate / self.config.lam + divergence, divergence

    def lower_loss(self, theta: Params, phi: Params, batch: Batch) -> torch.Tensor:
        """The lower-level objective ``-surrogate(theta) / lam + D(phi, theta)`` on ``batch``, which
        :meth:`solve_lower` minimises and whose Hessian the hypergradient inverts."""
        return self._lower_terms(theta, phi, batch)[0]

    def solve_lower(self, phi: Params, batch: Batch) -> Params:
        """``inner_steps`` Adam steps from ``phi``; stops before the divergence leaves the trust region.

        Each step's forward pass also checks the previous step's divergence, so a step costs one
        forward and one backward of ``theta`` (``phi``'s distribution is computed once).
        """
        theta = {n: t.clone().requires_grad_(True) for n, t in phi.items()}
        optimiser = torch.optim.Adam(theta.values(), lr=self.config.inner_lr)
        with torch.no_grad():
            phi_dist = None if self.config.alg == 3 else self.distribution(phi, batch.obs)
        previous = None
        for step in range(self.config.inner_steps + 1):
            loss, divergence = self._lower_terms(theta, phi, batch, phi_dist)
            if previous is not None and divergence.item() > self.config.max_divergence:
                theta = previous
                break
            if step == self.config.inner_steps:
                break
            previous = {n: t.detach().clone() for n, t in theta.items()}
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        return {n: t.detach() for n, t in theta.items()}

    # --- upper level --------------------------------------------------------------------------
    def policy_gradient(self, theta: Params, batch: Batch) -> list[torch.Tensor]:
        """REINFORCE estimate of ``grad_theta J`` (centred return-to-go) at ``theta``."""
        params = {n: t.detach().clone().requires_grad_(True) for n, t in theta.items()}
        objective = (self.log_prob(params, batch.obs, batch.actions) * batch.advantages).mean()
        return list(torch.autograd.grad(objective, [params[n] for n in self.actor_names]))

    def implicit_solve(self, phi: Params, theta: Params, batch: Batch, g: list[torch.Tensor]) -> CGSolution:
        """``x ~ H^-1 g`` with ``H`` the lower-level Hessian at ``theta``, by truncated, damped CG."""
        names = self.actor_names
        th = {n: theta[n].detach().clone().requires_grad_(True) for n in names}
        ph = {n: phi[n].detach() for n in names}
        grad_L = torch.autograd.grad(self.lower_loss(th, ph, batch), [th[n] for n in names], create_graph=True)

        def hvp(v: list[torch.Tensor]) -> list[torch.Tensor]:
            return list(torch.autograd.grad(grad_L, [th[n] for n in names], v, retain_graph=True))

        c = self.config
        solution = conjugate_gradient(hvp, [t.detach() for t in g], c.cg_iterations, c.cg_damping,
                                      c.cg_relative_damping, c.power_iterations)
        solution.x = [t.detach() for t in solution.x]
        return solution

    def hypergradient(self, phi: Params, theta: Params, batch: Batch, g: list[torch.Tensor]) -> list[torch.Tensor]:
        """``grad_phi J(theta'(phi))`` by implicit differentiation, CG for the Hessian solve."""
        return self.cross_term(theta, phi, batch, self.implicit_solve(phi, theta, batch, g).x)

    def meta_loss(self, theta: Params, phi: Params, obs: torch.Tensor, x: list[torch.Tensor],
                  create_graph: bool = True) -> torch.Tensor:
        """``-<grad_theta D(phi, theta)|theta', x>`` on ``obs``, ``theta'`` and ``x`` fixed: the task's
        meta-objective, whose gradient in ``phi`` (kept in the graph if ``create_graph``) is its
        hypergradient (the surrogate term of the lower level does not depend on ``phi``)."""
        th = {n: theta[n].detach().clone().requires_grad_(True) for n in self.actor_names}
        grad_D = torch.autograd.grad(self.divergence(th, phi, obs), [th[n] for n in self.actor_names],
                                     create_graph=create_graph)
        return -dot(grad_D, x)

    def cross_term(self, theta: Params, phi: Params, batch: Batch, x: list[torch.Tensor]) -> list[torch.Tensor]:
        """``grad_phi`` of :meth:`meta_loss`, ``-grad_phi <grad_theta D(phi, theta)|theta', x>`` with ``x`` the
        Hessian solve: the mixed second-derivative term of the implicit hypergradient, one task's meta-gradient."""
        names = self.actor_names
        ph = {n: phi[n].detach().clone().requires_grad_(True) for n in names}
        grads = torch.autograd.grad(self.meta_loss(theta, ph, batch.obs, x), [ph[n] for n in names], allow_unused=True)
        return [torch.zeros_like(ph[n]) if g is None else g for n, g in zip(names, grads, strict=True)]

    def meta_step(self, envs: Sequence[gym.Env], tasks: Sequence) -> dict[str, float]:
        """One meta-iteration over ``tasks``.

        Returns the pre/post-adaptation mean episode returns, the step's mean ``KL(pi_phi_old || pi_phi)``
        on the pre-adaptation states, the cosine between the hypergradient and
        the first-order direction (the mean post-adaptation policy gradient; 1 would mean the Hessian
        solve changed nothing but the length) and how many tasks' CG solves met non-positive curvature.
        """
        phi = self.phi()
        total, first_order = [torch.zeros_like(t) for t in phi.values()], [torch.zeros_like(t) for t in phi.values()]
        pre, post, states, nonpositive = [], [], [], 0
        for task in tasks:
            batch, raw = self.collect(envs, phi, self.config.n_trajectories, task)
            states.append(batch.obs)
            theta = self.solve_lower(phi, batch)
            post_batch, _ = self.collect(envs, theta, self.config.post_trajectories, task)
            g = self.policy_gradient(theta, post_batch)
            solution = self.implicit_solve(phi, theta, batch, g)
            nonpositive += solution.nonpositive_curvature
            total = [a + h for a, h in zip(total, self.cross_term(theta, phi, batch, solution.x), strict=True)]
            first_order = [a + gi for a, gi in zip(first_order, g, strict=True)]
            pre.append(batch.episode_returns.mean())
            post.append(post_batch.episode_returns.mean())
            if self.config.normalize_observations:
                self.obs_rms.update(raw)
        direction = [h / len(tasks) for h in total]
        states = torch.cat(states)
        if self.config.meta_optimizer == "trpo":
            c = self.config
            step = trpo_step(self.distribution, phi, self.actor_names, direction, states, c.max_kl, c.cg_iterations,
                             c.cg_damping)
            if step.params is not None:
                self._set_phi(step.params)
        else:
            self.meta_optimizer.zero_grad()
            for p, h in zip(self._phi_parameters(), direction, strict=True):
                p.grad = -h  # ascent on J
            self.meta_optimizer.step()
        with torch.no_grad():
            meta_kl = float(gaussian_kl(*self.distribution(phi, states), *self.distribution(self.phi(), states)).mean())
        return {"pre_adaptation_return": float(np.mean(pre)), "post_adaptation_return": float(np.mean(post)),
                "meta_kl": meta_kl, "hypergradient_cosine": cosine(total, first_order),
                "cg_nonpositive_curvature": nonpositive}

    def _set_phi(self, params: Params) -> None:
        """Make ``params`` the meta-parameters."""
        with torch.no_grad():
            for p, n in zip(self._phi_parameters(), self.actor_names, strict=True):
                p.copy_(params[n])

    def meta_train(self, env_id: str, iterations: int, tasks_per_iteration: int = 10,
                   env_kwargs: dict | None = None, seed: int = 0, callback=None) -> list[dict[str, float]]:
        """Meta-train on tasks drawn from ``env_id``'s task generator; ``history`` per iteration.

        ``callback(agent, record)`` runs after every iteration. Without one, and when stdout is not a
        terminal (a log file, a batch job), one line per iteration reports progress: iteration, returns,
        the meta-step's KL, its time and the estimated time left.
        """
        envs = [gym.make(env_id, **(env_kwargs or {})) for _ in range(self.config.n_trajectories)]
        envs[0].reset(seed=seed)
        report = callback is None and not sys.stdout.isatty()
        start = time.monotonic()
        for it in range(iterations):
            tasks = envs[0].unwrapped.sample_tasks(tasks_per_iteration)
            t0 = time.monotonic()
            record = {"iteration": it, **self.meta_step(envs, tasks), "seconds": time.monotonic() - t0}
            self.history.append(record)
            if callback is not None:
                callback(self, record)
            elif report:
                left = (time.monotonic() - start) / (it + 1) * (iterations - it - 1)
                print(f"BO-MRL {it + 1}/{iterations}: pre {record['pre_adaptation_return']:.2f} "
                      f"post {record['post_adaptation_return']:.2f} meta-KL {record['meta_kl']:.4f} "
                      f"{record['seconds']:.1f}s ETA {_clock(left)}", flush=True)
        for env in envs:
            env.close()
        return self.history

    # --- meta-test ----------------------------------------------------------------------------
    def adapted_policy(self, params: Params) -> ActorCriticPolicy:
        """A plain SB3 policy acting like ``params`` on *raw* observations (normaliser folded in)."""
        policy = copy.deepcopy(self.policy)
        actor = _Actor(policy)
        with torch.no_grad():
            named = dict(actor.named_parameters())
            for n in self.actor_names:
                named[n].copy_(params[n])
            if self.config.normalize_observations:
                first = policy.mlp_extractor.policy_net[0]
                if not isinstance(first, nn.Linear) or policy.features_dim != first.in_features:
                    raise ValueError("observation normalisation can only be folded into a first Linear layer "
                                     "of an MLP policy; use normalize_observations=False")
                std = torch.as_tensor(np.sqrt(self.obs_rms.var + 1e-8), dtype=first.weight.dtype)
                mean = torch.as_tensor(self.obs_rms.mean, dtype=first.weight.dtype)
                first.weight.div_(std)
                first.bias.sub_(first.weight @ mean)
        return policy

    def adapt(self, env: str | gym.Env, rounds: int = 3, task=None, n_trajectories: int | None = None,
              eval_episodes: int = 2, env_kwargs: dict | None = None) -> tuple[ActorCriticPolicy, list[float]]:
        """K rounds of (collect with the current policy -> lower level with it as prior) on one task.

        ``env`` is an id (``n_trajectories`` copies run in lockstep) or one env (episodes run one
        after another). Returns the adapted SB3 policy and the deterministic return after 0..rounds
        rounds (mean of ``eval_episodes``). The normaliser stays frozen.
        """
        if rounds < 0:
            raise ValueError(f"rounds must be >= 0, got {rounds!r}")
        n = n_trajectories or self.config.n_trajectories
        envs = [gym.make(env, **(env_kwargs or {})) for _ in range(n)] if isinstance(env, str) else [env]
        if task is None:
            envs[0].reset(seed=int(self.rng.integers(2**31)))
            task = envs[0].unwrapped.sample_tasks(1)[0]
        params = self.phi()
        returns = []
        for k in range(rounds + 1):
            evaluation, _ = self.collect(envs[:eval_episodes], params, eval_episodes, task, deterministic=True)
            returns.append(float(evaluation.episode_returns.mean()))
            if k < rounds:
                batch, _ = self.collect(envs, params, n, task)
                params = self.solve_lower(params, batch)
        return self.adapted_policy(params), returns

    # --- persistence --------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write the agent to a checksummed file that :meth:`load` reads without unpickling code."""
        constructor = {k: v for k, v in self.policy._get_constructor_parameters().items() if k != "lr_schedule"}
        checkpoint.save({
            "policy_class": _class_name(type(self.policy)),
            "policy_data": _encode(constructor),
            "policy_state": self.policy.state_dict(),
            "config": asdict(self.config),
            "obs_rms": [torch.as_tensor(self.obs_rms.mean), torch.as_tensor(self.obs_rms.var), float(self.obs_rms.count)],
            "history": self.history,
        }, path)

    @classmethod
    def load(cls, path: str | Path) -> BOMRL:
        """Read a file written by :meth:`save` (``weights_only`` unpickling, checksum verified)."""
        data = checkpoint.load(path)
        policy_class = _import_class(data["policy_class"])
        policy = policy_class(**_decode(data["policy_data"]), lr_schedule=lambda _: 0.0)
        policy.load_state_dict(data["policy_state"])
        agent = cls(policy, BOMRLConfig(**data["config"]))
        mean, var, count = data["obs_rms"]
        agent.obs_rms.mean, agent.obs_rms.var, agent.obs_rms.count = mean.numpy(), var.numpy(), count
        agent.history = data["history"]
        return agent


# The classes a saved policy may name: exact ``module:qualname`` strings (as ``_class_name`` writes
# them), so that no other module is ever imported on load; plus, from the project's own packages,
# policy and feature-extractor classes (checked after import, by subclass).
_KNOWN_CLASSES = frozenset(
    [f"stable_baselines3.common.policies:{c}" for c in ("ActorCriticPolicy", "ActorCriticCnnPolicy",
                                                         "MultiInputActorCriticPolicy")]
    + [f"stable_baselines3.common.torch_layers:{c}" for c in ("FlattenExtractor", "NatureCNN", "CombinedExtractor")]
    + [f"torch.nn.modules.activation:{c}" for c in ("Tanh", "ReLU", "ELU", "LeakyReLU", "GELU", "SiLU", "Sigmoid",
                                                      "Softplus", "Mish", "SELU", "Hardtanh")]
    + ["torch.nn.modules.linear:Identity"]
    + [f"torch.optim.{m}:{c}" for m, c in (("adam", "Adam"), ("adamw", "AdamW"), ("sgd", "SGD"),
                                           ("rmsprop", "RMSprop"))]
)
_PROJECT_MODULES = ("metarl_agents.", "metarl_envs.")


def _clock(seconds: float) -> str:
    """``h:mm:ss``."""
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"


def _class_name(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _import_class(name: str) -> type:
    """The class ``module:Qualname`` names, if it is one a saved policy may use.

    Only the exact names in ``_KNOWN_CLASSES`` resolve, and project classes that are SB3 policies or
    feature extractors: a name such as ``torch.utils.cpp_extension:subprocess.Popen`` (an attribute
    path that walks into another module) is refused before anything is imported.
    """
    from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

    module, _, qualname = name.partition(":") if isinstance(name, str) else ("", "", "")
    project = module.startswith(_PROJECT_MODULES) and qualname.isidentifier()
    if name not in _KNOWN_CLASSES and not project:
        raise ValueError(f"refusing to load class {name!r}: a saved policy may only name SB3's actor-critic "
                         "policies and feature extractors, torch activations and optimisers, or a policy or "
                         "feature extractor of metarl_agents / metarl_envs")
    try:
        obj = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"refusing to load class {name!r}: not found ({err})") from err
    if not isinstance(obj, type) or _class_name(obj) != name:
        raise ValueError(f"refusing to load class {name!r}: it does not name a class defined there")
    if project and not issubclass(obj, (ActorCriticPolicy, BaseFeaturesExtractor)):
        raise ValueError(f"refusing to load class {name!r}: from the project only policies and feature "
                         "extractors may be named")
    return obj


def _encode(value):
    """SB3 constructor arguments as tensors, strings, numbers, lists and dicts (``weights_only``-safe)."""
    if isinstance(value, spaces.Box):
        return {"__box__": [torch.as_tensor(value.low), torch.as_tensor(value.high), str(value.dtype)]}
    if isinstance(value, type):
        return {"__class__": _class_name(value)}
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot save a policy constructor argument of type {type(value).__name__}: {value!r}")


def _decode(value):
    if isinstance(value, dict) and "__box__" in value:
        low, high, dtype = value["__box__"]
        return spaces.Box(low.numpy(), high.numpy(), dtype=np.dtype(dtype))
    if isinstance(value, dict) and "__class__" in value:
        return _import_class(value["__class__"])
    if isinstance(value, dict):
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value
