"""Run checkpoints from which training continues exactly as if it had never stopped.

A checkpoint holds everything the next PPO update depends on: the policy's parameters and buffers,
the optimiser, the frame and update counters, the rollout position (last observation, trial starts,
memory state), the reward normaliser's statistics, the torch / numpy / ``random`` generators and the
whole state of the training environments (every array, counter and generator of the vector env, its
wrappers and family core, MuJoCo's integration state). A model rebuilt from the run's settings and
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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch as th

from metarl_agents.training import checked_file

FORMAT = "metarl-run-checkpoint"
VERSION = 2  # 2: the SHA-256 of the payload in a header line (1: a bare torch.save)
MAGIC = b"metarl-run-checkpoint v2\n"
_ZIP_MAGIC = b"PK\x03\x04"  # a bare torch.save (format 1)
# Objects of these packages are walked for state; everything else (spaces, specs, modules) is configuration
# rebuilt from the run's settings.
_STATEFUL_PACKAGES = ("metarl_envs", "metarl_agents", "gymnasium", "stable_baselines3", "sb3_contrib")
_SKIP = object()
_BIT_GENERATORS = ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used: unreadable, damaged, or written for another run."""


class CheckpointWarning(UserWarning):
    """A checkpoint written by an older version of the code, resumed with the newer code's defaults."""


# -- environment state -------------------------------------------------------------------------------


def _is_stateful_object(value: Any) -> bool:
    from gymnasium import spaces
    from gymnasium.envs.registration import EnvSpec

    module = type(value).__module__.split(".")[0]
    return (module in _STATEFUL_PACKAGES and hasattr(value, "__dict__")
            and not isinstance(value, (spaces.Space, EnvSpec, th.nn.Module, type)))


def _is_mujoco_state(value: Any) -> bool:
    """MuJoCo's simulation state, which only MuJoCo's own state functions read and write in full."""
    return type(value).__module__.split(".")[0] == "mujoco" and type(value).__name__ in ("MjData", "Batch")


def _encode_plain(value: Any) -> Any:
    """A weights-only-loadable copy of a data value, or ``_SKIP`` if it holds anything else."""
    if isinstance(value, np.generic):  # before float: np.float64 is a float
        return _SKIP if value.dtype.kind not in "biuf" else {"__np_scalar__": value.dtype.str, "value": value.item()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.ndarray):
        return _SKIP if value.dtype == object else th.from_numpy(np.array(value, copy=True))
    if isinstance(value, np.random.Generator):
        return {"__generator__": value.bit_generator.state}
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
        if "__generator__" in value:
            state = value["__generator__"]
            if state.get("bit_generator") not in _BIT_GENERATORS:
                raise CheckpointError(f"unknown random generator {state.get('bit_generator')!r} in the checkpoint")
            generator = np.random.Generator(getattr(np.random, state["bit_generator"])())
            generator.bit_generator.state = state
            return generator
        if "__np_scalar__" in value:
            return np.dtype(value["__np_scalar__"]).type(value["value"])
        return {key: _decode_plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_decode_plain(item) for item in value]
    if isinstance(value, tuple):
        return tuple(_decode_plain(item) for item in value)
    return value


def _slots(root: Any, owners: dict[str, Any] | None = None) -> Iterator[tuple[str, Any, Callable[[Any], None]]]:
    """Every state slot under ``root``: (path, current value, setter), in a fixed order.

    Objects reached twice (the core shared by a vector env and its runner) are walked once, under the
    first path, so a freshly built env of the same configuration yields the same paths. ``owners``
    collects the walked objects by path.
    """
    seen: set[int] = set()
    owners = {} if owners is None else owners

    def walk(obj: Any, path: str) -> Iterator[tuple[str, Any, Callable[[Any], None]]]:
        seen.add(id(obj))
        owners[path] = obj
        for name, value in list(vars(obj).items()):
            yield from visit(value, f"{path}.{name}", lambda v, o=obj, n=name: setattr(o, n, v))

    def visit(value: Any, path: str, setter: Callable[[Any], None]) -> Iterator:
        if id(value) in seen and not isinstance(value, (bool, int, float, str, type(None))):
            return
        if _is_mujoco_state(value):
            seen.add(id(value))
            yield path, value, setter
        elif _is_stateful_object(value):
            yield from walk(value, path)
        elif isinstance(value, (list, tuple)) and value and any(
                _is_stateful_object(v) or _is_mujoco_state(v) for v in value):
            seen.add(id(value))
            for i, item in enumerate(value):
                yield from visit(item, f"{path}[{i}]", lambda v, c=value, i=i: c.__setitem__(i, v))
        elif _encode_plain(value) is not _SKIP:
            yield path, value, setter

    yield from walk(root, "env")


def env_state(env: Any) -> dict[str, Any]:
    """The state of a (vectorised, wrapped) environment as weights-only-loadable values by path."""
    state = {}
    for path, value, _ in _slots(env):
        if _is_mujoco_state(value) and type(value).__name__ == "MjData":
            import mujoco  # only where an env holds MuJoCo data: other families checkpoint without it

            size = mujoco.mj_stateSize(value.model, mujoco.mjtState.mjSTATE_INTEGRATION)
            buffer = np.empty(size)
            mujoco.mj_getState(value.model, value, buffer, mujoco.mjtState.mjSTATE_INTEGRATION)
            # xpos is derived, but observations read it between steps, when it lags the state.
            state[path] = {"__mjdata__": th.from_numpy(buffer), "xpos": th.from_numpy(value.xpos.copy())}
        elif _is_mujoco_state(value):  # a mujoco.batch Batch: every copy's integration state in one array
            state[path] = {"__mjbatch__": th.from_numpy(value.state.copy())}
        else:
            state[path] = _encode_plain(value)
    return state


def restore_env_state(env: Any, state: dict[str, Any]) -> None:
    """Put ``state`` (from :func:`env_state`) into a freshly built env of the same configuration."""
    owners: dict[str, Any] = {}
    slots = {path: (value, setter) for path, value, setter in _slots(env, owners)}
    for path in set(state) - set(slots):  # attributes made on first use (e.g. a generator at the first reset)
        parent, _, name = path.rpartition(".")
        if parent in owners and name.isidentifier():
            slots[path] = (None, lambda v, o=owners[parent], n=name: setattr(o, n, v))
    unknown = sorted(set(state) - set(slots))
    if unknown:
        raise CheckpointError("the checkpoint's environment state does not fit this environment "
                              f"(it holds {unknown[:5]}, which this environment does not have)")
    added = sorted(set(slots) - set(state))
    if added:
        # A newer version of the code added these attributes (derived caches such as an action shape):
        # they keep the values the freshly built env gave them, so runs survive a package upgrade.
        warnings.warn(f"the checkpoint predates environment attributes {added[:5]}; they keep their "
                      "freshly built values", CheckpointWarning, stacklevel=2)
    for path, saved in state.items():
        current, setter = slots[path]
        if _is_mujoco_state(current) and type(current).__name__ == "MjData":
            import mujoco

            mujoco.mj_setState(current.model, current, saved["__mjdata__"].numpy(), mujoco.mjtState.mjSTATE_INTEGRATION)
            current.xpos[:] = saved["xpos"].numpy()
        elif _is_mujoco_state(current):  # a mujoco.batch Batch
            current.state[:] = saved["__mjbatch__"].numpy()
        elif isinstance(current, np.random.Generator):
            current.bit_generator.state = saved["__generator__"]
        elif isinstance(current, np.ndarray) and current.flags.writeable and isinstance(saved, th.Tensor) \
                and tuple(saved.shape) == current.shape:
            current[...] = saved.numpy()  # in place: keeps arrays that other objects share
        elif isinstance(current, np.ndarray) and not current.flags.writeable and current.base is not None:
            # A read-only live view of a field the simulator derives (mujoco.batch's xpos): replacing it
            # with a plain array would freeze it; the next step derives it from the restored state.
            continue
        else:
            setter(_decode_plain(saved))


# -- the whole training state --------------------------------------------------------------------------


def _states_to_lists(states: Any) -> dict[str, list[th.Tensor]]:
    return {"pi": [s.clone() for s in states.pi], "vf": [s.clone() for s in states.vf]}


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
        "last_states": None if model._last_states is None else _states_to_lists(model._last_states),
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


def restore_training_state(model: Any, state: dict[str, Any]) -> None:
    """Load ``state`` (from :func:`training_state`) into a model freshly built with the run's settings."""
    from sb3_contrib.common.recurrent.type_aliases import RNNStates

    try:
        model.policy.load_state_dict(state["policy"])
        if state.get("final"):
            model.num_timesteps, model._n_updates = state["num_timesteps"], state["n_updates"]
            return
        model.policy.optimizer.load_state_dict(state["optimizer"])
    except (KeyError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"the checkpoint does not fit this run's model ({str(exc).splitlines()[0]})") from exc
    model.num_timesteps = state["num_timesteps"]
    model._n_updates = state["n_updates"]
    model._last_obs = _decode_plain(state["last_obs"])
    model._last_episode_starts = _decode_plain(state["last_episode_starts"])
    saved_states = state["last_states"]
    model._last_states = None if saved_states is None else RNNStates(
        tuple(s.to(model.device) for s in saved_states["pi"]), tuple(s.to(model.device) for s in saved_states["vf"]))
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
        raise CheckpointError(
            f"checkpoint {path} belongs to another run (differs in {', '.join(differ)}: "
            f"{ {k: (saved or {}).get(k) for k in differ} } vs this run's { {k: identity.get(k) for k in differ} })"
        )
    return payload["state"]
