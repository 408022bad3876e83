"""Run checkpoints from which training continues exactly as if it had never stopped.

A checkpoint holds everything the next PPO update depends on: the policy's parameters and buffers,
the optimiser, the frame and update counters, the rollout position (last observation, trial starts,
memory state), the reward normaliser's statistics, the torch / numpy / ``random`` generators and the
state of the training environments as each layer owns it (``state_dict()`` of the vector env, its
wrappers, trial runner and family core, MuJoCo's integration state included). A model rebuilt from the run's settings and
loaded from it therefore produces bit for bit the same evaluation points as the uninterrupted run.

The file is a header line, the SHA-256 of the payload and the payload, a ``torch.save`` of tensors and
Python values (:mod:`metarl_agents.training.checked_file`). The digest is checked before the payload is
loaded, with ``weights_only=True``, so a damaged checkpoint is refused and a checkpoint can never run code.
It names its run (the run's identity and settings) and is refused for any other run.
"""

from __future__ import annotations

import io
import random
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch as th

from metarl_agents.training import checked_file
from metarl_agents.training.errors import CheckpointError  # noqa: F401 - raised here, public here

FORMAT = "metarl-run-checkpoint"
VERSION = 2  # 2: the SHA-256 of the payload in a header line (1: a bare torch.save)
MAGIC = b"metarl-run-checkpoint v2\n"
_ZIP_MAGIC = b"PK\x03\x04"  # a bare torch.save (format 1)
_SKIP = object()


class CheckpointWarning(UserWarning):
    """A checkpoint written by an older version of the code, resumed with the newer code's defaults."""


# -- environment state -------------------------------------------------------------------------------


def _encode_plain(value: Any) -> Any:
    """A weights-only-loadable copy of a data value, or ``_SKIP`` if it holds anything else."""
    if isinstance(value, np.generic):  # before float: np.float64 is a float
        return _SKIP if value.dtype.kind not in "biuf" else {"__np_scalar__": value.dtype.str, "value": value.item()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.ndarray):
        return _SKIP if value.dtype == object else th.from_numpy(np.array(value, copy=True))
    if isinstance(value, (list, tuple)):
        items = [_encode_plain(item) for item in value]
        if any(item is _SKIP for item in items):
            return _SKIP
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, dict) and all(isinstance(key, str) for key in value):
        items = {key: _encode_plain(item) for key, item in value.items()}
        return _SKIP if any(item is _SKIP for item in items.values()) else items
    return _SKIP


def _decode_plain(value: Any) -> Any:
    if isinstance(value, th.Tensor):
        return value.numpy().copy()
    if isinstance(value, dict):
        if "__np_scalar__" in value:
            return np.dtype(value["__np_scalar__"]).type(value["value"])
        return {key: _decode_plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_decode_plain(item) for item in value]
    if isinstance(value, tuple):
        return tuple(_decode_plain(item) for item in value)
    return value


def env_state(env: Any) -> dict[str, Any]:
    """The state of a (vectorised, wrapped) environment, as its layers own it (``env.state_dict()``),
    in weights-only-loadable values."""
    if not callable(getattr(env, "state_dict", None)):
        raise CheckpointError(f"{type(env).__name__} does not expose state_dict(): its state cannot be checkpointed")
    state = _encode_plain(env.state_dict())
    if state is _SKIP:
        raise CheckpointError(f"{type(env).__name__}.state_dict() holds values a checkpoint cannot store "
                              "(allowed: numeric arrays, numbers, strings, None, and lists / dicts of those)")
    return state


def restore_env_state(env: Any, state: dict[str, Any]) -> None:
    """Put ``state`` (from :func:`env_state`, or from the format before envs owned their state) into a
    freshly built env of the same configuration."""
    owned = _from_attribute_paths(state, env.state_dict()) if _is_attribute_paths(state) else _decode_plain(state)
    try:
        env.load_state_dict(owned)
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"the checkpoint's environment state does not fit this environment ({exc})") from exc


def _is_attribute_paths(state: dict[str, Any]) -> bool:
    """Whether ``state`` is in the first format: every attribute of every layer by path (``env.venv.t``)."""
    return bool(state) and all(isinstance(key, str) and key.startswith("env.") for key in state)


def _from_attribute_paths(state: dict[str, Any], fresh: dict[str, Any]) -> dict[str, Any]:
    """The first format's values nested by attribute name, which is how the layers name their state.

    Attributes it lacks (state added to the code later, or a class default never set on the instance)
    keep the freshly built env's values; a warning names those that are not None.
    """
    nested: dict[str, Any] = {}
    for path, value in state.items():
        *parents, name = path.split(".")[1:]
        node = nested
        for parent in parents:
            node = node.setdefault(parent, {})
        if isinstance(value, dict) and "__mjbatch__" in value:  # a mujoco Batch: the core's ``state``
            name, value = "state", value["__mjbatch__"]
        elif isinstance(value, dict) and "__generator__" in value:
            value = value["__generator__"]
        node[name] = _decode_plain(value)
    filled = _fill_missing(nested, fresh, "env")
    if filled:
        warnings.warn(f"the checkpoint predates environment state {filled[:5]}; it keeps its freshly built values",
                      CheckpointWarning, stacklevel=3)
    return nested


def _fill_missing(saved: dict[str, Any], fresh: dict[str, Any], path: str) -> list[str]:
    filled = []
    for key, value in fresh.items():
        if key not in saved:
            saved[key] = value
            filled += [] if value is None else [f"{path}.{key}"]
        elif isinstance(value, dict) and isinstance(saved[key], dict) and "bit_generator" not in value:
            filled += _fill_missing(saved[key], value, f"{path}.{key}")
    return filled


# -- the whole training state --------------------------------------------------------------------------


def training_state(model: Any, final: bool = False) -> dict[str, Any]:
    """Everything a :class:`~metarl_agents.ppo.MetaPPO` needs to continue exactly where it is.

    ``final``: the run is over, so only the trained policy is kept (a third of the size: no optimiser state).
    """
    if final:
        return {"num_timesteps": int(model.num_timesteps), "n_updates": int(model._n_updates), "final": True,
                "policy": model.policy.state_dict()}
    normalizer = model.reward_normalizer
    numpy_rng = np.random.get_state()
    return {
        "num_timesteps": int(model.num_timesteps),
        "n_updates": int(model._n_updates),
        "policy": model.policy.state_dict(),
        "optimizer": model.policy.optimizer.state_dict(),
        "last_obs": _encode_plain(model._last_obs),
        "last_episode_starts": _encode_plain(model._last_episode_starts),
        "last_states": None if model._last_states is None else model._last_states.clone(),
        "reward_normalizer": None if normalizer is None else {
            "mean": _encode_plain(normalizer.return_rms.mean), "var": _encode_plain(normalizer.return_rms.var),
            "count": float(normalizer.return_rms.count), "returns": _encode_plain(normalizer.returns),
        },
        "env": env_state(model.get_env()),
        "rng": {
            "torch": th.get_rng_state(),
            "cuda": th.cuda.get_rng_state_all() if model.device.type == "cuda" else None,
            "numpy": (numpy_rng[0], th.from_numpy(numpy_rng[1].copy()), *numpy_rng[2:]),
            "python": random.getstate(),
        },
    }


def _memory_state(policy: Any, saved: th.Tensor | dict[str, list[th.Tensor]] | None) -> th.Tensor | None:
    """The policy's flat memory state ``[n_envs, state_size]`` from a checkpoint; checkpoints written before the
    memory-policy contract hold it packed as an LSTM's ``{"pi": [h, c], "vf": [h, c]}``, unpacked here."""
    if isinstance(saved, dict):
        saved = policy._unpack(saved["pi"])
    return None if saved is None else saved.to(policy.device)


def restore_training_state(model: Any, state: dict[str, Any]) -> None:
    """Load ``state`` (from :func:`training_state`) into a model freshly built with the run's settings."""
    try:
        model.policy.load_state_dict(state["policy"])
        model.num_timesteps, model._n_updates = state["num_timesteps"], state["n_updates"]
        if state.get("final"):
            return
        model.policy.optimizer.load_state_dict(state["optimizer"])
    except (KeyError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"the checkpoint does not fit this run's model ({str(exc).splitlines()[0]})") from exc
    model._last_obs = _decode_plain(state["last_obs"])
    model._last_episode_starts = _decode_plain(state["last_episode_starts"])
    model._last_states = _memory_state(model.policy, state["last_states"])
    normalizer, saved = model.reward_normalizer, state["reward_normalizer"]
    if (normalizer is None) != (saved is None):
        raise CheckpointError("the checkpoint's reward normalisation does not match this run's settings")
    if saved is not None:
        normalizer.return_rms.mean = _decode_plain(saved["mean"])
        normalizer.return_rms.var = _decode_plain(saved["var"])
        normalizer.return_rms.count = saved["count"]
        normalizer.returns = _decode_plain(saved["returns"])
    restore_env_state(model.get_env(), state["env"])
    rng = state["rng"]
    th.set_rng_state(rng["torch"])
    if rng["cuda"] is not None:
        th.cuda.set_rng_state_all(rng["cuda"])
    kind, keys, *rest = rng["numpy"]
    np.random.set_state((kind, keys.numpy(), *rest))
    random.setstate(_as_tuples(rng["python"]))


def _as_tuples(value: Any) -> Any:
    return tuple(_as_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


# -- files ------------------------------------------------------------------------------------------------


def write_checkpoint(path: Path, identity: dict[str, Any], state: dict[str, Any]) -> None:
    """Write atomically (temporary file, fsync, rename), with the payload's SHA-256 in the file's header; a
    failed write leaves no temporary file behind."""
    checked_file.write(Path(path), {"format": FORMAT, "version": VERSION, "identity": identity, "state": state},
                       MAGIC)


def read_checkpoint(path: Path, identity: dict[str, Any]) -> dict[str, Any]:
    """The training state saved in ``path`` for the run ``identity``; :class:`CheckpointError` otherwise.

    The digest is checked before anything is unpickled, so a damaged file is refused rather than resumed
    with other weights. A checkpoint of the first format (a bare ``torch.save``, no digest) is still read,
    with a :class:`CheckpointWarning`, so a sweep interrupted before an upgrade resumes.
    """
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise CheckpointError(f"checkpoint {path} is unreadable ({exc.strerror or exc})") from exc
    try:
        if raw.startswith(_ZIP_MAGIC):
            warnings.warn(f"checkpoint {path} predates checkpoint digests: damage to it cannot be detected",
                          CheckpointWarning, stacklevel=2)
            payload = th.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
            expected_version = 1
        else:
            payload = checked_file.decode(raw, MAGIC, f"checkpoint {path}")
            expected_version = VERSION
    except checked_file.CheckedFileError as exc:
        raise CheckpointError(str(exc)) from exc
    except Exception as exc:  # torch raises many kinds for a truncated or foreign file
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"checkpoint {path} is unreadable or damaged ({reason})") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a metarl run checkpoint")
    if payload.get("version") != expected_version:
        raise CheckpointError(f"checkpoint {path} has format version {payload.get('version')}, this metarl reads "
                              f"{VERSION}")
    saved = payload.get("identity")
    # A setting added to the run schema after the checkpoint was written is absent from it, which is the
    # same as unset (None): such a checkpoint still belongs to its run.
    differ = sorted(k for k in set(saved or {}) | set(identity) if (saved or {}).get(k) != identity.get(k))
    if not isinstance(saved, dict) or differ:
        raise CheckpointError(f"checkpoint {path} belongs to another run (differs in {', '.join(differ)}: "
                              f"{ {k: (saved or {}).get(k) for k in differ} } vs this run's "
                              f"{ {k: identity.get(k) for k in differ} })")
    return payload["state"]
