"""A trained model as a file that cannot run code when it is loaded: weights plus a JSON configuration.

SB3's ``.zip`` format (``MetaPPO.save`` / ``MetaPPO.load``, ``RecurrentPPO.load``) stores parts of the model
as cloudpickle, and loading one runs whatever code the file's author put there: load a ``.zip`` only from
a source you trust as you would trust a program. :func:`save_model` writes the safe alternative, which
``metarl-train`` writes as ``model.pt``: the policy's weights, the frame count, and the run's
:class:`~metarl_agents.training.config.RunConfig` as JSON text, in a file with its own SHA-256
(:mod:`.checked_file`). :func:`load_model` rebuilds the model from the configuration and loads the weights
with ``torch.load(weights_only=True)``: it never unpickles anything but tensors and plain values, and it
refuses an SB3 ``.zip`` outright.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from metarl_agents.training import checked_file
from metarl_agents.training.config import FIELDS, RunConfig

MAGIC = b"metarl-model v1\n"
FORMAT = "metarl-model"
VERSION = 1
_ZIP_MAGIC = b"PK\x03\x04"


def save_model(model: Any, config: RunConfig, path: str | Path) -> None:
    """Write ``model`` (a :class:`~metarl_agents.training.ppo.MetaPPO` built from ``config``, e.g. by
    :func:`~metarl_agents.training.build.build_model`) to ``path`` in the safe format, atomically."""
    try:
        description = json.dumps(config.as_dict(), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"the configuration cannot be written as JSON ({exc}): save_model needs policy and env "
                         "kwargs of plain values (numbers, strings, lists, tables)") from None
    state = {key: value.detach().cpu() for key, value in model.policy.state_dict().items()}
    payload = {"format": FORMAT, "version": VERSION, "config": description,
               "num_timesteps": int(model.num_timesteps), "policy": state}
    checked_file.write(Path(path), payload, MAGIC)


def read_config(path: str | Path) -> RunConfig:
    """The configuration a model file was trained with, without building the model."""
    return _config(_payload(Path(path)), Path(path))


def load_model(path: str | Path, device: str = "cpu") -> Any:
    """The :class:`~metarl_agents.training.ppo.MetaPPO` saved in ``path`` by :func:`save_model`, with its
    training envs rebuilt from the configuration, on ``device``; ``ValueError`` for any other file."""
    from metarl_agents.training.build import build_model

    path = Path(path)
    payload = _payload(path)
    config = _config(payload, path).replace(device=device)
    model = build_model(config)
    try:
        model.policy.load_state_dict(payload["policy"])
    except (KeyError, RuntimeError, TypeError) as exc:
        raise ValueError(f"{path}: the weights do not fit the model its configuration builds "
                         f"({str(exc).splitlines()[0]})") from None
    model.num_timesteps = int(payload.get("num_timesteps", 0))
    return model


def _payload(path: Path) -> dict[str, Any]:
    raw = path.read_bytes()
    if raw.startswith(_ZIP_MAGIC):
        raise ValueError(
            f"{path} is a .zip archive (SB3's format), not a metarl model file; it was not loaded. Loading an SB3 "
            ".zip runs the code stored in it: only if you trust its source, use MetaPPO.load (and save it with "
            "metarl_agents.save_model to get a file that is safe to share)")
    payload = checked_file.decode(raw, MAGIC, str(path))  # a CheckedFileError is a ValueError
    if not isinstance(payload, dict) or payload.get("format") != FORMAT or payload.get("version") != VERSION:
        raise ValueError(f"{path} is not a metarl model file of version {VERSION}")
    return payload


def _config(payload: dict[str, Any], path: Path) -> RunConfig:
    try:
        values = json.loads(payload["config"])
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"{path}: its configuration is not valid JSON") from None
    if not isinstance(values, dict) or not set(values) <= set(FIELDS):
        raise ValueError(f"{path}: its configuration holds settings this metarl does not know "
                         f"({sorted(set(values) - set(FIELDS)) if isinstance(values, dict) else values!r})")
    return RunConfig(**values)  # checks every value, as for a run
