"""The run configuration: every field range-checked, presets and overrides, and run keys that never change."""

from __future__ import annotations

import dataclasses
import math

import pytest

from metarl_agents.leaderboard.grid import RunSpec, build_grid
from metarl_agents.leaderboard.store import ResultStore
from metarl_agents.training.build import build_env, build_model
from metarl_agents.training.config import FIELDS, RunConfig, preset_settings

# One bad value per field, and a word of the message that names what is allowed.
BAD = {
    "env_id": ("MetaTMaze-v9", "allowed"), "agent": ("LSTM", "allowed"), "env_kwargs": ([1], "table"),
    "policy_kwargs": ("mlp", "table"), "n_envs": (0, "[1, 65536]"), "n_steps": (0, "[1, 1000000]"),
    "n_epochs": (1.5, "integer"), "n_minibatches": (32, "at most n_envs=16"), "clip_range": (-0.1, "(0, 1]"),
    "gamma": (2, "[0, 1]"), "gae_lambda": (math.nan, "[0, 1]"), "ent_coef": (-1, ">= 0"), "vf_coef": ("0.5", ">= 0"),
    "max_grad_norm": (0, "> 0"), "adam_eps": (math.inf, "> 0"), "learning_rate": (-1e-3, "in (0, 1]"),
    "lr_anneal": (3, "true or false"), "normalize_reward": ("yes", "true or false"),
    "reward_clip": (0.0, "> 0"), "clip_actions": (None, "true or false"), "frames": (math.inf, "[1, "),
    "eval_every": (0, "[1, "), "n_eval_tasks": (0, "[1, 65536]"), "n_final_eval_tasks": (0, "[1, 65536] or none"),
    "stop_at_return": (math.nan, "finite number"),
    "patience": (0, "[1, "), "seed": (-1, "[0, 2147483647]"), "device": ("bogus", "cpu, cuda, cuda:N, mps or auto"),
    "threads": (0, "[1, 1024]"), "protocol": ("reference", "metarl, paper"),
}


def test_every_field_has_a_bad_value_case():
    assert set(BAD) == set(FIELDS)


@pytest.mark.parametrize("name", FIELDS)
def test_each_invalid_setting_is_refused_naming_field_value_and_range(name):
    value, allowed = BAD[name]
    settings = {"stop_at_return": 1.0} if name == "patience" else {}
    with pytest.raises(ValueError) as error:
        if name in ("env_id", "agent"):
            RunConfig(**{"env_id": "MetaTMaze-v0", "agent": "RNN", name: value})
        else:
            RunConfig.from_preset("MetaTMaze-v0", "RNN", **settings, **{name: value})
    message = str(error.value)
    assert name in message and repr(value) in message or str(value) in message
    assert allowed in message and "\n" not in message


def test_cuda_without_cuda_is_an_error_not_a_fallback():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ValueError, match="device 'cuda' is not available: torch sees no CUDA device"):
        RunConfig.from_preset("MetaTMaze-v0", "RNN", device="cuda")


def test_from_preset_takes_the_preset_and_overrides_and_rejects_unknown_settings():
    config = RunConfig.from_preset("MetaCheetahDir-v0", "SplAgger", n_steps=80, frames=1.5e6)
    preset = preset_settings("MetaCheetahDir-v0")
    assert (config.n_steps, config.frames, config.gamma, config.clip_actions) == (80, 1_500_000, preset["gamma"], False)
    assert config.eval_every == preset["eval_every"] and config.n_eval_tasks == preset["n_eval_tasks"] == 16
    assert RunConfig.from_preset("MetaTMaze-v0", "RNN", stop_at_return=15.5).patience == 1
    with pytest.raises(ValueError, match="unknown setting n_stepz; allowed: env_kwargs"):
        RunConfig.from_preset("MetaTMaze-v0", "RNN", n_stepz=3)
    with pytest.raises(ValueError, match="patience=2 needs stop_at_return"):
        RunConfig.from_preset("MetaTMaze-v0", "RNN", patience=2)


def test_build_model_honours_every_trainer_setting_including_n_envs():
    config = RunConfig.from_preset("MetaTMaze-v0", "RNN", n_envs=4, n_steps=10, n_minibatches=2, gamma=0.9,
                                   adam_eps=1e-7, env_kwargs={"length": 5}, policy_kwargs={"head": "mlp"}, seed=5)
    model = build_model(config)
    assert (model.n_envs, model.n_steps, model.n_minibatches, model.gamma, model.seed) == (4, 10, 2, 0.9, 5)
    assert model.policy.optimizer.defaults["eps"] == 1e-7 and model.env.get_attr("core")[0].length == 5


def test_build_env_takes_the_runs_envs_or_the_count_and_seed_asked_for():
    config = RunConfig.from_preset("MetaTMaze-v0", "RNN", n_envs=4, seed=7)
    default, asked = build_env(config), build_env(config, n_envs=2, seed=11)
    try:
        assert (default.num_envs, asked.num_envs) == (4, 2)
    finally:
        default.close()
        asked.close()


# Keys computed by the code before the run configuration existed: the background sweep's store holds such
# runs, and a finished run must be recognised (and skipped) by its key. They trained under the "metarl"
# protocol (the paper presets now default to "paper", which gives other keys: see the test below).
METARL = {"protocol": "metarl"}
GOLDEN = [
    (dict(**METARL, envs=["MetaTMaze-v0"], agents=["SplAgger"], seeds=["73,"], lrs=[1e-3]),
     ["MetaTMaze-v0__SplAgger__seed73__lr0.001__frames1.5M__5c7f5a1a"]),
    (dict(**METARL, envs=["MetaTMaze-v0"], agents=["RNN"], seeds=["2"], lrs=[1e-3], frames=22400, eval_every=5600,
          env_kwargs={"length": 10}, overrides={"n_steps": 100}),
     ["MetaTMaze-v0__RNN__seed73__lr0.001__frames22.4k-REDUCED__098bf993",
      "MetaTMaze-v0__RNN__seed20__lr0.001__frames22.4k-REDUCED__098bf993"]),
    (dict(**METARL, envs=["MetaCheetahDir-v0"], agents=["SplAgger"], seeds=["3,"], lrs=[3e-4], frames=2_000_000),
     ["MetaCheetahDir-v0__SplAgger__seed3__lr0.0003__frames2M-REDUCED__17b8b5e9"]),
    (dict(**METARL, envs=["MetaPlanningGame-v0"], agents=["CNP"], seeds=["20,"], lrs=[3e-5], frames=300_000, n_eval_tasks=8,
          overrides={"ent_coef": 0.05, "lr_anneal": True}),
     ["MetaPlanningGame-v0__CNP__seed20__lr3e-05__frames300k-REDUCED__6df5c4dc"]),
    (dict(**METARL, envs=["MetaTMaze-v0"], agents=["SplAgger"], seeds=["73,"], lrs=[1e-3], stop_at_return=15.5, patience=3),
     ["MetaTMaze-v0__SplAgger__seed73__lr0.001__frames1.5M__6bc1ba2b"]),
]


@pytest.mark.parametrize(("grid", "keys"), GOLDEN, ids=[keys[0].split("__")[0] + str(i) for i, (_, keys) in
                                                       enumerate(GOLDEN)])
def test_run_keys_of_existing_specs_never_change(grid, keys, tmp_path):
    specs = build_grid(**grid)
    assert [spec.run_key for spec in specs] == keys
    with ResultStore(tmp_path / "r.db") as store:  # the key of a stored run reads back the same
        for spec in specs:
            record = store.register_run(spec.store_fields())
            assert record.run_key == spec.run_key and record.spec() == spec
    assert all(spec.config().as_dict()["learning_rate"] == spec.learning_rate for spec in specs)


def test_paper_presets_default_to_the_paper_protocol_under_new_keys_and_stored_runs_stay_metarl(tmp_path):
    """The paper presets train under "paper"; that is part of a run's identity, while a run stored before
    protocols existed (no protocol column) reads back as "metarl" with its old key and resumes as metarl."""
    import sqlite3

    (paper,) = build_grid(["MetaTMaze-v0"], ["SplAgger"], ["73,"], [1e-3])
    (metarl,) = build_grid(**GOLDEN[0][0])
    assert (paper.protocol, metarl.protocol) == ("paper", "metarl") and paper.preset_hash == metarl.preset_hash
    assert metarl.run_key == GOLDEN[0][1][0] and paper.run_key != metarl.run_key
    assert paper.run_key.rsplit("__", 1)[0] == metarl.run_key.rsplit("__", 1)[0]
    assert paper.config().protocol == "paper" and metarl.config().protocol == "metarl"
    assert dataclasses.replace(paper, protocol="metarl") == metarl  # the only difference
    (other,) = build_grid(["MetaTMazeLongShort-v0"], ["RNN"], ["3,"], [1e-3])  # not a paper preset
    assert other.protocol == "metarl"
    db = tmp_path / "old.db"
    with ResultStore(db) as store:
        store.register_run(metarl.store_fields())
    conn = sqlite3.connect(db)
    conn.executescript("ALTER TABLE runs DROP COLUMN protocol; UPDATE schema_version SET version = 3;")
    conn.close()
    with ResultStore(db, readonly=True) as store:
        (old,) = store.runs()
        assert (old.protocol, old.run_key, old.spec()) == ("metarl", metarl.run_key, metarl)
        assert old.spec().config().protocol == "metarl"
    with ResultStore(db) as store:  # the upgrade fills in "metarl"
        (upgraded,) = store.runs()
        assert upgraded.protocol == "metarl" and store.run_by_key(metarl.run_key) == upgraded
        with pytest.raises(KeyError):
            store.run_by_key(paper.run_key)


def test_policy_kwargs_join_a_runs_identity_only_when_set():
    (spec,) = build_grid(["MetaTMaze-v0"], ["RNN"], ["73,"], [1e-3])
    small = dataclasses.replace(spec, policy_kwargs={"head": "mlp"})
    assert small.run_key != spec.run_key and small.run_key.rsplit("__", 1)[0] == spec.run_key.rsplit("__", 1)[0]
    assert RunSpec.columns()["frames"] == "frames_budget" and spec.store_fields()["frames_budget"] == 1_500_000


def test_every_preset_is_a_valid_configuration():
    from metarl_agents.training.presets import available_presets

    for env_id in available_presets():
        config = RunConfig.from_preset(env_id, "SplAgger")
        assert config.env_id == env_id and config.frames == preset_settings(env_id)["frames"]


def test_a_finished_run_of_a_version_2_store_is_recognised_and_skipped(tmp_path):
    """A store written by the code before the run schema was unified (version 2, no policy_kwargs or
    resolved_config columns): its finished runs are found by their keys and not trained again."""
    import sqlite3
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from leaderboard_fakes import FakeTrainer

    from metarl_agents.leaderboard.runner import run_grid

    specs = [spec for grid, _ in GOLDEN[1:3] for spec in build_grid(**grid)]
    db = tmp_path / "v2.db"
    with ResultStore(db) as store:
        for spec in specs:
            record = store.register_run(spec.store_fields())
            store.record_evaluation(record.id, spec.frames, 1.0, [1.0], 2.0, checkpoint_path=None, finished=True)
    conn = sqlite3.connect(db)
    conn.executescript("ALTER TABLE runs DROP COLUMN policy_kwargs; ALTER TABLE runs DROP COLUMN resolved_config; "
                       "ALTER TABLE runs DROP COLUMN n_final_eval_tasks; UPDATE schema_version SET version = 2;")
    conn.close()
    summary = run_grid(specs, db, trainer=FakeTrainer(str(tmp_path / "log")), show_progress=False)
    assert sorted(summary.skipped) == sorted(spec.run_key for spec in specs) and not summary.finished
    assert not (tmp_path / "log").exists()  # nothing was built or trained


# A value other than the MetaTMaze-v0 preset's (or the default) for every field of the configuration.
CHANGED = {
    "env_id": "MetaTMazeLatent-v0", "agent": "SplAgger", "env_kwargs": {"length": 10}, "policy_kwargs": {"head": "mlp"},
    "n_envs": 8, "n_steps": 350, "n_epochs": 3, "n_minibatches": 2, "clip_range": 0.1, "gamma": 0.9, "gae_lambda": 0.9,
    "ent_coef": 0.05, "vf_coef": 0.25, "max_grad_norm": 1.0, "adam_eps": 1e-8, "learning_rate": 3e-3, "lr_anneal": True,
    "normalize_reward": False, "reward_clip": 5.0, "clip_actions": False, "protocol": "metarl", "frames": 700_000,
    "eval_every": 22_400, "n_eval_tasks": 8, "n_final_eval_tasks": 64, "stop_at_return": 15.5, "patience": 2,
    "seed": 20, "device": "auto", "threads": 2,
}


def _spec(**change):
    """The one run of MetaTMaze-v0 x RNN x seed 73 x lr 1e-3 with ``change``, through build_grid as the command
    lines call it."""
    from metarl_agents.training.config import TRAINER_SETTINGS

    axes = {"envs": ["MetaTMaze-v0"], "agents": ["RNN"], "seeds": ["73,"], "lrs": [1e-3]}
    for name, value in change.items():
        if name in ("env_id", "agent", "seed", "learning_rate"):
            axes[{"env_id": "envs", "agent": "agents", "seed": "seeds", "learning_rate": "lrs"}[name]] = \
                [f"{value},"] if name == "seed" else [value]
    settings = {name: value for name, value in change.items() if name not in ("env_id", "agent", "seed", "learning_rate")}
    overrides = {name: settings.pop(name) for name in list(settings) if name in TRAINER_SETTINGS}
    (spec,) = build_grid(**axes, overrides=overrides, **settings)
    return spec


def test_a_run_key_depends_on_the_identity_fields_only():
    from metarl_agents.training.config import META

    assert set(CHANGED) == set(FIELDS)  # a new field must say whether it is part of a run's identity
    base = _spec()
    for name, value in CHANGED.items():
        extra = {"stop_at_return": 15.5} if name == "patience" else {}
        changed = _spec(**extra, **{name: value})
        assert changed.config().as_dict()[name] == value, name
        if extra:  # patience against the same rule with its default patience
            base_for = _spec(**extra)
            assert changed.run_key != base_for.run_key, name
        else:
            assert (changed.run_key != base.run_key) == META[name]["identity"], name
    assert [name for name in FIELDS if not META[name]["identity"]] == ["device", "threads"]


def test_a_stored_run_rebuilds_the_configuration_the_grid_built(tmp_path):
    """A grid's run keeps the configuration it was built with; read back from the store, the run rebuilds the
    same one from its columns; a copy with another field rebuilds its own."""
    specs = [spec for grid, _ in GOLDEN for spec in build_grid(**grid)] + [_spec(**{"n_steps": 350, "n_envs": 8})]
    with ResultStore(tmp_path / "r.db") as store:
        for spec in specs:
            assert spec.config() is spec.config()  # kept, not rebuilt
            read = store.register_run(spec.store_fields()).spec()
            assert read == spec and read.config() == spec.config() and read.config() is not spec.config()
    from unittest import mock

    from metarl_agents.leaderboard.runner import MetaPPOTrainer

    with mock.patch.object(RunConfig, "from_preset", side_effect=AssertionError("rebuilt")):  # nor by the runner
        trainer = MetaPPOTrainer()
        assert trainer.config(specs[0]) is specs[0].config()
        assert trainer.identity(specs[0])["lr"] == specs[0].learning_rate
    changed = dataclasses.replace(specs[0], policy_kwargs={"head": "mlp"})
    assert changed.config().policy_kwargs == {"head": "mlp"} and changed.config().frames == specs[0].frames
    assert specs[0].config(threads=2).threads == 2 and specs[0].config().threads == 1
