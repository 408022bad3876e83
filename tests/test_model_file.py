"""The safe model file: an exact round trip, and crafted files that are never unpickled."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import pickle
import zipfile

import numpy as np
import pytest
import torch as th

from metarl_agents.training.build import build_model
from metarl_agents.training.config import RunConfig
from metarl_agents.training.model_file import MAGIC, load_model, read_config, save_model
from metarl_agents.training.ppo import MetaPPO
from metarl_agents.training.vec_env import make_vec_env

ENV_KWARGS = {"length": 5, "episode_limit": 12, "episodes_per_trial": 2}
POLICY = {"encoder_hidden": 16, "head": "mlp", "net_arch": [16], "head_state_dim": 8}


class MakesADirectory:
    """A pickle that creates ``path`` when it is unpickled: what an attacker's file would do, harmlessly."""

    def __init__(self, path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return os.mkdir, (self.path,)


def _trained(seed: int = 1):
    config = RunConfig.from_preset("MetaTMaze-v0", "RNN", seed=seed, n_envs=4, n_steps=8, n_minibatches=2,
                                   env_kwargs=ENV_KWARGS, policy_kwargs=POLICY)
    model = build_model(config)
    model.learn(64)
    return config, model


def _actions(model, steps: int = 30) -> np.ndarray:
    env = make_vec_env("MetaTMaze-v0", 2, seed=5, **ENV_KWARGS)
    obs, state, start = env.reset(), None, np.ones(2, dtype=bool)
    actions = []
    for _ in range(steps):
        action, state = model.predict(obs, state=state, episode_start=start, deterministic=True)
        obs, _, start, _ = env.step(action)
        actions.append(action)
    return np.array(actions)


def test_safe_format_round_trips_a_trained_model_exactly(tmp_path):
    config, model = _trained()
    path = tmp_path / "model.pt"
    save_model(model, config, path)
    assert path.read_bytes().startswith(MAGIC)
    assert read_config(path) == config
    loaded = load_model(path)
    assert isinstance(loaded, MetaPPO) and loaded.num_timesteps == model.num_timesteps == 64
    original, restored = model.policy.state_dict(), loaded.policy.state_dict()
    assert original.keys() == restored.keys() and all(th.equal(original[k], restored[k]) for k in original)
    np.testing.assert_array_equal(_actions(loaded), _actions(model))
    assert len(np.unique(_actions(model))) > 1  # the comparison sees more than one action


def _crafted_sb3_zip(path, marker) -> None:
    """An SB3 model archive whose ``data`` entry holds a cloudpickle that creates ``marker``."""
    evil = base64.b64encode(pickle.dumps(MakesADirectory(marker))).decode()
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("data", json.dumps({"policy_class": {":type:": "<class 'type'>", ":serialized:": evil}}))
        archive.writestr("_stable_baselines3_version", "2.0.0")


@pytest.mark.parametrize("name", ["model.zip", "model.pt"])
def test_crafted_sb3_zip_is_never_unpickled_by_the_safe_loader(tmp_path, name):
    marker = tmp_path / "attacker-was-here"
    crafted = tmp_path / name
    _crafted_sb3_zip(crafted, marker)
    with pytest.raises(ValueError, match="SB3's format.*it was not loaded.*runs the code stored in it"):
        load_model(crafted)
    assert not marker.exists()
    # The file is a live exploit for SB3's own loader, which is why only trusted .zip files may be loaded.
    with pytest.raises(Exception):  # noqa: B017  (it fails after running the payload)
        MetaPPO.load(crafted)
    assert marker.is_dir()


def test_crafted_pickle_behind_a_valid_header_and_digest_is_refused(tmp_path):
    marker = tmp_path / "attacker-was-here"
    buffer = io.BytesIO()
    th.save({"format": "metarl-model", "version": 1, "config": "{}", "policy": MakesADirectory(marker)}, buffer)
    data = buffer.getvalue()
    crafted = tmp_path / "model.pt"
    crafted.write_bytes(MAGIC + hashlib.sha256(data).hexdigest().encode() + b"\n" + data)
    with pytest.raises(ValueError, match="cannot load as weights only"):
        load_model(crafted)
    assert not marker.exists()


def test_damaged_model_file_is_refused(tmp_path):
    config, model = _trained()
    path = tmp_path / "model.pt"
    save_model(model, config, path)
    raw = bytearray(path.read_bytes())
    raw[-200] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="is damaged: its SHA-256 does not match"):
        load_model(path)
