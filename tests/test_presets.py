"""Presets: one per registered id, the paper's reference values, and MetaPPO.from_preset."""

import pytest

import metarl_envs
from metarl_agents.training.config import PRESET_FIELDS, preset_settings
from metarl_agents.training.presets import GRID_KEYS, available_presets, load_preset

# The SplAgger paper's settings: id -> (frames, n_steps, clip, gamma, gae_lambda, entropy, adam_eps, lr annealed)
REFERENCE = {
    "MetaTMaze-v0": (1_500_000, 700, 0.05, 0.95, 0.95, 0.1, 1e-5, False),
    "MetaTMazeLatent-v0": (1_500_000, 700, 0.05, 0.95, 0.95, 0.1, 1e-5, False),
    "MetaTMazeAgreement-v0": (10_000_000, 700, 0.05, 0.95, 0.95, 0.1, 1e-5, False),
    "MetaMinecraftLongShort-v0": (60_000_000, 800, 0.05, 0.95, 0.95, 0.1, 1e-5, True),
    "MetaPlanningGame-v0": (50_000_000, 700, 0.05, 0.95, 0.95, 0.0, 1e-5, False),
    "MetaCheetahDir-v0": (75_000_000, 400, 0.1, 0.97, 0.9, 0.01, 1e-8, False),
    "MetaCheetahVel-v0": (75_000_000, 400, 0.1, 0.97, 0.9, 0.01, 1e-8, False),
}
KEYS = ("frames", "n_steps", "clip_range", "gamma", "gae_lambda", "ent_coef", "adam_eps", "lr_anneal")


def test_every_registered_id_has_a_complete_preset():
    assert set(available_presets()) == set(metarl_envs.REGISTERED_IDS)
    for env_id in metarl_envs.REGISTERED_IDS:
        preset = load_preset(env_id)
        assert preset["env_id"] == env_id
        assert {*GRID_KEYS, *PRESET_FIELDS} <= set(preset) and preset_settings(env_id)["frames"] == preset["frames"]
        assert preset["learning_rate"] in preset["lr_grid"]
        assert preset["n_envs"] % preset["n_minibatches"] == 0


@pytest.mark.parametrize("env_id", sorted(REFERENCE))
def test_reference_values(env_id):
    preset = load_preset(env_id)
    assert tuple(preset[k] for k in KEYS) == REFERENCE[env_id]
    assert (preset["n_envs"], preset["n_epochs"], preset["n_minibatches"]) == (16, 2, 4)
    assert (preset["vf_coef"], preset["max_grad_norm"], preset["reward_clip"]) == (0.5, 0.5, 10.0)
    assert preset["lr_grid"] == [3e-3, 1e-3, 3e-4, 1e-4, 3e-5]
    assert preset["seeds"][:3] == [73, 20, 3]


def test_minecraft_has_the_fourth_seed():
    assert load_preset("MetaMinecraftLongShort-v0")["seeds"] == [73, 20, 3, 99]


def test_load_preset_returns_a_fresh_dict_and_rejects_unknown_ids():
    load_preset("MetaTMaze-v0")["frames"] = 1
    assert load_preset("MetaTMaze-v0")["frames"] == 1_500_000
    with pytest.raises(ValueError, match="no preset for env id 'Nope-v0'"):
        load_preset("Nope-v0")
