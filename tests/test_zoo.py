"""RL Baselines3 Zoo reads the shipped hyperparameter files, trains from them and replays the result."""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import pytest

pytest.importorskip("rl_zoo3", reason="the `zoo` extra (pip install metarl[zoo])")
from rl_zoo3.utils import get_class_by_name, get_wrapper_class  # noqa: E402

import metarl_envs  # noqa: E402
from metarl_agents.policies import MetaRecurrentPolicy  # noqa: E402
from metarl_agents.zoo import CONFIGS, config_path, load_config  # noqa: E402
from metarl_envs.wrappers import TransitionObservation  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TINY_SPLAGGER = 'policy_kwargs:"dict(encoder_hidden=16, net_arch=[16], head_state_dim=16)"'
TINY_LSTM = 'policy_kwargs:"dict(lstm_hidden_size=8, enable_critic_lstm=False, net_arch=[8])"'


@pytest.mark.parametrize("module", ["rl_zoo3.train", "rl_zoo3.enjoy"])
def test_the_readme_zoo_commands_have_what_they_import(module):
    """The `zoo` extra installs everything `python -m rl_zoo3.train / enjoy` import (enjoy needs requests,
    which rl_zoo3 does not declare)."""
    importlib.import_module(module)


@pytest.mark.parametrize("name", CONFIGS)
def test_shipped_configs_resolve(name):
    """Every entry names a registered id, a policy and (SplAgger) the transition wrapper the zoo can import."""
    assert config_path(name).is_file()
    config = load_config(name)
    assert {"MetaTMaze-v0", "MetaPlanningGame-v0"} <= set(config)
    for env_id, hyperparams in config.items():
        assert env_id in metarl_envs.REGISTERED_IDS
        if name == "splagger":
            assert issubclass(get_class_by_name(hyperparams["policy"]), MetaRecurrentPolicy)
            wrap = get_wrapper_class(dict(hyperparams))
            assert isinstance(wrap(gym.make(env_id)), TransitionObservation)
        else:
            assert hyperparams["policy"] == "MlpLstmPolicy" and "env_wrapper" not in hyperparams
    with pytest.raises(ValueError, match="shipped"):
        config_path("sac")


def _zoo(*args: str, cwd: Path) -> str:
    # One torch thread: the models are tiny, and extra threads only contend on a busy machine.
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout


def _train_and_enjoy(config: str, env_id: str, overrides: list[str], tmp_path: Path) -> list[float]:
    steps = gym.make(env_id).spec.max_episode_steps  # one update of one trial per copy; enjoy one trial
    train = _zoo("rl_zoo3.train", "--algo", "ppo_lstm", "--env", env_id, "--gym-packages", "metarl_envs",
                 "--conf-file", f"metarl_agents.zoo.{config}", "-n", str(2 * steps), "-f", "logs", "--seed", "0",
                 "--eval-freq", "-1", "--hyperparams", "n_envs:2", f"n_steps:{steps}", f"batch_size:{steps}",
                 *overrides, cwd=tmp_path)
    assert re.search(r"ep_rew_mean\s*\|\s*-?[\d.]+", train), train[-2000:]
    assert (tmp_path / "logs" / "ppo_lstm" / f"{env_id}_1" / f"{env_id}.zip").is_file()
    enjoy = _zoo("rl_zoo3.enjoy", "--algo", "ppo_lstm", "--env", env_id, "--gym-packages", "metarl_envs",
                 "-f", "logs", "--no-render", "-n", str(steps), cwd=tmp_path)
    returns = [float(r) for r in re.findall(r"Episode Reward: (-?[\d.]+)", enjoy)]
    assert len(returns) >= 1, enjoy[-2000:]
    lengths = [int(n) for n in re.findall(r"Episode Length (\d+)", enjoy)]
    assert all(1 <= n <= steps for n in lengths)
    return returns


def test_zoo_trains_splagger_from_the_shipped_file_and_enjoys(tmp_path):
    returns = _train_and_enjoy("splagger", "MetaTMaze-v0", [TINY_SPLAGGER], tmp_path)
    # Forced-right T-maze trials: 4 decisions of +4 or -3 each.
    assert all(r in {16.0, 9.0, 2.0, -5.0, -12.0} for r in returns)


@pytest.mark.slow
def test_zoo_trains_mlp_lstm_from_the_shipped_file_and_enjoys(tmp_path):
    returns = _train_and_enjoy("ppo_lstm", "MetaPlanningGame-v0", [TINY_LSTM], tmp_path)
    assert all(0.0 <= r <= 100.0 and r == int(r) for r in returns)  # +1 per collected goal
