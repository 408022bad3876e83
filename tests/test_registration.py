"""Registration: ``gymnasium.make(id, episodes_per_trial=k)`` gives k inner episodes per trial for every family,
with no registered step limit in the way; and the light modules load without torch."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import metarl_envs

ROOT = Path(__file__).parents[1]
# Frozen Lake needs a one-hot observation for the episode-boundary flag of several episodes per trial.
EXTRA = {"MetaFrozenLake-v0": {"observation": "onehot"}, "MetaFrozenLakePenalty-v0": {"observation": "onehot"}}


def _trial(env: gym.Env, seed: int) -> tuple[int, int, bool, bool]:
    """(inner episodes, steps, terminated, truncated) of one trial under random actions."""
    env.reset(seed=seed)
    env.action_space.seed(seed)
    episodes = steps = 0
    while True:
        _, _, terminated, truncated, info = env.step(env.action_space.sample())
        steps += 1
        episodes += bool(info.get("episode_end"))
        if terminated or truncated:
            return episodes, steps, terminated, truncated


@pytest.mark.parametrize("env_id", metarl_envs.REGISTERED_IDS)
def test_episodes_per_trial_in_make_is_honoured_without_a_registered_limit(env_id):
    assert gym.spec(env_id).max_episode_steps is None
    k = 3
    env = gym.make(env_id, episodes_per_trial=k, **EXTRA.get(env_id, {}))
    limit = env.unwrapped.core.per_episode_limit
    assert env.spec.max_episode_steps == env.unwrapped.max_trial_steps == k * limit  # follows the env's kwargs
    layer = env
    while isinstance(layer, gym.Wrapper):
        assert not isinstance(layer, gym.wrappers.TimeLimit)
        layer = layer.env
    episodes, steps, _, _ = _trial(env, seed=1)
    assert episodes == k and steps <= k * limit
    vector = gym.make_vec(env_id, num_envs=2, vectorization_mode="vector_entry_point", episodes_per_trial=k,
                          **EXTRA.get(env_id, {}))
    vector.reset(seed=1)
    ends = np.zeros(2, dtype=int)
    for _ in range(k * limit):
        _, _, terminated, truncated, info = vector.step(vector.action_space.sample())
        ends += info.get("episode_end", np.zeros(2, bool)) & ~(terminated | truncated)
        if (terminated | truncated).any():
            break
    assert (ends <= k - 1).all()  # never a trial cut short before its k-th episode by a step limit


@pytest.mark.parametrize("env_id", ["MetaCheetahDir-v0", "MetaCheetahVel-v0"])
def test_mujoco_trials_run_every_episode(env_id):
    """The registered 200-step limit used to cut every Cheetah trial after its first episode."""
    env = gym.make(env_id, episodes_per_trial=2)
    episodes, steps, terminated, truncated = _trial(env, seed=0)
    assert (episodes, steps, terminated, truncated) == (2, 400, False, True)  # a time limit, the env's own


def test_tmaze_with_eight_episodes_per_trial():
    env = gym.make("MetaTMaze-v0", episodes_per_trial=8, length=10)
    assert _trial(env, seed=0)[0] == 8


def test_light_modules_import_without_torch():
    code = ("import sys, metarl_envs, metarl_agents, metarl_agents.leaderboard.report, metarl_agents.cli.bench, "
            "metarl_agents.training.errors, metarl_agents.training.memory_policy, metarl_agents.leaderboard.runner, "
            "metarl_agents.training.config, metarl_agents.value_check, metarl_agents.leaderboard.grid;"
            "from metarl_agents.training.errors import CheckpointError, TrainingDivergedError;"
            "heavy = [m for m in ('torch', 'stable_baselines3', 'sb3_contrib', 'mujoco') if m in sys.modules];"
            "assert not heavy, heavy")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr


def test_the_errors_the_runner_catches_are_the_ones_training_and_checkpoints_raise():
    """The runner catches them by type from the torch-free module; the heavy modules raise the same classes."""
    from metarl_agents.leaderboard import checkpoint, runner
    from metarl_agents.training import errors, ppo

    assert checkpoint.CheckpointError is runner.CheckpointError is errors.CheckpointError
    assert ppo.TrainingDivergedError is runner.TrainingDivergedError is errors.TrainingDivergedError


@pytest.mark.parametrize("old", ["metarl_agents.ppo", "metarl_agents.sequence", "metarl_agents.presets",
                                 "metarl_agents.leaderboard.cli"])
def test_old_module_paths_are_gone(old):
    """The package was never released under them: no alias keeps a second name for a module alive."""
    with pytest.raises(ModuleNotFoundError, match=old.replace(".", r"\.")):
        importlib.import_module(old)


def test_public_names_load_from_the_package_where_they_are_defined():
    from metarl_agents import MetaPPO, SplAggerPolicy, make_vec_env

    assert MetaPPO.__module__ == "metarl_agents.training.ppo"
    assert make_vec_env.__module__ == "metarl_agents.training.vec_env"
    assert SplAggerPolicy.__module__ == "metarl_agents.policies"


# The step limits the ids registered before (the longest default trial); the envs' own bounds agree.
PREVIOUSLY_REGISTERED = {"MetaTMaze-v0": 604, "MetaTMazeLongShort-v0": 604, "MetaTMazeAgreement-v0": 604,
                         "MetaTMazeLatent-v0": 604, "MetaMinecraftLongShort-v0": 400, "MetaPlanningGame-v0": 100,
                         "MetaPlanningGame4x4-v0": 100, "MetaPlanningGameJustGoal-v0": 100, "MetaCheetahDir-v0": 200,
                         "MetaCheetahVel-v0": 200, "MetaFrozenLake-v0": 49, "MetaFrozenLakePenalty-v0": 49,
                         "MetaPointNav2D-v0": 100}


@pytest.mark.parametrize("env_id", metarl_envs.REGISTERED_IDS)
def test_default_trials_keep_their_length(env_id):
    assert gym.make(env_id).spec.max_episode_steps == PREVIOUSLY_REGISTERED[env_id]
