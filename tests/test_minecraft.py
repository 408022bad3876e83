"""MC-LS: frames, exact returns of scripted policies, dynamics details, validation, batched equivalence."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from helpers import first_copy_step
from vector_equivalence import assert_vector_matches_singles

import metarl_envs  # noqa: F401
from metarl_envs.minecraft import FORWARD, LEFT, OBS_DIM, RIGHT, ROOM_CELLS, TYPED_CELLS, frame_table

ENV_ID = "MetaMinecraftLongShort-v0"
N_ROOMS = 16


def channel_means(obs: np.ndarray) -> np.ndarray:
    """Mean (R, G, B) of the frame inside an observation, in pixel units."""
    return (obs[:OBS_DIM].reshape(10, 10, 3) * 128 + 128).mean(axis=(0, 1))


def looks_up(obs: np.ndarray) -> bool:
    """The indicator frame is green-dominant for UP, red-dominant for DOWN."""
    r, g, _ = channel_means(obs)
    return bool(g > r)


def room_type(obs: np.ndarray) -> int:
    """The room type a typed cell's frame shows: type 0 frames are cooler (less red, more blue) than
    the same cell's type 1 frame. The cast is faint, so it is read against the other type's frame of
    the same cell, as a learned policy would have to, not from the colour balance alone."""
    frames = frame_table().astype(np.float32)
    pixels = obs[:OBS_DIM].reshape(10, 10, 3) * 128 + 128
    for kind in range(1, len(ROOM_CELLS) + 1):
        for room_type_ in (0, 1):
            if np.array_equal(pixels, frames[kind, room_type_, 0]):
                return room_type_
    raise AssertionError("not a typed cell's frame")


def play_trial(env: gym.Env, seed: int, *, end_action: int | None = None, task=None) -> list[float]:
    """Walk every room optimally, reading room types and the indicator from the frames only.

    The task is read at the trial's first step and remembered across the episode boundary; with
    ``end_action`` set, the end turn is that fixed guess instead. Returns the episode returns.
    """
    obs, _ = env.reset(seed=seed, options=None if task is None else {"task": task})
    goal_up = looks_up(obs)
    returns, terminated = [], False

    def act(action: int) -> float:
        nonlocal obs, terminated
        obs, reward, terminated, truncated, info = env.step(action)
        assert not truncated
        return reward

    while not terminated:
        total, steps = act(RIGHT), 1
        for _ in range(N_ROOMS):
            total += act(FORWARD)
            check = LEFT if room_type(obs) == 0 else RIGHT
            total += act(check) + act(FORWARD) + act(FORWARD)
            total += act(RIGHT if check == LEFT else LEFT) + act(FORWARD)
            steps += 6
        turn = end_action if end_action is not None else (RIGHT if goal_up else LEFT)
        total += act(turn)
        assert steps + 1 == 98
        returns.append(total)
    return returns


@pytest.fixture
def env():
    return gym.make(ENV_ID)


def test_optimal_policy_from_frames_scores_27_4(env):
    for seed in range(6):
        returns = play_trial(env, seed)
        assert returns == pytest.approx([13.7, 13.7], abs=1e-9)
        assert sum(returns) == pytest.approx(27.4, abs=1e-9)


def test_guessing_the_end_scores_20_4_on_average(env):
    up = sum(play_trial(env, 0, end_action=RIGHT, task=[1.0]))
    down = sum(play_trial(env, 0, end_action=RIGHT, task=[-1.0]))
    assert (up, down) == pytest.approx((27.4, 13.4), abs=1e-9)
    assert (up + down) / 2 == pytest.approx(20.4, abs=1e-9)


def test_frames_show_task_and_room_type_only_where_specified():
    frames = frame_table().astype(np.int64)  # (kind, type, task, 10, 10, 3)
    assert frames.shape == (len(ROOM_CELLS) + 2, 2, 2, 10, 10, 3)
    up, down = frames[0, 0, 0].mean(axis=(0, 1)), frames[0, 0, 1].mean(axis=(0, 1))
    assert up[1] > up[0] + 80 and up[1] > up[2] + 80
    assert down[0] > down[1] + 80 and down[0] > down[2] + 80
    # The goal indicator stays clearly visible: the UP and DOWN frames differ by 101.7 on average
    # (the reference's Minecraft images: about 100).
    indicator = np.abs(frames[0, 0, 0] - frames[0, 0, 1]).mean()
    assert indicator >= 90 and indicator == pytest.approx(101.67, abs=0.01)
    room = frames[1:-1]
    for kind, cell in enumerate(ROOM_CELLS):
        np.testing.assert_array_equal(room[kind, :, 0], room[kind, :, 1])  # no task in room frames
        if cell in TYPED_CELLS:
            # The room-type cue is faint, as in the reference's images (6 to 28): the two types'
            # frames differ by 18 on average, type 0 cooler (less red, more blue) than type 1.
            cue = np.abs(room[kind, 0, 0] - room[kind, 1, 0]).mean()
            assert 6 <= cue <= 28 and cue == pytest.approx(18.0, abs=1e-9)
            shift = (room[kind, 1, 0] - room[kind, 0, 0]).mean(axis=(0, 1))
            assert shift[0] > 15 and shift[2] < -15
        else:
            np.testing.assert_array_equal(room[kind, 0], room[kind, 1])
    distinct = {f.tobytes() for f in frames.reshape(-1, 300)}
    assert len(distinct) == 2 + 2 * len(TYPED_CELLS) + (len(ROOM_CELLS) - len(TYPED_CELLS)) + 1
    np.testing.assert_array_equal(frame_table.__wrapped__(), frame_table())  # fixed seed: reproducible


def test_room_types_are_redrawn_every_episode_and_visible():
    env = gym.make(ENV_ID, n_rooms=40).unwrapped
    env.reset(seed=1)
    first = env.core.room_types[0].copy()
    obs, *_ = env.step(RIGHT)
    assert room_type(obs) == first[0]
    for _ in range(500):  # time out the first episode at 200 steps
        obs, reward, terminated, truncated, info = env.step(LEFT)
        if info.get("episode_end"):
            break
    assert info["episode_return"] == pytest.approx(0.1) and obs[-1] == 1.0
    assert not np.array_equal(env.core.room_types[0], first)


def test_blocked_actions_wrong_checks_and_end_rewards():
    env = gym.make(ENV_ID, n_rooms=1).unwrapped
    obs0, _ = env.reset(seed=3, options={"task": [-1.0]})
    for action in (LEFT, FORWARD):
        obs, reward, *_ = env.step(action)
        assert reward == 0.0
        np.testing.assert_array_equal(obs, obs0)
    assert env.step(RIGHT)[1] == pytest.approx(0.1)
    env.step(FORWARD)
    wrong = RIGHT if env.core.room_types[0, 0] == 0 else LEFT
    assert env.step(wrong)[1] == 0.0 and env.core.pos[0] == 1 + ROOM_CELLS.index((1 if wrong == RIGHT else -1, 1))
    assert env.step(wrong)[1] == 0.0  # sideways from (+-1, 1) is blocked
    for action in (FORWARD, FORWARD, LEFT if wrong == RIGHT else RIGHT, FORWARD):
        assert env.step(action)[1] == pytest.approx(0.1)
    assert env.step(FORWARD)[1] == 0.0  # FORWARD at the end cell is a no-op
    obs, reward, terminated, _, info = env.step(RIGHT)  # task DOWN wants LEFT
    assert reward == -3.0 and not terminated and info["episode_end"] and obs[-1] == 1.0
    assert info["episode_return"] == pytest.approx(0.1 + 0.5 - 3.0)
    np.testing.assert_array_equal(info["final_episode_observation"][:OBS_DIM], frame_table()[-1, 0, 0].ravel() / 128.0 - 1.0)


@pytest.mark.parametrize("vectorised", [False, True])
def test_timeout_step_ignores_the_action_pays_zero_and_ends_the_episode(vectorised):
    """The reference's limit: 199 ordinary steps, then a 200th step that does nothing but end the episode."""
    if vectorised:
        env = gym.make_vec(ENV_ID, num_envs=1)
    else:
        env = gym.make(ENV_ID)
    obs0, _ = env.reset(seed=2)

    step = first_copy_step(env, vectorised)

    for _ in range(199):  # FORWARD is a no-op at the indicator cell
        obs, reward, terminated, truncated, info = step(FORWARD)
        assert reward == 0.0 and not info.get("episode_end", False)
    obs, reward, terminated, truncated, info = step(RIGHT)  # would move on (+0.1) on an ordinary step
    assert reward == 0.0 and info["episode_end"] and not (terminated or truncated)
    np.testing.assert_array_equal(info["final_episode_observation"], np.reshape(obs0, -1))  # still the indicator
    assert obs[-1] == 1.0
    obs, reward, *_ = step(RIGHT)  # the next episode: RIGHT moves on again
    assert reward == pytest.approx(0.1)
    assert gym.make(ENV_ID, episode_limit=9).unwrapped.core.per_episode_limit == 10


def test_observation_layout_and_render():
    env = gym.make(ENV_ID, render_mode="rgb_array", render_scale=1)
    obs, info = env.reset(seed=0)
    assert obs.shape == (301,) and obs.dtype == np.float32 and obs[-1] == 0.0
    assert env.observation_space.contains(obs)
    task = frame_table()[0, 0, 0 if info["task"][0] > 0 else 1]
    np.testing.assert_array_equal(obs[:OBS_DIM], (task.astype(np.float32).ravel() - 128) / 128)
    image = env.render()
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    np.testing.assert_array_equal(image[:80:8, :80:8], task)
    text = gym.make(ENV_ID, render_mode="ansi")
    text.reset(seed=0)
    text.step(RIGHT)
    assert "room 1/16 cell (0, 0)" in text.render()
    assert gym.make(ENV_ID, episodes_per_trial=1).observation_space.shape == (300,)


def test_check_env_passes_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(gym.make(ENV_ID).unwrapped)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"n_rooms": 0}, "n_rooms"), ({"n_rooms": 2.5}, "n_rooms"), ({"episode_limit": 0}, "episode_limit"),
     ({"episodes_per_trial": 0}, "episodes_per_trial")],
)
def test_invalid_kwargs_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        gym.make(ENV_ID, **kwargs)


@pytest.mark.parametrize("task", [[0.0], [2.0], [1.0, -1.0], "up"])
def test_invalid_tasks_raise(env, task):
    with pytest.raises(ValueError, match="MetaMinecraftLongShort: invalid task"):
        env.unwrapped.set_task(task)
    with pytest.raises(ValueError, match="MetaMinecraftLongShort: invalid task"):
        env.reset(options={"task": task})


@pytest.mark.parametrize("action", [3, -1, 1.5])
def test_invalid_actions_raise(action):
    env = gym.make(ENV_ID).unwrapped
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"Discrete\(3\)"):
        env.step(action)


def test_task_api():
    env = gym.make(ENV_ID).unwrapped
    env.reset(seed=0)
    tasks = env.sample_tasks(200)
    assert all(env.task_space.contains(t) for t in tasks)
    assert 60 < sum(t[0] > 0 for t in tasks) < 140
    env.set_task([-1.0])
    np.testing.assert_array_equal(env.get_task(), [-1.0])


@pytest.mark.parametrize(
    ("kwargs", "steps"), [({}, 420), ({"n_rooms": 1, "episode_limit": 12, "episodes_per_trial": 3}, 300)]
)
def test_batched_equals_single(kwargs, steps):
    # Mostly the optimal path's moves (FORWARD/RIGHT) so that rooms and trial ends are reached.
    actions = np.random.default_rng(7).choice(3, size=(steps, 4), p=[0.25, 0.45, 0.3])
    assert assert_vector_matches_singles(ENV_ID, actions, seed=11, **kwargs) >= 4
