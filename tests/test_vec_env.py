"""The native batched env as an SB3 VecEnv behaves exactly like SB3's DummyVecEnv of single envs."""

import warnings

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv

from metarl_agents.training.vec_env import BatchedVecEnv, make_single_env, make_vec_env
from metarl_envs.wrappers import TransitionObservation, TransitionObservationVector

CASES = [
    ("MetaTMaze-v0", {"length": 10}),
    ("MetaTMazeLongShort-v0", {"length": 5, "episode_limit": 8}),
    ("MetaPlanningGame-v0", {}),
    ("MetaFrozenLake-v0", {}),
    ("MetaCheetahVel-v0", {}),
]


def _random_actions(space: gym.Space, n: int, rng: np.random.Generator) -> np.ndarray:
    if isinstance(space, gym.spaces.Discrete):
        return rng.integers(0, space.n, size=n)
    return rng.uniform(space.low, space.high, size=(n, *space.shape)).astype(space.dtype)


def _without_time(info: dict) -> dict:
    info = dict(info)
    if "episode" in info:
        info["episode"] = {k: v for k, v in info["episode"].items() if k != "t"}
    return info


def _assert_info_equal(a: dict, b: dict) -> None:
    a, b = _without_time(a), _without_time(b)
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.mark.parametrize(("env_id", "kwargs"), CASES)
def test_bridge_matches_dummy_vec_env(env_id, kwargs):
    n = 3
    batched = make_vec_env(env_id, n, seed=11, **kwargs)
    dummy = DummyVecEnv([lambda: make_single_env(env_id, **kwargs) for _ in range(n)])
    dummy.seed(11)
    assert isinstance(batched, BatchedVecEnv)
    assert batched.observation_space == dummy.observation_space
    np.testing.assert_array_equal(batched.reset(), dummy.reset())
    for i in range(n):
        _assert_info_equal(batched.reset_infos[i], dummy.reset_infos[i])
    rng = np.random.default_rng(0)
    trial_ends = 0
    for _ in range(300 if "Cheetah" not in env_id else 210):
        actions = _random_actions(batched.action_space, n, rng)
        obs_b, rew_b, done_b, infos_b = batched.step(actions)
        obs_d, rew_d, done_d, infos_d = dummy.step(actions)
        np.testing.assert_array_equal(obs_b, obs_d)
        np.testing.assert_array_equal(rew_b, rew_d)
        assert rew_b.dtype == rew_d.dtype
        np.testing.assert_array_equal(done_b, done_d)
        for i in range(n):
            _assert_info_equal(infos_b[i], infos_d[i])
            _assert_info_equal(batched.reset_infos[i], dummy.reset_infos[i])
        trial_ends += int(done_b.sum())
    assert trial_ends > 0, "the comparison must cover trial ends (terminal observations, Monitor stats)"


def test_trial_end_infos_carry_sb3_keys():
    env = make_vec_env("MetaTMaze-v0", 2, seed=0, length=10)
    env.reset()
    total, steps = np.zeros(2), 0
    while True:
        obs, rewards, dones, infos = env.step(np.array([2, 3]))
        total += rewards
        steps += 1
        if dones.any():
            break
    assert dones.all() and steps == 40  # 4 episodes of 10 forced steps
    for i in range(2):
        assert infos[i]["episode"]["r"] == total[i] and infos[i]["episode"]["l"] == 40
        assert infos[i]["TimeLimit.truncated"] is False
        assert infos[i]["terminal_observation"].shape == obs[i].shape
        assert infos[i]["inner_episode"] == 3 and infos[i]["episode_end"] is True
    # The returned observation starts the next trial: no previous transition yet.
    assert not obs[:, :10].any()


def test_reset_options_fix_tasks_and_seeds_repeat():
    env = make_vec_env("MetaTMaze-v0", 3, seed=5)
    first = env.reset()
    env.seed(5)
    np.testing.assert_array_equal(env.reset(), first)
    env.set_options([{"task": [1.0]}, {"task": [-1.0]}, {"task": [1.0]}])
    env.reset()
    assert [info["task"][0] for info in env.reset_infos] == [1.0, -1.0, 1.0]
    env.set_options({"bad": 1})
    with pytest.raises(ValueError, match="task"):
        env.reset()


def test_fallback_without_vector_entry_point():
    env_id = "TestSingleOnlyTMaze-v0"
    if env_id not in gym.registry:
        gym.register(env_id, entry_point="metarl_envs.tmaze:MetaTMazeEnv", max_episode_steps=600,
                     kwargs={"episodes_per_trial": 4})
    env = make_vec_env(env_id, 2, seed=3, length=10)
    assert isinstance(env, DummyVecEnv)
    reference = make_vec_env("MetaTMaze-v0", 2, seed=3, length=10)
    np.testing.assert_array_equal(env.reset(), reference.reset())
    for _ in range(45):
        a = np.array([0, 1])
        np.testing.assert_array_equal(env.step(a)[0], reference.step(a)[0])


def test_mujoco_ids_use_the_batched_core():
    env = make_vec_env("MetaCheetahDir-v0", 2, seed=0)
    assert isinstance(env, BatchedVecEnv)
    assert env.reset().shape == (2, 20 + 6 + 1 + 20)  # concat(s_prev, a_prev, r_prev, s)
    assert "inner_episode" in env.reset_infos[0] and "episode" not in env.reset_infos[0]


def test_attribute_access_and_bad_input():
    env = make_vec_env("MetaTMaze-v0", 4, seed=0)
    assert env.get_attr("task_space") == [env.venv.unwrapped.task_space] * 4
    assert env.env_is_wrapped(Monitor) == [True] * 4
    assert env.env_is_wrapped(TransitionObservation) == [True] * 4
    assert env.env_is_wrapped(gym.wrappers.TimeLimit) == [False] * 4
    with pytest.raises(ValueError, match="indices"):
        env.set_attr("render_mode", None, indices=[0])
    with pytest.raises(ValueError, match="n_envs"):
        make_vec_env("MetaTMaze-v0", 0)
    with pytest.raises(ValueError, match="unknown env id"):
        make_vec_env("NoSuchEnv-v0", 2)


class _Constant:
    """A scripted agent: the same action at every step (UP on the T-maze, zero torque on the cheetah)."""

    def __init__(self, action):
        self.action = np.asarray(action)

    def predict(self, obs, state=None, episode_start=None, deterministic=False):
        return np.stack([self.action] * len(obs)), state


@pytest.mark.parametrize(("env_id", "kwargs"), [("MetaTMaze-v0", {"length": 5}), ("MetaCheetahDir-v0", {})])
def test_evaluate_policy_trusts_monitor_on_both_paths(env_id, kwargs):
    """Both bridge paths say they are Monitor-wrapped and report Monitor's trial returns."""
    env = make_vec_env(env_id, 2, seed=0, **kwargs)
    assert env.env_is_wrapped(Monitor) == [True, True]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. "Evaluation environment is not wrapped with a Monitor"
        agent = _Constant(2 if env_id == "MetaTMaze-v0" else np.zeros(6, np.float32))
        returns, lengths = evaluate_policy(agent, env, n_eval_episodes=2, return_episode_rewards=True)
    trial = gym.make(env_id).spec.max_episode_steps if not kwargs else 4 * 5
    assert lengths == [trial, trial]
    if env_id == "MetaTMaze-v0":  # forced right, then UP: +4 per episode on UP tasks, -3 on DOWN tasks
        assert all(r in {16.0, 9.0, 2.0, -5.0, -12.0} for r in returns)


def test_vector_reset_rejects_unknown_options():
    env = gym.make_vec("MetaTMaze-v0", num_envs=2)
    with pytest.raises(ValueError, match="'task'"):  # the single env's key, misspelt for a vector env
        env.reset(seed=0, options={"task": [1.0]})
    with pytest.raises(ValueError, match="reset_mask"):
        env.reset(options={"reset_mask": [True, False]})  # a list, not a bool array
    env.reset(seed=0)
    with pytest.raises(ValueError, match="seed"):  # one seed per copy, as Gymnasium's vector envs take them
        env.reset(seed=[1], options={"reset_mask": np.array([True, False])})


def test_vector_reset_mask_restarts_only_masked_copies():
    """Gymnasium 1.x's reset_mask: masked copies start a new trial, the others go on untouched."""
    n, length = 3, 5
    env = TransitionObservationVector(gym.make_vec("MetaTMaze-v0", num_envs=n, length=length))
    reference = TransitionObservationVector(gym.make_vec("MetaTMaze-v0", num_envs=n, length=length))
    obs, _ = env.reset(seed=7)
    reference.reset(seed=7)
    for _ in range(3):
        obs, *_ = env.step(np.array([1, 1, 1]))
        ref_obs, *_ = reference.step(np.array([1, 1, 1]))
    mask = np.array([False, True, False])
    options = {"reset_mask": mask, "tasks": [[1.0], [-1.0], [1.0]]}
    new_obs, info = env.reset(options=options)
    assert "reset_mask" in options  # the caller's options are left alone
    np.testing.assert_array_equal(new_obs[~mask], obs[~mask])  # untouched copies: same observation
    assert not new_obs[1, : length + 4 + 1].any() and new_obs[1, length + 4 + 1] == 1.0  # zeros, then is_start
    np.testing.assert_array_equal(info["_task"], mask)
    assert info["task"][1, 0] == -1.0 and info["inner_episode"][1] == 0
    # The untouched copies continue exactly like copies that were never reset.
    for _ in range(4 * length):
        obs, reward, *_ = env.step(np.array([1, 1, 1]))
        ref_obs, ref_reward, *_ = reference.step(np.array([1, 1, 1]))
        np.testing.assert_array_equal(obs[~mask], ref_obs[~mask])
        np.testing.assert_array_equal(reward[~mask], ref_reward[~mask])


def test_reset_mask_with_gymnasium_record_episode_statistics():
    from gymnasium.wrappers.vector import RecordEpisodeStatistics

    env = RecordEpisodeStatistics(gym.make_vec("MetaTMaze-v0", num_envs=2, length=4))
    env.reset(seed=0)
    env.step(np.array([1, 1]))
    env.reset(options={"reset_mask": np.array([True, False])})
    assert list(env.episode_lengths) == [0, 1]
