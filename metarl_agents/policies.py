"""SB3 recurrent policies over the memory zoo: SplAgger, RNN, AMRL, CNP, Max, PEARL, PEARL-GRU and ablations.

Every policy is a :class:`MetaRecurrentPolicy` -- a sb3-contrib ``RecurrentActorCriticPolicy`` -- so
``sb3_contrib.RecurrentPPO`` trains, saves, loads and predicts with it unchanged. The named classes
only change the defaults (their ``preset``); every setting is a constructor kwarg (see
:class:`PolicyConfig`), so ``RecurrentPPO.load`` rebuilds the same policy from ``policy_kwargs``.

Observations must be transitions (:class:`metarl_envs.wrappers.TransitionObservation`); the layout
is read from the observation and action spaces. The memory reads whole transitions, the head reads
the current state ``s`` and the memory's latent.

Actor and critic share one memory, whose state is a flat ``[B, state_size]`` tensor (the contract MetaPPO
trains through, :class:`metarl_agents.training.memory_policy.MemoryPolicy`); the base class packs it for RecurrentPPO.

Observation statistics (the head's running normalisation) change only through
:meth:`~MetaRecurrentPolicy.update_obs_statistics`: :meth:`forward` (RecurrentPPO's rollout step)
calls it every step, MetaPPO once per chunk after the update (its rollouts use :meth:`~MetaRecurrentPolicy.step`, which
leaves them alone); ``predict``, ``predict_values``, ``evaluate_actions`` and :meth:`evaluate_sequence`
never do, so evaluation sees fixed statistics. Set ``policy.update_obs_norm = False`` to freeze them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

import torch as th
from gymnasium import spaces
from stable_baselines3.common.distributions import Distribution
from stable_baselines3.common.type_aliases import Schedule
from torch import nn

from metarl_agents.heads import HyperHead, MlpHead
from metarl_agents.memory import Memory
from metarl_agents.policy_settings import (  # noqa: F401  (the choices: public here before)
    CRITIC_INITS,
    HEADS,
    START_LATENTS,
    check_policy_config,
)
from metarl_agents.recurrent_adapter import RecurrentPPOAdapter
from metarl_envs.wrappers import transition_layout_from_space


@dataclass(frozen=True)
class PolicyConfig:
    """Every setting of a :class:`MetaRecurrentPolicy` (the defaults are SplAgger's)."""

    encoder: str = "gru"  #: "gru", "linear" (per-step tanh(Linear), no recurrence) or a scan encoder (encoders.py)
    encoder_hidden: int = 256
    encoder_kwargs: dict[str, Any] | None = None  #: scan encoders' settings, e.g. {"state_dim": 16}
    split: bool = True  #: aggregate only the second half of the encoding; the first half skips
    aggregator: str | None = "max"  #: a name in metarl_agents.memory.aggregators.AGGREGATORS, or None
    aggregator_kwargs: dict[str, Any] | None = None  #: e.g. {"temperature": 0.1}
    latent_dim: int = 24  #: memory output (variational: 2 x the sampled latent)
    state_embed: int = 32
    action_embed: int | None = None  #: None: 8 for Discrete actions, 16 for Box
    reward_embed: int | None = None  #: None: 8 for Discrete actions, 16 for Box
    head: str = "hyper"  #: "hyper" (hypernetwork, Bias-HyperInit) or "mlp"
    net_arch: tuple[int, ...] = (256, 128)  #: hidden sizes of the actor and critic (base) networks
    head_state_dim: int = 256  #: width of the head's state embedding tanh(Linear(obs -> .))
    hyper_dim: int = 25  #: width of the hypernetwork input e = tanh(Linear(latent -> .))
    head_bf16: bool = False  #: hypernetwork head: bfloat16 autocast (only faster on CPUs with bf16 instructions)
    obs_clip: float = 10.0  #: clip of the normalised state
    log_std_init: float = 0.0  #: Gaussian policies: initial state-independent log-std
    optimizer_class: type[th.optim.Optimizer] = th.optim.Adam
    optimizer_kwargs: dict[str, Any] | None = None
    #: the memory's own optimizer settings, e.g. {"eps": 1e-8} (None: the memory shares ``optimizer_kwargs``)
    memory_optimizer_kwargs: dict[str, Any] | None = None
    #: a trial's first latent: "encode" its observation from the empty memory, or the memory's "prior"
    #: (a zero embedding read out of the empty state, the state left empty), as the SplAgger reference did at a
    #: chunk's first step; a start given an ended trial's final transition (MetaPPO's paper protocol, inside a
    #: chunk) encodes that transition into the reset memory instead
    start_latent: str = "encode"
    #: hypernetwork head's critic output layer: "torch" (nn.Linear's default) or "reference" (the SplAgger
    #: reference's: Kaiming-uniform with a = 0, bias U(-1, 1))
    critic_init: str = "torch"


_CONFIG_FIELDS = tuple(f.name for f in fields(PolicyConfig))


class MetaRecurrentPolicy(RecurrentPPOAdapter):
    """A memory (:class:`metarl_agents.memory.Memory`) and an actor-critic head as an SB3 policy.

    Keyword arguments are the fields of :class:`PolicyConfig`; subclasses set ``preset``.
    """

    preset: ClassVar[dict[str, Any]] = {}

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Space, lr_schedule: Schedule,
                 use_sde: bool = False, **kwargs: Any) -> None:
        unknown = sorted(set(kwargs) - set(_CONFIG_FIELDS))
        if unknown:
            raise ValueError(f"{type(self).__name__}: unknown kwargs {unknown}; allowed: {list(_CONFIG_FIELDS)}")
        if use_sde:
            raise ValueError(f"{type(self).__name__} does not support use_sde=True")
        if not (isinstance(action_space, spaces.Discrete)
                or (isinstance(action_space, spaces.Box) and len(action_space.shape) == 1)):
            raise ValueError(f"action space must be Discrete or a 1-D Box, got {action_space!r}")
        self.layout = transition_layout_from_space(observation_space, action_space)
        self.config = check_policy_config(PolicyConfig(**{**self.preset, **kwargs}), self.layout,
                                          isinstance(action_space, spaces.Discrete))
        self.update_obs_norm = True
        super().__init__(observation_space, action_space, lr_schedule, log_std_init=self.config.log_std_init,
                         optimizer_class=self.config.optimizer_class, optimizer_kwargs=self.config.optimizer_kwargs,
                         lstm_hidden_size=1, enable_critic_lstm=False)
        self._replace_lstm()
        self.optimizer = self.optimizer_class(self._parameter_groups(), lr=lr_schedule(1), **self.optimizer_kwargs)

    def _parameter_groups(self) -> Any:
        """All parameters, or the head's and the memory's as two groups where the memory has its own settings."""
        if not self.config.memory_optimizer_kwargs:
            return self.parameters()
        return [{"params": self.head_parameters()},
                {"params": self.memory_parameters(), **self.config.memory_optimizer_kwargs}]

    # --- construction ----------------------------------------------------------------------
    def _build(self, lr_schedule: Schedule) -> None:
        cfg = self.config
        discrete = isinstance(self.action_space, spaces.Discrete)
        small = 8 if discrete else 16
        self.memory = Memory(
            self.layout, encoder=cfg.encoder, encoder_hidden=cfg.encoder_hidden, encoder_kwargs=cfg.encoder_kwargs,
            split=cfg.split, aggregator=cfg.aggregator, aggregator_kwargs=cfg.aggregator_kwargs, latent_dim=cfg.latent_dim,
            state_embed=cfg.state_embed, action_embed=cfg.action_embed or small, reward_embed=cfg.reward_embed or small,
            prior_at_start=cfg.start_latent == "prior",
        )
        head_class = HyperHead if cfg.head == "hyper" else MlpHead
        extra = ({"hyper_dim": cfg.hyper_dim, "hidden": cfg.net_arch, "autocast_bf16": cfg.head_bf16,
                  "critic_init": cfg.critic_init} if cfg.head == "hyper" else {"net_arch": cfg.net_arch})
        self.head = head_class(
            self.layout["obs_dim"], self.memory.output_dim, self.layout["act_dim"], discrete,
            state_dim=cfg.head_state_dim, obs_clip=cfg.obs_clip, **extra,
        )
        if not discrete:
            self.log_std = nn.Parameter(th.full((self.layout["act_dim"],), float(cfg.log_std_init)))
        # (the optimizer is built once all modules exist, at the end of __init__)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return {"observation_space": self.observation_space, "action_space": self.action_space,
                "lr_schedule": self._dummy_schedule, **asdict(self.config)}

    # --- memory-policy contract (flat states) ------------------------------------------------
    def initial_states(self, n_envs: int) -> th.Tensor:
        """Zero (empty) memory states ``[n_envs, state_size]``, on the policy's device."""
        return th.zeros(n_envs, self.memory.state_size, device=self.device)

    # --- core ------------------------------------------------------------------------------
    def _run(self, obs: th.Tensor, episode_starts: th.Tensor, state: th.Tensor, sample: bool = True,
             ended: tuple[th.Tensor, th.Tensor] | None = None,
             select: th.Tensor | None = None) -> tuple[th.Tensor, th.Tensor, th.Tensor, th.Tensor]:
        """``obs [T, B, D]`` -> ``(action output [T, B, A], values [T, B], new state, aux loss)``; with ``select``
        (flat indices into ``T * B``) the head runs only at those steps and its outputs are flat, in that order."""
        obs = obs.to(th.float32)
        latent, state, aux = self.memory(obs, episode_starts.to(obs.dtype), state, sample, ended=ended)
        t_count, batch = obs.shape[:2]
        s = obs[..., self.layout["slices"]["s"]].reshape(t_count * batch, -1)
        latent = latent.reshape(t_count * batch, -1)
        if select is not None:
            return *self.head(s[select], latent[select]), state, aux
        action_out, values = self.head(s, latent)
        return action_out.view(t_count, batch, -1), values.view(t_count, batch), state, aux

    def _distribution(self, action_out: th.Tensor) -> Distribution:
        if isinstance(self.action_space, spaces.Discrete):
            return self.action_dist.proba_distribution(action_logits=action_out)
        return self.action_dist.proba_distribution(action_out, self.log_std)

    def step(self, obs: th.Tensor, state: th.Tensor, deterministic: bool = False, starts: th.Tensor | None = None,
             ended: tuple[th.Tensor, th.Tensor] | None = None) -> tuple[th.Tensor, th.Tensor, th.Tensor, th.Tensor]:
        """One step for a batch of copies from the memory state ``[B, state_size]`` (already zeroed where a
        trial starts): ``(actions, values [B], log_prob, new state)``. ``starts [B]`` marks the memory's
        start steps (used by ``start_latent="prior"``); ``ended = (transitions [B, D], mask [B])``: start
        steps in ``mask`` encode the ended trial's final transition instead of the prior (:class:`Memory`).

        Rollouts are a loop over single steps at small batch, where per-call overhead outweighs
        arithmetic, so this path skips the sequence machinery (:meth:`Memory.step`) and, for Discrete
        actions, SB3's distribution objects.
        """
        obs = obs.reshape(obs.shape[0], -1).to(th.float32)
        latent, state = self.memory.step(obs, state, sample=not deterministic, starts=starts, ended=ended)
        action_out, values = self.head.step(obs[:, self.layout["slices"]["s"]], latent)
        if isinstance(self.action_space, spaces.Discrete):
            log_probs = th.log_softmax(action_out, dim=-1)
            if deterministic:
                actions = log_probs.argmax(-1)
            else:
                # Gumbel-max: argmax(log p - log E), E ~ Exp(1), is a sample of p (cheaper than multinomial)
                noise = th.empty_like(log_probs).exponential_().log_()
                actions = th.sub(log_probs, noise, out=noise).argmax(-1)
            log_prob = log_probs.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
        else:
            distribution = self._distribution(action_out)
            actions = distribution.get_actions(deterministic=deterministic)
            log_prob = distribution.log_prob(actions)
        return actions.reshape((-1, *self.action_space.shape)), values, log_prob, state

    def values(self, obs: th.Tensor, state: th.Tensor, episode_starts: th.Tensor) -> th.Tensor:
        """The values ``[B]`` after one more memory step from ``state`` (the sequence path, one step long)."""
        batch = obs.shape[0]
        return self._run(obs.reshape(1, batch, -1), episode_starts.reshape(1, batch), state, sample=True)[1].reshape(-1)

    def update_obs_statistics(self, obs: th.Tensor) -> None:
        """Add transition observations ``[..., dim]`` to the running statistics of the head's state input
        (nothing while ``update_obs_norm`` is False)."""
        if not self.update_obs_norm:
            return
        obs = th.as_tensor(obs, device=self.device).reshape(-1, self.layout["dim"])
        self.head.state.norm.update(obs[:, self.layout["slices"]["s"]])

    # --- MetaPPO's sequence update -----------------------------------------------------------------------
    def evaluate_sequence(
        self, obs: th.Tensor, actions: th.Tensor, episode_starts: th.Tensor, state: th.Tensor,
        select: th.Tensor | None = None, sample: bool = True, ended: tuple[th.Tensor, th.Tensor] | None = None,
    ) -> tuple[th.Tensor, th.Tensor, th.Tensor, th.Tensor]:
        """Whole sequences ``[T, B, ...]`` with full backprop: ``(values, log_prob, entropy, aux_loss)``.

        ``episode_starts[t, b] = 1`` resets the memory before step ``t``; ``state [B, state_size]`` is the memory
        before step 0. ``aux_loss`` is PEARL's weighted KL term (zero for the other memories).
        ``select`` (flat indices into ``T * B``): the memory still runs over every step, the head only
        at these, and the results are 1-D in ``select``'s order. ``sample=False``: a variational
        memory's posterior mean instead of a sample. ``ended = (transitions [T, B, D], mask [T, B])``: start
        steps in ``mask`` encode the ended trial's final transition instead of the prior (:class:`Memory`).
        """
        t_count, batch = obs.shape[:2]
        action_out, values, _, aux = self._run(obs.reshape(t_count, batch, -1), episode_starts, state, sample, ended,
                                               select)
        flat_actions = actions.reshape(t_count * batch, -1)
        if select is None:
            action_out = action_out.reshape(t_count * batch, -1)
        else:
            flat_actions = flat_actions[select]
        distribution = self._distribution(action_out)
        if isinstance(self.action_space, spaces.Discrete):
            flat_actions = flat_actions.reshape(-1).long()
        shape = (t_count, batch) if select is None else (-1,)
        log_prob = distribution.log_prob(flat_actions).view(shape)
        return values, log_prob, distribution.entropy().view(shape), aux

    def memory_parameters(self) -> list[nn.Parameter]:
        """The memory's parameters (embeddings, encoder, aggregator, latent projection)."""
        return list(self.memory.parameters())

    def head_parameters(self) -> list[nn.Parameter]:
        """Every other parameter: the actor-critic head and, for Box actions, ``log_std``."""
        memory = {id(p) for p in self.memory.parameters()}
        return [p for p in self.parameters() if id(p) not in memory]


class SplAggerPolicy(MetaRecurrentPolicy):
    """GRU + split + max aggregation (no straight-through), hypernetwork head."""

    preset: ClassVar[dict[str, Any]] = {}


class RNNPolicy(MetaRecurrentPolicy):
    """A GRU alone (no aggregator)."""

    preset: ClassVar[dict[str, Any]] = {"split": False, "aggregator": None}


class AMRLPolicy(MetaRecurrentPolicy):
    """SplAgger with AMRL's straight-through max gradient."""

    preset: ClassVar[dict[str, Any]] = {"aggregator": "max_st"}


class CNPPolicy(MetaRecurrentPolicy):
    """No recurrence: per-transition encoder and a mean over the trial."""

    preset: ClassVar[dict[str, Any]] = {"encoder": "linear", "split": False, "aggregator": "mean"}


class MaxPolicy(MetaRecurrentPolicy):
    """No recurrence: per-transition encoder and a max over the trial (= SplAgger-noRNN)."""

    preset: ClassVar[dict[str, Any]] = {"encoder": "linear", "split": False, "aggregator": "max"}


class PEARLPolicy(MetaRecurrentPolicy):
    """Per-transition encoder, product-of-Gaussians posterior, sampled 12-d latent, KL weight 1e-6.

    The PEARL paper's encoder (Rakelly et al. 2019: each transition encoded on its own, so the
    posterior is permutation invariant). For the baseline as the SplAgger reference ran it, see
    :class:`PEARLGRUPolicy`.
    """

    preset: ClassVar[dict[str, Any]] = {"encoder": "linear", "split": False, "aggregator": "gauss"}


class PEARLGRUPolicy(MetaRecurrentPolicy):
    """PEARL as the SplAgger paper's reference code ran it: GRU(256) -> Linear(256 -> 24) -> product of Gaussians.

    The transitions go through a GRU first, so unlike :class:`PEARLPolicy` the posterior depends on
    their order. This is the "PEARL" of the SplAgger paper's figures. With the 80-wide transition
    embedding of discrete-action envs the GRU (259,584) and the projection (6,168) hold 265,752
    parameters, the embedding layers come on top; the memory state is 256 (GRU) + 24 (the running
    sums of the 12 means and precisions) = 280.
    """

    preset: ClassVar[dict[str, Any]] = {"encoder": "gru", "split": False, "aggregator": "gauss"}


class SplAggerNoSplitPolicy(MetaRecurrentPolicy):
    """Ablation: GRU + max over the whole encoding (no skip half)."""

    preset: ClassVar[dict[str, Any]] = {"split": False}


class SplAggerMeanPolicy(MetaRecurrentPolicy):
    """Ablation: SplAgger with a mean aggregator."""

    preset: ClassVar[dict[str, Any]] = {"aggregator": "mean"}


class SplAggerSoftmaxPolicy(MetaRecurrentPolicy):
    """Ablation: SplAgger with a softmax aggregator (temperature 0.1)."""

    preset: ClassVar[dict[str, Any]] = {"aggregator": "softmax", "aggregator_kwargs": {"temperature": 0.1}}


class SplAggerWSoftmaxPolicy(MetaRecurrentPolicy):
    """Ablation: SplAgger with a weighted softmax aggregator (temperature 0.1)."""

    preset: ClassVar[dict[str, Any]] = {"aggregator": "wsoftmax", "aggregator_kwargs": {"temperature": 0.1}}


POLICY_REGISTRY: dict[str, type[MetaRecurrentPolicy]] = {
    "SplAgger": SplAggerPolicy,
    "RNN": RNNPolicy,
    "AMRL": AMRLPolicy,
    "CNP": CNPPolicy,
    "Max": MaxPolicy,
    "PEARL": PEARLPolicy,
    "PEARL-GRU": PEARLGRUPolicy,
    "SplAgger-noSplit": SplAggerNoSplitPolicy,
    "SplAgger-noRNN": MaxPolicy,
    "SplAgger-mean": SplAggerMeanPolicy,
    "SplAgger-softmax": SplAggerSoftmaxPolicy,
    "SplAgger-wsoftmax": SplAggerWSoftmaxPolicy,
}


# The scan encoders (metarl_agents.memory.encoders), alone ("LRU") and under SplAgger's split max ("SplAgger-LRU").
SCAN_MODEL_NAMES = {"mingru": "minGRU", "lru": "LRU", "ffm": "FFM", "s6": "S6", "gla": "GLA"}


def _scan_policy(class_name: str, doc: str, preset: dict[str, Any]) -> type[MetaRecurrentPolicy]:
    # a module-level name, so that pickling (SB3's save) finds the class by reference
    cls = type(class_name, (MetaRecurrentPolicy,), {"preset": preset, "__doc__": doc, "__module__": __name__})
    globals()[class_name] = cls
    return cls


for _encoder, _label in SCAN_MODEL_NAMES.items():
    _class = _label.replace("-", "")
    POLICY_REGISTRY[_label] = _scan_policy(
        f"{_class}Policy", f"A {_label} encoder alone (no aggregator).",
        {"encoder": _encoder, "split": False, "aggregator": None},
    )
    POLICY_REGISTRY[f"SplAgger-{_label}"] = _scan_policy(
        f"SplAgger{_class}Policy", f"SplAgger with a {_label} encoder in place of the GRU: split + max.",
        {"encoder": _encoder},
    )

del _encoder, _label, _class
