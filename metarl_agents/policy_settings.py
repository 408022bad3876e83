"""The ranges of the policy kwargs, checked when a policy is built, before any layer is allocated.

A bad value used to surface in one of three ways: a raw torch traceback (``head_state_dim=-1``), a run
that failed after minutes (``hyper_dim=0``, ``obs_clip=nan``, a softmax ``temperature`` so small that
its weights underflow), or, worst, a run that trained on nothing (``obs_clip=0`` clips every state to
zero). Every kwarg of :class:`metarl_agents.policies.PolicyConfig` is checked here instead, with the
one-line messages of :class:`metarl_agents.training.RunConfig` (``name must be ..., got ...``).
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Mapping
from typing import Any

import torch as th

from metarl_agents.memory import ENCODERS
from metarl_agents.memory.aggregators import aggregator_class
from metarl_agents.value_check import check_setting
from metarl_envs.sizes import check_fits_in_memory

#: Widest layer (far above the paper's 256; a GRU this wide already holds 200 M weights).
MAX_WIDTH = 8192
#: Widest hypernetwork input: each generated layer holds ``(hyper_dim + 1)`` copies of its weights.
MAX_HYPER_DIM = 1024
MAX_LAYERS = 16
#: Bytes a parameter costs while training: the weight, its gradient and Adam's two moments (float32).
BYTES_PER_PARAMETER = 16
HEADS = ("hyper", "mlp")
START_LATENTS = ("encode", "prior")
CRITIC_INITS = ("torch", "reference")
#: settings that name one of a few choices
CHOICES = {"head": HEADS, "start_latent": START_LATENTS, "critic_init": CRITIC_INITS}
#: ``(kind, low, high, low_open)`` of the aggregators' settings. The softmax weights are ``exp(-3/T)``
#: at their floor: below ``T = 0.05`` that underflows float32 and the aggregate becomes 0/0.
AGGREGATOR_SETTINGS = {
    "temperature": (float, 0.05, 1e6, False),
    "kl_weight": (float, 0.0, 1e6, False),
    "min_precision": (float, 1e-6, 1e6, False),
}
#: ``(kind, low, high)`` of the settings checked field by field (the rest are checked below).
RANGES: dict[str, tuple[type, float | None, float | None]] = {
    "encoder_hidden": (int, 1, MAX_WIDTH),
    "latent_dim": (int, 1, MAX_WIDTH),
    "state_embed": (int, 1, MAX_WIDTH),
    "head_state_dim": (int, 1, MAX_WIDTH),
    "hyper_dim": (int, 1, MAX_HYPER_DIM),
    # in standard deviations of the running normalisation; below one most states are clipped flat
    "obs_clip": (float, 1.0, 1e6),
    "log_std_init": (float, -20.0, 5.0),
    "split": (bool, None, None),
    "head_bf16": (bool, None, None),
}
#: The same for the settings that may also be None.
OPTIONAL_RANGES: dict[str, tuple[type, float | None, float | None]] = {
    "action_embed": (int, 1, MAX_WIDTH),
    "reward_embed": (int, 1, MAX_WIDTH),
    "aggregator": (str, None, None),
    "encoder_kwargs": (dict, None, None),
    "aggregator_kwargs": (dict, None, None),
    "optimizer_kwargs": (dict, None, None),
    "memory_optimizer_kwargs": (dict, None, None),
}


def check_policy_config(config: Any, layout: Mapping[str, Any], discrete: bool) -> Any:
    """``config`` (a ``PolicyConfig``) with every known field checked and normalised, else ``ValueError``.

    ``layout`` is the transition layout the policy reads and ``discrete`` whether its actions are
    Discrete: together they size the network, whose training memory is checked last.
    """
    values = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    checked = {name: check_setting(name, values[name], kind, low, high, optional=name in OPTIONAL_RANGES)
               for name, (kind, low, high) in {**RANGES, **OPTIONAL_RANGES}.items()}
    for name, allowed in {"encoder": ENCODERS, **CHOICES}.items():
        if values[name] not in allowed:
            raise ValueError(f"{name} must be one of {list(allowed)}, got {values[name]!r}")
    checked["net_arch"] = _net_arch(values["net_arch"])
    if checked["head_bf16"] and values["head"] != "hyper":
        raise ValueError(f"head_bf16=True applies to the hypernetwork head only, got head={values['head']!r}")
    checked["encoder_kwargs"] = _encoder_kwargs(checked["encoder_kwargs"])
    if checked["aggregator"] is not None:
        aggregator_class(checked["aggregator"])  # a ValueError naming the allowed aggregators
    checked["aggregator_kwargs"] = _aggregator_kwargs(checked["aggregator"], checked["aggregator_kwargs"])
    _check_optimizer(values["optimizer_class"], checked["optimizer_kwargs"])
    # the memory's parameter group: its own learning rate is allowed
    _check_optimizer(values["optimizer_class"], checked["memory_optimizer_kwargs"], "memory_optimizer_kwargs", ("params",))
    config = dataclasses.replace(config, **checked)
    count = parameter_count(config, layout, discrete)  # the training memory of the network it sizes
    check_fits_in_memory(
        f"a policy of about {count:,} parameters (encoder_hidden={config.encoder_hidden}, net_arch="
        f"{list(config.net_arch)}, head_state_dim={config.head_state_dim}, hyper_dim={config.hyper_dim})",
        count * BYTES_PER_PARAMETER, "use smaller layers")
    return config


def _net_arch(arch: Any) -> tuple[int, ...]:
    if isinstance(arch, (list, tuple)) and len(arch) <= MAX_LAYERS:
        try:
            return tuple(check_setting("net_arch", n, int, 1, MAX_WIDTH) for n in arch)
        except ValueError:
            pass
    raise ValueError(f"net_arch must be a list of at most {MAX_LAYERS} layer sizes in [1, {MAX_WIDTH}] (shared by "
                     f"actor and critic), got {arch!r}")


def _encoder_kwargs(kwargs: dict[str, Any] | None) -> dict[str, Any] | None:
    """Sizes in ``[1, MAX_WIDTH]``, other numbers finite (which keys an encoder takes, it checks itself)."""
    if kwargs is None:
        return None
    for key, value in kwargs.items():
        if value is None or isinstance(value, str):
            continue
        kind = int if isinstance(value, int) and not isinstance(value, bool) else float
        kwargs[key] = check_setting(f"encoder_kwargs[{key!r}]", value, kind, *((1, MAX_WIDTH) if kind is int else ()))
    return kwargs


def _aggregator_kwargs(aggregator: str | None, kwargs: dict[str, Any] | None) -> dict[str, Any] | None:
    if not kwargs:
        return kwargs
    if aggregator is None:
        raise ValueError(f"aggregator_kwargs {kwargs!r} need an aggregator, got aggregator=None")
    cls = aggregator_class(aggregator)
    allowed = [name for name in inspect.signature(cls.__init__).parameters if name not in ("self", "in_dim")]
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ValueError(f"aggregator_kwargs {unknown} are not settings of aggregator {aggregator!r}; allowed: {allowed}")
    for key, value in kwargs.items():
        kind, low, high, low_open = AGGREGATOR_SETTINGS.get(key, (float, None, None, False))
        kwargs[key] = check_setting(f"aggregator_kwargs[{key!r}]", value, kind, low, high, low_open=low_open)
    return kwargs


def _check_optimizer(optimizer_class: Any, kwargs: dict[str, Any] | None, name: str = "optimizer_kwargs",
                     reserved: tuple[str, ...] = ("params", "lr")) -> None:
    if not (isinstance(optimizer_class, type) and issubclass(optimizer_class, th.optim.Optimizer)):
        raise ValueError(f"optimizer_class must be a torch.optim.Optimizer subclass, got {optimizer_class!r}")
    if not kwargs:
        return
    parameters = inspect.signature(optimizer_class.__init__).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    allowed = [key for key in parameters if key not in ("self", *reserved)]
    bad = sorted(key for key in kwargs if key in reserved or not (takes_any or key in allowed))
    if bad:
        why = "the policy passes its parameters" + (", and the learning rate is the run's learning_rate"
                                                     if "lr" in reserved else "")
        raise ValueError(f"{name} may not set {bad} for {optimizer_class.__name__} ({why}); allowed: {allowed}")


def parameter_count(config: Any, layout: Mapping[str, Any], discrete: bool) -> int:
    """The number of weights the policy will hold (an estimate within a few per cent; the layers dominate)."""
    obs, act, hidden = layout["obs_dim"], layout["act_dim"], config.encoder_hidden
    small = 8 if discrete else 16
    embed = 2 * config.state_embed + (config.action_embed or small) + (config.reward_embed or small)
    count = obs * config.state_embed + act * (config.action_embed or small) + (config.reward_embed or small)
    if config.encoder == "gru":
        count += 3 * hidden * (embed + hidden + 2)
    elif config.encoder == "linear":
        count += (embed + 1) * hidden
    else:  # a scan encoder: a few projections of about this size (an estimate on the large side)
        sizes = [v for v in (config.encoder_kwargs or {}).values() if isinstance(v, int) and not isinstance(v, bool)]
        count += 4 * (embed + hidden) * (hidden + max(sizes, default=0))
    count += hidden * config.latent_dim * 2 + obs * config.head_state_dim
    if config.head == "hyper":  # every base layer generated as hyper_dim + 1 copies, from e = tanh(Linear(latent))
        count += config.latent_dim * config.hyper_dim
        first, copies = config.head_state_dim, config.hyper_dim + 1
    else:
        first, copies = config.head_state_dim + config.latent_dim, 1
    for out in (act, 1):  # actor and critic
        sizes = [first, *config.net_arch, out]
        count += sum((a + 1) * b * copies for a, b in zip(sizes[:-1], sizes[1:], strict=True))
    return count
