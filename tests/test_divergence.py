"""Divergence named where it starts, a bounded learning rate, a warning for a stalled run, and no SB3
log folder outside the run's output."""

from __future__ import annotations

import math
import tempfile
import warnings

import pytest

from metarl_agents.leaderboard.grid import build_grid
from metarl_agents.leaderboard.runner import run_grid
from metarl_agents.policies import RNNPolicy
from metarl_agents.training.config import RunConfig
from metarl_agents.training.divergence import StallMonitor, TrainingStalledWarning
from metarl_agents.training.ppo import MetaPPO, TrainingDivergedError
from metarl_agents.training.vec_env import make_vec_env

SMALL = {"encoder_hidden": 32, "head": "mlp", "net_arch": (32,), "head_state_dim": 16}


def small_model(env_id: str = "MetaTMaze-v0", policy_kwargs=None, **kwargs) -> MetaPPO:
    env_kwargs = {"length": 10} if env_id == "MetaTMaze-v0" else {}
    env = make_vec_env(env_id, 4, seed=0, **env_kwargs)
    return MetaPPO(RNNPolicy, env, n_steps=25, n_minibatches=2, policy_kwargs={**SMALL, **(policy_kwargs or {})},
                   seed=0, device="cpu", **kwargs)


@pytest.mark.parametrize("lr", [1e38, 1e4, 1.5, math.inf])
def test_run_configuration_bounds_the_learning_rate(lr):
    with pytest.raises(ValueError, match=r"learning_rate must be a finite number in \(0, 1\], got"):
        RunConfig.from_preset("MetaTMaze-v0", "RNN", learning_rate=lr)
    assert RunConfig.from_preset("MetaTMaze-v0", "RNN", learning_rate=1.0).learning_rate == 1.0


def test_learning_rate_that_overflows_adams_step_is_divergence_not_a_torch_error():
    model = small_model(learning_rate=1e38)
    with pytest.raises(TrainingDivergedError, match=r"update 1 .*a step of the optimizer became non-finite "
                                                    r"\(Adam's step overflowed float32 at learning rate 1e\+38\)"):
        model.learn(200)


@pytest.mark.parametrize("env_id", ["MetaTMaze-v0", "MetaCheetahVel-v0"])  # Categorical and Normal actions
def test_nonfinite_policy_output_names_the_layer_where_it_started(env_id):
    with pytest.raises(ValueError, match="obs_clip must be a finite number"):
        small_model(env_id, policy_kwargs={"obs_clip": math.nan})  # refused when the policy is built
    model = small_model(env_id)
    for module in model.policy.modules():  # a NaN clip set after construction, as a damaged buffer would be
        if type(module).__name__ == "RunningNorm":
            module.clip = math.nan
    with pytest.raises(TrainingDivergedError) as error:
        model.learn(200)
    message = str(error.value)
    assert "a policy output became non-finite" in message and "first in head.state.norm (RunningNorm)" in message
    assert "tensor(" not in message and "\n" not in message


def test_loss_whose_finite_parts_overflow_names_them():
    model = small_model(vf_coef=1e300)  # finite in Python, infinite in float32
    with pytest.raises(TrainingDivergedError, match=r"a loss became non-finite \(their weighted sum overflowed: "
                                                    r"policy loss .*, value loss .*, entropy .*, auxiliary loss"):
        model.learn(200)


def test_stall_monitor_warns_once_for_a_constant_return_with_collapsed_entropy():
    def run(rewards, entropy, discrete=True, dims=1):
        monitor = StallMonitor()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for reward in rewards:
                monitor.update(reward, entropy, dims, discrete, 1e4)
        return [str(w.message) for w in caught if issubclass(w.category, TrainingStalledWarning)]

    constant = [-6.0] * (StallMonitor.window + 5)
    (message,) = run(constant, 1e-6)
    assert "mean training reward has been -6 for the last 20 rollouts" in message and "(10000)" in message
    assert run(constant, 0.5) == []  # still exploring
    assert run([-6.0, -5.0] * StallMonitor.window, 1e-6) == []  # the return moves
    assert len(run(constant, 2 * (1.4189 + math.log(1e-4)), discrete=False, dims=2)) == 1  # std 1e-4 in 2 dims
    assert run(constant, 2 * (1.4189 + math.log(1e-2)), discrete=False, dims=2) == []


def test_a_run_whose_evaluation_return_is_stuck_with_collapsed_entropy_warns():
    env_kwargs = {"length": 5, "episode_limit": 12, "episodes_per_trial": 2}
    policy = {"encoder_hidden": 16, "head": "mlp", "net_arch": [16]}

    def warnings_of(lr, db):
        (spec,) = build_grid(["MetaTMaze-v0"], ["RNN"], ["1,"], [lr], frames=32 * 14, eval_every=64, n_eval_tasks=4,
                             env_kwargs=env_kwargs, overrides={"n_envs": 4, "n_steps": 8}, policy_kwargs=policy)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert run_grid([spec], db, show_progress=False).ok
        return [str(w.message) for w in caught if issubclass(w.category, TrainingStalledWarning)]

    with tempfile.TemporaryDirectory() as folder:
        (message,) = warnings_of(1.0, f"{folder}/high.db")
        assert "the evaluation return has been" in message and "at the last 5 evaluations" in message
        assert "learning rate (1) is probably too high" in message
        assert warnings_of(1e-3, f"{folder}/low.db") == []


def test_learn_writes_no_sb3_log_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    small_model().learn(100)
    model = small_model(verbose=1)
    model.learn(100)
    assert list(tmp_path.iterdir()) == []  # SB3's default logger makes SB3-<time> folders here
    assert "total_timesteps" in capsys.readouterr().out  # verbose output still reaches stdout
    assert model.logger.get_dir() is None
