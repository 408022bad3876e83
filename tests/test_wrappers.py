"""TransitionObservation: layout, exact transitions, one-hot parts, vector == single envs."""

import pickle
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from gymnasium.utils.env_checker import check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import metarl_envs
from metarl_envs.wrappers import (
    TransitionBox,
    TransitionObservation,
    TransitionObservationVector,
    transition_layout,
    transition_layout_from_space,
)


def test_layout_slices_and_dims():
    layout = transition_layout(spaces.Box(-1, 1, (4,)), spaces.Discrete(3))
    assert layout["obs_dim"] == 4 and layout["act_dim"] == 3 and layout["dim"] == 12
    assert layout["slices"] == {"s_prev": slice(0, 4), "a_prev": slice(4, 7), "r_prev": slice(7, 8), "s": slice(8, 12)}
    boxed = transition_layout(spaces.Discrete(16), spaces.Box(-2, 2, (2,)))
    assert boxed["obs_dim"] == 16 and boxed["act_dim"] == 2 and boxed["dim"] == 35


def test_layout_from_wrapped_space_round_trips():
    env = TransitionObservation(gym.make("MetaTMaze-v0", length=5))
    assert transition_layout_from_space(env.observation_space, env.action_space) == env.layout
    with pytest.raises(ValueError, match="TransitionObservation"):
        transition_layout_from_space(spaces.Box(-1, 1, (6,)), spaces.Discrete(4))


def test_rejects_unsupported_spaces():
    with pytest.raises(ValueError, match="MultiDiscrete"):
        transition_layout(spaces.MultiDiscrete([2, 2]), spaces.Discrete(2))


def test_tmaze_transitions_exact():
    env = TransitionObservation(gym.make("MetaTMaze-v0", length=5))
    base = gym.make("MetaTMaze-v0", length=5)
    obs, _ = env.reset(seed=3)
    s, _ = base.reset(seed=3)
    assert env.observation_space.contains(obs)
    np.testing.assert_array_equal(obs, np.concatenate([np.zeros(5 + 4 + 1, np.float32), s]))
    for action in [1, 0, 3, 1, 2, 1]:
        obs, reward, terminated, truncated, _ = env.step(action)
        s_next, r, *_ = base.step(action)
        onehot = np.eye(4, dtype=np.float32)[action]
        np.testing.assert_array_equal(obs, np.concatenate([s, onehot, [np.float32(r)], s_next]))
        assert reward == r
        s = s_next


def test_discrete_observations_are_one_hot():
    env = TransitionObservation(gym.make("FrozenLake-v1", is_slippery=False))
    obs, _ = env.reset(seed=0)
    assert obs.shape == (16 + 4 + 1 + 16,)
    np.testing.assert_array_equal(obs[21:], np.eye(16)[0])
    obs, *_ = env.step(2)  # RIGHT: state 0 -> 1
    np.testing.assert_array_equal(obs[:16], np.eye(16)[0])
    np.testing.assert_array_equal(obs[16:20], np.eye(4)[2])
    np.testing.assert_array_equal(obs[21:], np.eye(16)[1])


def test_box_actions_are_copied():
    env = TransitionObservation(gym.make("Pendulum-v1"))
    obs, _ = env.reset(seed=0)
    assert obs.shape == (3 + 1 + 1 + 3,) and np.all(obs[:5] == 0)
    obs, reward, *_ = env.step(np.array([1.5], np.float32))
    assert obs[3] == np.float32(1.5) and obs[4] == np.float32(reward)


def _run_single(envs, actions):
    out, finals = [], []
    for i, env in enumerate(envs):
        obs, _, terminated, truncated, _ = env.step(actions[i])
        finals.append(obs if (terminated or truncated) else None)
        out.append(env.reset()[0] if (terminated or truncated) else obs)
    return np.stack(out), finals


@pytest.mark.parametrize("n", [1, 3])
def test_vector_matches_single_envs_including_final_obs(n):
    vec = TransitionObservationVector(gym.make_vec("MetaTMaze-v0", num_envs=n, length=4))
    singles = [TransitionObservation(gym.make("MetaTMaze-v0", length=4)) for _ in range(n)]
    obs, _ = vec.reset(seed=11)
    np.testing.assert_array_equal(obs, np.stack([e.reset(seed=11 + i)[0] for i, e in enumerate(singles)]))
    assert vec.single_observation_space == singles[0].observation_space
    rng = np.random.default_rng(0)
    ended = 0
    for _ in range(60):
        actions = rng.integers(0, 4, n)
        obs, _, terminated, truncated, info = vec.step(actions)
        expected, finals = _run_single(singles, actions)
        np.testing.assert_array_equal(obs, expected)
        for i, final in enumerate(finals):
            if final is not None:
                ended += 1
                assert info["_final_obs"][i]
                np.testing.assert_array_equal(info["final_obs"][i], final)
    assert ended >= n  # trials (4 episodes of 4 steps) did end and were checked


def test_vector_next_step_autoreset():
    vec = TransitionObservationVector(
        gym.vector.SyncVectorEnv([lambda: gym.make("MetaTMaze-v0", length=3, episodes_per_trial=1)] * 2)
    )
    obs, _ = vec.reset(seed=0)
    restart_seen = False
    for _ in range(8):
        obs, _, terminated, truncated, _ = vec.step(np.array([1, 1]))
        if (terminated | truncated).any():
            obs, *_ = vec.step(np.array([1, 1]))  # the reset step of NEXT_STEP autoreset
            done = terminated | truncated
            assert np.all(obs[done, :9] == 0) and np.all(obs[done, 9] == 1)  # zeros, then is_start = 1
            restart_seen = True
            break
    assert restart_seen


def test_transition_space_is_marked_and_survives_pickling():
    env = TransitionObservation(gym.make("MetaTMaze-v0", length=5))
    space = env.observation_space
    assert isinstance(space, TransitionBox) and (space.obs_dim, space.act_dim) == (5, 4)
    assert space.layout == env.layout
    clone = pickle.loads(pickle.dumps(space))
    assert isinstance(clone, TransitionBox) and clone == space and clone.layout == space.layout
    plain = spaces.Box(space.low, space.high, dtype=np.float32)
    assert plain != space and space != plain  # a plain Box of the same bounds is not a transition space
    with pytest.raises(ValueError, match="obs_dim"):
        TransitionBox(space.low, space.high, obs_dim=4, act_dim=4)


@pytest.mark.parametrize("env_id", metarl_envs.REGISTERED_IDS)
def test_wrapped_envs_pass_the_checkers_without_warnings(env_id):
    """The r_prev slot is bounded by the family's reward range (float32-finite where unbounded)."""
    env = TransitionObservation(gym.make(env_id))
    r_prev = env.layout["slices"]["r_prev"]
    low, high = env.observation_space.low[r_prev][0], env.observation_space.high[r_prev][0]
    f32 = np.finfo(np.float32)
    assert (low, high) == ((f32.min, f32.max) if "Cheetah" in env_id else env.unwrapped.reward_range)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # Gymnasium always notes that a wrapped env differs from its unwrapped version; nothing else may warn.
        warnings.filterwarnings("ignore", message=".*is different from the unwrapped version")
        check_env(env, skip_render_check=True)
        sb3_check_env(env)
