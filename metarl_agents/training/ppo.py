"""MetaPPO: PPO for memory policies with backpropagation through whole rollout chunks.

An SB3 ``OnPolicyAlgorithm`` (``learn`` with callbacks and a progress bar, ``save``/``load``, the
SB3 logger, ``predict``) implementing the SplAgger paper's PPO:

* Minibatches are sets of envs, each with its full ``n_steps`` sequence; the policy's
  ``evaluate_sequence`` re-runs the memory with gradient from the stored state at the chunk's
  start, so nothing is truncated (sb3-contrib's ``RecurrentPPO`` cuts sequences at minibatch
  edges and steps its LSTM in Python wherever a sequence holds a reset). The sequences are
  re-laid as their trial segments side by side: exact, since no gradient crosses a memory reset,
  and the GRU then takes as many sequential steps as the longest segment, not ``n_steps``
  (only an auxiliary loss that averages over steps, PEARL's 1e-6-weighted KL, also sees padding).
* The memory state carries over between chunks and resets only at trial starts.
* Rewards are divided by the running std of the discounted return (no mean subtraction, clip
  ±10); advantages are normalised over the chunk; the value loss is a Huber loss with the value
  clipped at the PPO clip range; memory and head gradients are clipped separately.
* The head's observation statistics are updated once per chunk, after its update (the rollout
  and the update of a chunk see the same statistics; RecurrentPPO updates them every step).
* Bootstrapping stops only at trial ends; a trial cut by a time limit bootstraps from the value
  of its last observation. PEARL's KL term enters through the policy's ``aux_loss``.

That is the ``protocol="metarl"`` (the default). ``protocol="paper"`` trains as the SplAgger reference
code did wherever that changes results (benchmarks/PROTOCOL.md gives the reasons):

* chunk restart: every memory but a variational one starts each rollout chunk from its prior;
* value weight: the value loss is ``vf_coef * 0.5 * max(Huber)`` (effective 0.25 with ``vf_coef`` 0.5);
* critic init: the hypernetwork's critic output layer is ``kaiming_uniform_(a=0)`` with a ``U(-1, 1)`` bias;
* minibatches: a minibatch is a random ``1 / n_minibatches`` of all transitions, every sequence re-encoded
  for each;
* reward scale: every return accumulator is zeroed when any trial ends, before the statistics update;
* wsoftmax width: SplAgger-wsoftmax's GRU is 512 wide;
* start latent: a chunk's first latent is the memory's prior (zero embedding, state not advanced); a trial
  starting inside a chunk begins from the reset memory encoding the ended trial's final transition;
* memory Adam epsilon 1e-8, and the observation statistics are updated before the update;
* mean latent: a variational memory's update uses its posterior mean (rollouts sample);
* time limit: a time-limit step's advantage is zero (no bootstrap from the last observation);
* advantage epsilon: advantages are normalised with ``std + 1e-5``.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Iterator
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch as th
import torch.nn.functional as F
from gymnasium import spaces
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import HumanOutputFormat, Logger
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import MaybeCallback, Schedule
from stable_baselines3.common.utils import FloatSchedule, LinearSchedule, explained_variance
from stable_baselines3.common.vec_env import VecEnv

from metarl_agents.policies import POLICY_REGISTRY
from metarl_agents.training.config import OVERRIDABLE, RunConfig, check_settings
from metarl_agents.training.divergence import (
    StallMonitor,
    TrainingStalledWarning,  # noqa: F401  (public beside TrainingDivergedError)
    first_nonfinite_module,
)
from metarl_agents.training.errors import TrainingDivergedError
from metarl_agents.training.memory_policy import check_memory_policy
from metarl_agents.training.rollout import ReturnNormalizer, SequenceRolloutBuffer, trial_segments
from metarl_agents.training.vec_env import make_vec_env

SelfMetaPPO = TypeVar("SelfMetaPPO", bound="MetaPPO")
#: The per-transition quantities a minibatch's loss compares against.
_TARGETS = ("advantages", "old_values", "returns", "old_log_probs")

#: Paper-protocol policy settings (the caller's policy_kwargs win).
PAPER_POLICY_KWARGS = {"start_latent": "prior", "critic_init": "reference", "memory_optimizer_kwargs": {"eps": 1e-8}}
#: Agents whose reference memory is wider than our default under the paper protocol.
PAPER_ENCODER_HIDDEN = {"wsoftmax": 512}


def paper_policy_kwargs(policy_class: type, policy_kwargs: dict[str, Any]) -> dict[str, Any]:
    """``policy_kwargs`` with the paper protocol's policy settings added where the caller set none."""
    preset = {**getattr(policy_class, "preset", {}), **policy_kwargs}
    extra = {key: dict(value) if isinstance(value, dict) else value for key, value in PAPER_POLICY_KWARGS.items()}
    width = PAPER_ENCODER_HIDDEN.get(preset.get("aggregator", "max"))
    if width is not None and preset.get("encoder", "gru") == "gru":
        extra["encoder_hidden"] = width
    return {**extra, **policy_kwargs}


class MetaPPO(OnPolicyAlgorithm):
    """PPO for memory policies (see the module docstring).

    :param policy: a policy class that implements
        :class:`~metarl_agents.training.memory_policy.MemoryPolicy` (the classes of
        :mod:`metarl_agents.policies`) or its name in ``POLICY_REGISTRY`` (``"SplAgger"``, ``"RNN"``, ...)
    :param env: an SB3 VecEnv of transition observations, as SB3 algorithms take
        (:func:`metarl_agents.make_vec_env`; :meth:`from_preset` builds one from an env id)
    :param n_steps: steps per env per update; the memory is backpropagated through all of them
    :param n_minibatches: minibatches per epoch, each a set of ``n_envs / n_minibatches`` whole env
        sequences
    :param clip_range: PPO clip of the probability ratio, also the value clip
    :param normalize_reward: divide rewards by the running std of the discounted return
    :param reward_clip: clip of the scaled rewards
    :param clip_actions: Box actions only: clip the sampled action to the action space before stepping
        the env (True, as SB3 does), or step the raw Gaussian sample (False, as the SplAgger reference
        did on Cheetah; the env must accept it, e.g. MuJoCo clamps the control itself). The buffer
        keeps the raw sample either way, so log-probabilities are those of the sampled action.
    :param protocol: ``"metarl"`` (this trainer's own training, the default) or ``"paper"`` (the SplAgger
        reference's, see the module docstring); the paper presets choose ``"paper"``
    Other parameters as SB3's PPO.
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = POLICY_REGISTRY  # type: ignore[assignment]

    def __init__(
        self, policy: str | type[BasePolicy], env: VecEnv | None, learning_rate: float | Schedule = 1e-3,
        n_steps: int = 700, n_epochs: int = 2, n_minibatches: int = 4, gamma: float = 0.95, gae_lambda: float = 0.95,
        clip_range: float | Schedule = 0.05, normalize_advantage: bool = True, ent_coef: float = 0.1,
        vf_coef: float = 0.5, max_grad_norm: float = 0.5, normalize_reward: bool = True, reward_clip: float = 10.0,
        clip_actions: bool = True, protocol: str = "metarl", stats_window_size: int = 100,
        tensorboard_log: str | None = None, policy_kwargs: dict[str, Any] | None = None, verbose: int = 0,
        seed: int | None = None, device: th.device | str = "auto", _init_setup_model: bool = True,
    ) -> None:
        # The ranges of the run configuration's trainer settings (the learning rate may be 0 or a schedule here,
        # e.g. to freeze weights; a schedule is checked by its values).
        check_settings(**{name: value for name, value in locals().items()
                          if name in OVERRIDABLE and name != "learning_rate" and not callable(value)})
        if isinstance(policy, str) and policy not in self.policy_aliases:
            raise ValueError(f"unknown policy {policy!r}; available: {sorted(self.policy_aliases)}")
        if env is not None and not isinstance(env, VecEnv):  # None: SB3's load, which sets the env later
            raise ValueError(
                f"MetaPPO takes an SB3 VecEnv of transition observations, got {type(env).__name__}; build one with "
                "metarl_agents.make_vec_env(env_id, n_envs, seed), or use MetaPPO.from_preset(env_id, policy)"
            )
        super().__init__(
            policy, env, learning_rate=learning_rate, n_steps=n_steps, gamma=gamma, gae_lambda=gae_lambda,
            ent_coef=ent_coef, vf_coef=vf_coef, max_grad_norm=max_grad_norm, use_sde=False, sde_sample_freq=-1,
            stats_window_size=stats_window_size, tensorboard_log=tensorboard_log, policy_kwargs=policy_kwargs,
            verbose=verbose, seed=seed, device=device, _init_setup_model=False,
            supported_action_spaces=(spaces.Discrete, spaces.Box),
        )
        if self.env is not None and n_minibatches > self.n_envs:
            raise ValueError(f"n_minibatches={n_minibatches} exceeds n_envs={self.n_envs}: a minibatch is a set of envs")
        self.protocol = protocol
        self.n_epochs = n_epochs
        self.n_minibatches = n_minibatches
        self.clip_range = clip_range
        self.normalize_advantage = normalize_advantage
        self.normalize_reward = normalize_reward
        self.reward_clip = reward_clip
        self.clip_actions = bool(clip_actions)
        self.reward_normalizer: ReturnNormalizer | None = None
        self._last_states: th.Tensor | None = None  # the memory policy's flat state
        self.stall_monitor = StallMonitor()
        if _init_setup_model:
            self._setup_model()

    # --- construction ----------------------------------------------------------------------
    @property
    def paper(self) -> bool:
        """Whether this model trains under the paper protocol (models saved before protocols are "metarl")."""
        return getattr(self, "protocol", "metarl") == "paper"

    def _setup_model(self) -> None:
        self._setup_lr_schedule()
        if self.paper:
            self.policy_kwargs = paper_policy_kwargs(self.policy_class, self.policy_kwargs)
        self.set_random_seed(self.seed)
        self.policy = self.policy_class(self.observation_space, self.action_space, self.lr_schedule, **self.policy_kwargs)
        self.policy = check_memory_policy(self.policy).to(self.device)
        action_shape = () if isinstance(self.action_space, spaces.Discrete) else self.action_space.shape
        action_dtype = np.int64 if isinstance(self.action_space, spaces.Discrete) else np.float32
        self.rollout_buffer = SequenceRolloutBuffer(  # type: ignore[assignment]
            self.n_steps, self.n_envs, self.observation_space.shape, action_shape, action_dtype
        )
        if self.normalize_reward:
            if self.reward_normalizer is None:
                self.reward_normalizer = ReturnNormalizer(self.n_envs, self.gamma, self.reward_clip)
            self.reward_normalizer.set_num_envs(self.n_envs)
            self.reward_normalizer.reset_all_on_done = self.paper  # (also for normalizers saved before it existed)
        self.clip_range = FloatSchedule(self.clip_range)
        self._last_states = None

    @classmethod
    def from_preset(cls: type[SelfMetaPPO], env_id: str, policy: str, seed: int = 0,
                    env_kwargs: dict[str, Any] | None = None, verbose: int = 0, tensorboard_log: str | None = None,
                    **settings: Any) -> SelfMetaPPO:
        """A model with ``env_id``'s reference settings and its training envs, through the run configuration.

        ``settings`` replace preset values (``learning_rate``, ``n_steps``, ``n_envs``, ``adam_eps``,
        ``lr_anneal``, ``policy_kwargs``, ``device``, ...; :class:`~metarl_agents.training.config.RunConfig`
        checks each); ``env_kwargs`` go to the family. Same as ``build_model(RunConfig.from_preset(...))``.
        """
        config = RunConfig.from_preset(env_id, policy, seed=seed, env_kwargs=env_kwargs or {}, **settings)
        return cls.from_config(config, verbose=verbose, tensorboard_log=tensorboard_log)

    @classmethod
    def from_config(cls: type[SelfMetaPPO], config: RunConfig, verbose: int = 0,
                    **algorithm_kwargs: Any) -> SelfMetaPPO:
        """A fresh model on ``config``'s training envs, with its seed and device (``algorithm_kwargs``: other
        constructor arguments, e.g. ``tensorboard_log``). The one place a configuration's fields become
        constructor arguments; :func:`metarl_agents.training.build.build_model` calls it."""
        policy_kwargs = dict(config.policy_kwargs)
        policy_kwargs["optimizer_kwargs"] = {"eps": config.adam_eps, **policy_kwargs.get("optimizer_kwargs", {})}
        learning_rate = LinearSchedule(config.learning_rate, 0.0, 1.0) if config.lr_anneal else config.learning_rate
        env = make_vec_env(config.env_id, config.n_envs, config.seed, **config.env_kwargs)
        arguments = inspect.signature(MetaPPO.__init__).parameters  # the trainer settings that are arguments
        trainer = {name: getattr(config, name) for name in OVERRIDABLE if name in arguments and name != "learning_rate"}
        return cls(config.agent, env, learning_rate=learning_rate, seed=config.seed, policy_kwargs=policy_kwargs,
                   device=config.device, verbose=verbose, **trainer, **algorithm_kwargs)

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "_last_states", "stall_monitor"]

    def _setup_learn(self, total_timesteps: int, callback: MaybeCallback = None, reset_num_timesteps: bool = True,
                     tb_log_name: str = "run", progress_bar: bool = False) -> tuple[int, BaseCallback]:
        """SB3's set-up, with a logger that writes no folder unless TensorBoard logging was asked for (SB3's
        default creates an empty ``SB3-<time>`` folder in the system temp directory at every ``learn``)."""
        if self._custom_logger or self.tensorboard_log is not None:
            return super()._setup_learn(total_timesteps, callback, reset_num_timesteps, tb_log_name, progress_bar)
        self._logger = Logger(folder=None, output_formats=[HumanOutputFormat(sys.stdout)] if self.verbose >= 1 else [])
        self._custom_logger = True  # keeps SB3 from replacing it for this call only
        try:
            return super()._setup_learn(total_timesteps, callback, reset_num_timesteps, tb_log_name, progress_bar)
        finally:
            self._custom_logger = False

    # --- rollouts --------------------------------------------------------------------------
    def collect_rollouts(self, env: VecEnv, callback: BaseCallback, rollout_buffer: SequenceRolloutBuffer,
                         n_rollout_steps: int) -> bool:
        """Fill the buffer with ``n_rollout_steps`` steps of every env, continuing the memory state."""
        assert self._last_obs is not None, "No previous observation was provided"
        policy, device = self.policy, self.device
        policy.set_training_mode(False)
        restart = self._restarts_memory_at_chunks()
        if restart or self._last_states is None or self._last_states.shape[0] != env.num_envs:
            self._last_states = policy.initial_states(env.num_envs)
        rollout_buffer.reset(self._last_states)
        box = self.action_space if isinstance(self.action_space, spaces.Box) and self.clip_actions else None
        callback.on_rollout_start()

        obs, episode_starts, state = self._last_obs, self._last_episode_starts, self._last_states
        ended = np.zeros_like(rollout_buffer.ended[0])  # each env's last ended trial's final transition
        for t in range(n_rollout_steps):
            # Under the paper protocol a chunk's first step is a memory start (the prior) for most memories;
            # a trial starting later encodes the ended trial's final transition (the reference's order).
            memory_starts = np.ones_like(episode_starts) if restart and t == 0 else episode_starts
            encode_ended = self.paper and t > 0 and bool(episode_starts.any())
            rollout_buffer.ended[t] = ended if encode_ended else 0.0
            with th.inference_mode():
                obs_tensor = th.as_tensor(obs, device=device)
                try:
                    actions, values, log_probs, new_state = self._step(
                        obs_tensor, state, memory_starts, ended if encode_ended else None)
                except ValueError as exc:  # torch's distribution check on non-finite logits
                    raise (self._nonfinite(obs_tensor) or self._nonfinite_output((
                        obs_tensor[None], th.zeros((1, *rollout_buffer.actions.shape[1:]), device=device),
                        th.as_tensor(episode_starts, dtype=th.float32, device=device)[None], state), exc)) from None
            actions = actions.cpu().numpy()
            env_actions = np.clip(actions, box.low, box.high) if box is not None else actions
            new_obs, rewards, dones, infos = env.step(env_actions)
            self.num_timesteps += env.num_envs
            callback.update_locals(locals())
            if not callback.on_step():
                self._last_states = state  # the state before this step, as _last_obs
                return False
            if dones.any():
                self._update_info_buffer(infos, dones)
                for i in np.flatnonzero(dones):
                    terminal = infos[i].get("terminal_observation")
                    ended[i] = terminal if terminal is not None else 0.0
                if self.paper:
                    rollout_buffer.truncated[rollout_buffer.pos] = [
                        bool(done and info.get("TimeLimit.truncated", False))
                        for done, info in zip(dones, infos, strict=True)]
                else:
                    self._store_truncation_bootstrap(rollout_buffer, infos, dones, new_state)
            rollout_buffer.add(obs, actions, rewards, episode_starts, values.cpu().numpy().ravel(), log_probs.cpu().numpy())
            obs, episode_starts, state = new_obs, dones, new_state
            self._last_obs, self._last_episode_starts = obs, episode_starts
        self._last_states = state
        for name, array in (("value estimate", rollout_buffer.values), ("action log-probability", rollout_buffer.log_probs)):
            if not np.isfinite(array).all():
                chunk = (rollout_buffer.observations, rollout_buffer.actions, rollout_buffer.episode_starts)
                raise self._nonfinite_output((*(th.from_numpy(x).to(device) for x in chunk),
                                              rollout_buffer.initial_states), None, name)

        last_values = self._values(obs, state, episode_starts)
        scaled_rewards = rollout_buffer.rewards
        if self.reward_normalizer is not None:
            scaled_rewards = self.reward_normalizer(scaled_rewards, rollout_buffer.trial_ends(episode_starts))
        # The bootstrap is a value, already on the scale the critic learns.
        rollout_buffer.compute_returns_and_advantage(
            scaled_rewards + rollout_buffer.bootstrap, last_values, episode_starts, self.gamma, self.gae_lambda,
            zero_truncated=self.paper,
        )
        callback.update_locals(locals())
        callback.on_rollout_end()
        return True

    def _step(self, obs: th.Tensor, state: th.Tensor, starts: np.ndarray,
              ended: np.ndarray | None = None) -> tuple[th.Tensor, ...]:
        """The policy's rollout step; the state is zeroed only on steps where a trial starts (the numbers of
        multiplying it by a ``keep`` mask every step). ``ended [N, D]``: the ended trials' final transitions,
        encoded at this step's trial starts instead of the prior (paper protocol, inside a chunk)."""
        if not starts.any():
            return self.policy.step(obs, state)
        starts_t = th.as_tensor(starts.astype(np.float32), device=self.device)
        extra = {} if ended is None else {"ended": (th.as_tensor(ended, device=self.device), starts_t)}
        return self.policy.step(obs, state * (1.0 - starts_t).reshape(-1, 1), starts=starts_t, **extra)

    def _restarts_memory_at_chunks(self) -> bool:
        """Paper protocol: the reference restarted every memory but PEARL's (variational) at each chunk."""
        return self.paper and not getattr(getattr(self.policy, "memory", None), "variational", False)

    def _values(self, obs: np.ndarray, state: th.Tensor, episode_starts: np.ndarray) -> np.ndarray:
        """Values after one more memory step (which leaves observation statistics alone)."""
        with th.inference_mode():
            starts = th.as_tensor(episode_starts, dtype=th.float32, device=self.device)
            values = self.policy.values(th.as_tensor(obs, device=self.device), state, starts)
        return values.cpu().numpy().ravel()

    def _store_truncation_bootstrap(self, buffer: SequenceRolloutBuffer, infos: list[dict[str, Any]],
                                    dones: np.ndarray, state: th.Tensor) -> None:
        """``gamma * V(last observation)`` for trials cut by a time limit, from their current memory."""
        idx = [i for i in np.flatnonzero(dones) if infos[i].get("TimeLimit.truncated", False)
               and infos[i].get("terminal_observation") is not None]
        if not idx:
            return
        terminal = np.stack([infos[i]["terminal_observation"] for i in idx]).astype(np.float32)
        values = self._values(terminal, state[idx], np.zeros(len(idx), dtype=np.float32))
        buffer.bootstrap[buffer.pos, idx] = self.gamma * values

    # --- update ----------------------------------------------------------------------------
    def train(self) -> None:
        """``n_epochs`` passes over the chunk, each in ``n_minibatches`` sets of whole env sequences (paper
        protocol: random sets of transitions, every sequence re-encoded for each)."""
        policy, buffer, device = self.policy, self.rollout_buffer, self.device
        paper = self.paper
        policy.set_training_mode(True)
        self._update_learning_rate(policy.optimizer)
        clip_range = self.clip_range(self._current_progress_remaining)

        data = {
            "obs": buffer.observations, "actions": buffer.actions, "starts": buffer.episode_starts,
            "old_values": buffer.values, "old_log_probs": buffer.log_probs, "returns": buffer.returns,
            "advantages": buffer.advantages,
        }
        data = {key: th.from_numpy(value).to(device) for key, value in data.items()}
        if self.normalize_advantage:
            advantages = data["advantages"]
            # (the reference's epsilon under the paper protocol)
            data["advantages"] = (advantages - advantages.mean()) / (advantages.std() + (1e-5 if paper else 1e-8))
        initial_states = buffer.initial_states.clone()  # a plain (non-inference) tensor a sequence can start from
        memory_params, head_params = list(policy.memory_parameters()), list(policy.head_parameters())
        if paper:  # the reference updated its observation statistics before the update
            policy.update_obs_statistics(data["obs"])
        # The reference's value loss is 0.5 * max(Huber), weighted by vf_coef again.
        value_weight = self.vf_coef * (0.5 if paper else 1.0)
        minibatches = self._paper_minibatches if paper else self._env_minibatches

        stats: dict[str, list[th.Tensor]] = {}  # per minibatch, under their logger names
        for _ in range(self.n_epochs):
            for values, log_prob, entropy, aux_loss, batch in minibatches(data, initial_states):
                adv, old_v, ret = batch["advantages"], batch["old_values"], batch["returns"]
                log_ratio = log_prob - batch["old_log_probs"]
                ratio = th.exp(log_ratio)
                policy_loss = -th.min(adv * ratio, adv * th.clamp(ratio, 1 - clip_range, 1 + clip_range)).mean()
                values_clipped = old_v + th.clamp(values - old_v, -clip_range, clip_range)
                value_loss = th.max(
                    F.smooth_l1_loss(values, ret, reduction="none"), F.smooth_l1_loss(values_clipped, ret, reduction="none")
                ).mean()
                entropy_loss = -entropy.mean()
                loss = policy_loss + value_weight * value_loss + self.ent_coef * entropy_loss + aux_loss
                if not th.isfinite(loss):
                    parts = {"policy loss": policy_loss, "value loss": value_loss, "entropy": entropy_loss,
                             "auxiliary loss": aux_loss}
                    broken = [k for k, v in parts.items() if not th.isfinite(th.as_tensor(v))]
                    # Finite parts whose weighted sum overflows float32: name them with their values.
                    raise self._diverged("loss", broken or [
                        "their weighted sum overflowed: " + ", ".join(f"{k} {float(th.as_tensor(v).detach()):.3g}" for k, v in parts.items())])

                policy.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                norms = {"memory": th.nn.utils.clip_grad_norm_(memory_params, self.max_grad_norm),
                         "head": th.nn.utils.clip_grad_norm_(head_params, self.max_grad_norm)}
                if not all(th.isfinite(norm) for norm in norms.values()):
                    raise self._diverged("gradient", [f"{k} gradient norm" for k, v in norms.items() if not th.isfinite(v)])
                try:
                    policy.optimizer.step()
                except RuntimeError as exc:  # Adam's step size (learning rate / bias correction) beyond float32
                    if "overflow" not in str(exc):
                        raise
                    lr = self.lr_schedule(self._current_progress_remaining)
                    raise self._diverged("step of the optimizer", [f"Adam's step overflowed float32 at learning rate "
                                                                   f"{lr:g}"]) from None

                with th.no_grad():
                    for key, value in (("policy_gradient_loss", policy_loss), ("value_loss", value_loss),
                                       ("entropy_loss", entropy_loss), ("aux_loss", aux_loss),
                                       ("clip_fraction", ((ratio - 1).abs() > clip_range).float().mean()),
                                       ("approx_kl", ((ratio - 1) - log_ratio).mean())):
                        stats.setdefault(key, []).append(th.as_tensor(value).detach())
            self._n_updates += 1
        # Once per chunk, after the update: the rollout and the update of a chunk see the same
        # observation statistics, so the probability ratio starts at exactly 1.
        if not paper:
            policy.update_obs_statistics(data["obs"])
        problem = self._nonfinite()  # e.g. an infinite learning rate, or a NaN observation in the statistics
        if problem is not None:
            raise problem

        means = {k: th.stack(v).mean().item() for k, v in stats.items()}
        self.stall_monitor.update(float(buffer.rewards.mean()), -means["entropy_loss"],
                                   int(np.prod(self.action_space.shape)), isinstance(self.action_space, spaces.Discrete),
                                   self.lr_schedule(self._current_progress_remaining))
        for key, mean in means.items():
            self.logger.record(f"train/{key}", mean)
        self.logger.record("train/loss", loss.item())
        self.logger.record("train/explained_variance", explained_variance(buffer.values.ravel(), buffer.returns.ravel()))
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/clip_range", clip_range)
        if hasattr(policy, "log_std"):
            self.logger.record("train/std", th.exp(policy.log_std).mean().item())

    def _nonfinite(self, obs: th.Tensor | None = None) -> TrainingDivergedError | None:
        """The error naming what is non-finite: the env's observations (which carry the rewards), a parameter
        or a statistic of the policy; None if all are finite."""
        if obs is not None and not th.isfinite(obs).all():
            return self._diverged("observation from the env", ["an observation or reward is NaN or infinite"])
        for kind, named in (("parameter", self.policy.named_parameters()), ("statistic", self.policy.named_buffers())):
            broken = [name for name, value in named if value.is_floating_point() and not th.isfinite(value).all()]
            if broken:
                return self._diverged(kind, broken[:3])
        return None

    def _nonfinite_output(self, sequence: tuple, error: Exception | None,
                          output: str = "the action distribution") -> TrainingDivergedError:
        """The error for a policy whose inputs and parameters are finite but whose ``output`` is not (e.g. an
        ``obs_clip`` of NaN, or activations that overflow), naming the first layer that produced non-finite
        numbers when ``evaluate_sequence(*sequence)`` runs the policy again through its modules (the rollout
        step bypasses them for speed). ``error``: torch's distribution error, re-raised if it is about
        something else."""
        if error is not None and "invalid values" not in str(error) and "nan" not in str(error).lower():
            raise error
        layer = first_nonfinite_module(self.policy, lambda: self.policy.evaluate_sequence(*sequence))
        return self._diverged("policy output", [output + (f", first in {layer}" if layer else "")])

    def _diverged(self, quantity: str, which: list[str]) -> TrainingDivergedError:
        return TrainingDivergedError(
            f"training diverged at update {self._n_updates + 1} (after {self.num_timesteps} frames): a {quantity} "
            f"became non-finite ({', '.join(which)}). "
            + ("The model is no longer finite; " if quantity in ("parameter", "statistic") else
               "The model keeps the weights of the last finite update; ")
            + "resume from the last checkpoint saved before this point, with a lower learning rate or clipped inputs"
        )

    def _env_minibatches(self, data: dict[str, th.Tensor], initial_states: th.Tensor) -> Iterator[tuple]:
        """``(values, log_prob, entropy, aux_loss, targets)`` of each of ``n_minibatches`` random sets of whole
        env sequences (targets: the flat ``advantages``, ``old_values``, ``returns``, ``old_log_probs``)."""
        for envs in np.array_split(th.randperm(self.rollout_buffer.n_envs).numpy(), self.n_minibatches):
            batch, states, valid = self._minibatch(data, initial_states, envs)
            values, log_prob, entropy, aux_loss = self._evaluate_sequence(batch, states)
            # Where trials line up with the chunk there is no padding: the whole [L, S] layout, flat.
            steps = (lambda x: x.reshape(-1)) if valid is None else (lambda x, mask=valid: x[mask])
            yield steps(values), steps(log_prob), steps(entropy), aux_loss, {k: steps(batch[k]) for k in _TARGETS}

    def _paper_minibatches(self, data: dict[str, th.Tensor], initial_states: th.Tensor) -> Iterator[tuple]:
        """The reference's minibatches: ``n_minibatches`` random sets of ``T * N / n_minibatches`` transitions
        (drawn from all envs and steps, the remainder dropped), every env's whole sequence re-encoded with the
        current parameters for each; the head runs only at the drawn transitions. A variational memory
        gives its posterior mean (the reference re-encoded without sampling)."""
        buffer, device = self.rollout_buffer, self.device
        memory_starts = buffer.episode_starts.copy()
        if self._restarts_memory_at_chunks():
            memory_starts[0] = 1.0
        time_index, segment_env, valid = trial_segments(memory_starts)
        rows, columns = th.from_numpy(time_index).to(device), th.from_numpy(segment_env).to(device)
        batch = {key: data[key][rows, columns] for key in ("obs", "actions")}
        # padding continues its segment, never resets
        batch["starts"] = th.from_numpy((memory_starts[time_index, segment_env] * valid).astype(np.float32)).to(device)
        # a trial starting after the chunk's first step encodes the ended trial's final transition, as in the rollout
        encoded = th.from_numpy((memory_starts[time_index, segment_env] * valid * (time_index > 0)).astype(np.float32))
        ended = (th.from_numpy(buffer.ended[time_index, segment_env]).to(device), encoded.to(device))
        states = initial_states[columns]
        # position[t * N + n]: where transition (t, n) lies in the flat [L, S] layout
        n_steps, n_envs = memory_starts.shape
        position = np.empty(n_steps * n_envs, dtype=np.int64)
        position[(time_index * n_envs + segment_env[None])[valid]] = np.flatnonzero(valid)
        position = th.from_numpy(position).to(device)
        targets = {key: data[key].reshape(-1) for key in _TARGETS}
        size = n_steps * n_envs // self.n_minibatches
        order = th.randperm(n_steps * n_envs, device=device)
        for i in range(self.n_minibatches):
            chosen = order[i * size:(i + 1) * size]
            values, log_prob, entropy, aux_loss = self._evaluate_sequence(batch, states, select=position[chosen],
                                                                          sample=False, ended=ended)
            yield values, log_prob, entropy, aux_loss, {k: v[chosen] for k, v in targets.items()}

    def _evaluate_sequence(self, batch: dict[str, th.Tensor], states: th.Tensor, **options: Any) -> tuple:
        """The policy's ``evaluate_sequence`` on a minibatch; a non-finite output becomes the error naming its
        cause (torch's distribution check raises ValueError on non-finite logits)."""
        sequence = (batch["obs"], batch["actions"], batch["starts"], states)
        try:
            return self.policy.evaluate_sequence(*sequence, **options)
        except ValueError as exc:
            raise (self._nonfinite(batch["obs"]) or self._nonfinite_output(sequence, exc)) from None

    def _minibatch(self, data: dict[str, th.Tensor], initial_states: th.Tensor,
                   envs: np.ndarray) -> tuple[dict[str, th.Tensor], th.Tensor, th.Tensor | None]:
        """The whole sequences of ``envs``, re-laid as trial segments side by side (exact, see
        :func:`~metarl_agents.training.rollout.trial_segments`); returns the data, start states and valid mask
        (None where nothing is padding: the trials line up with the chunk)."""
        time_index, segment_env, valid = trial_segments(self.rollout_buffer.episode_starts[:, envs])
        rows = th.from_numpy(time_index).to(self.device)
        columns = th.from_numpy(envs[segment_env]).to(self.device)
        batch = {key: value[rows, columns] for key, value in data.items()}
        if valid.all():
            return batch, initial_states[columns], None
        valid_t = th.from_numpy(valid).to(self.device)
        batch["starts"] = batch["starts"] * valid_t  # padding continues its segment, never resets
        # A segment after an env's first starts with a reset, so its env's chunk-start state is dropped.
        return batch, initial_states[columns], valid_t

    def learn(self: SelfMetaPPO, total_timesteps: int, callback: MaybeCallback = None, log_interval: int = 1,
              tb_log_name: str = "MetaPPO", reset_num_timesteps: bool = True, progress_bar: bool = False) -> SelfMetaPPO:
        return super().learn(total_timesteps=total_timesteps, callback=callback, log_interval=log_interval,
                             tb_log_name=tb_log_name, reset_num_timesteps=reset_num_timesteps, progress_bar=progress_bar)
