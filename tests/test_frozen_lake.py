"""Frozen Lake task families: exact optima, model vs rollouts, generator, benchmark sets, batching."""

from __future__ import annotations

import itertools
import pickle
import warnings
from collections import deque

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.envs.toy_text.frozen_lake import FrozenLakeEnv
from gymnasium.utils.env_checker import check_env
from vector_equivalence import assert_vector_matches_singles

import metarl_envs  # noqa: F401  (registers the ids)
from metarl_envs import frozen_lake as fl

IDS = {"hole": "MetaFrozenLake-v0", "penalty": "MetaFrozenLakePenalty-v0"}
GAMMA, HORIZON = 0.8, 49
SIX_MOVE_OPTIMUM = sum(GAMMA**t for t in range(5, HORIZON))
ALL_FROZEN = np.zeros(16, dtype=np.int8)


def maps_from_rows(*rows: str) -> np.ndarray:
    """A map from four strings of '.' (frozen) and 'x' (marked)."""
    return np.array([c == "x" for row in rows for c in row], dtype=np.int8)


def shortest_path(task: np.ndarray) -> int | None:
    """Moves from start to goal avoiding marked cells (plain BFS, independent of the module)."""
    dist = {0: 0}
    queue = deque([0])
    while queue:
        s = queue.popleft()
        r, c = divmod(s, 4)
        for nr, nc in ((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)):
            n = nr * 4 + nc
            if 0 <= nr < 4 and 0 <= nc < 4 and not task[n] and n not in dist:
                dist[n] = dist[s] + 1
                queue.append(n)
    return dist.get(15)


def optimum(P: np.ndarray, R: np.ndarray, horizon: int = HORIZON, gamma: float = GAMMA):
    """Finite-horizon value iteration: optimal values at t = 0 and the greedy action per (t, s)."""
    V = np.zeros(P.shape[:-3] + (16,))
    policy = []
    for _ in range(horizon):
        Q = R + gamma * np.einsum("...san,...n->...sa", P, V)
        policy.append(Q.argmax(-1))
        V = Q.max(-1)
    return V, np.stack(policy[::-1])


def rollout_returns(env_id: str, task: np.ndarray, n: int, act, seed: int = 0, **kwargs) -> np.ndarray:
    """Discounted returns of ``n`` rollouts on ``task`` with the native vector env; ``act(t, obs)``."""
    envs = gym.make_vec(env_id, num_envs=n, **kwargs)
    obs, _ = envs.reset(seed=seed, options={"tasks": np.repeat(task[None], n, axis=0)})
    returns = np.zeros(n)
    for t in range(HORIZON):
        obs, reward, terminated, _, _ = envs.step(act(t, obs))
        returns += GAMMA**t * reward
    assert terminated.all()  # the horizon is the episode
    return returns


# --- exact optima ------------------------------------------------------------------------------
def test_six_move_optimum_value():
    assert SIX_MOVE_OPTIMUM == pytest.approx(1.63831, abs=5e-6)
    for kind in ("hole", "penalty"):
        P, R = fl.transition_model(ALL_FROZEN, kind)
        assert optimum(P, R)[0][0] == pytest.approx(1.63831, abs=5e-6)


def test_every_generated_map_reaches_the_six_move_optimum():
    """On a 4x4 grid every map with a path has a 6-move one, so every generated map's optimum is 1.63831.

    Value iteration over the model of every hole map the generator can produce (and the penalty
    benchmark set) gives the arrival-at-step-5 return; maps the generator cannot produce score less.
    """
    hole_maps, _ = fl.map_distribution("hole", 0.2)
    for kind, maps in (("hole", hole_maps), ("penalty", fl.benchmark_tasks("penalty", "generated"))):
        assert {shortest_path(m) for m in maps} == {6}
        P, R = (np.stack(x) for x in zip(*(fl.transition_model(m, kind) for m in maps), strict=True))
        np.testing.assert_allclose(optimum(P, R)[0][:, 0], SIX_MOVE_OPTIMUM, rtol=1e-12)
    # A penalty map without a penalty-free path: the best plan crosses one penalty cell at step 4.
    walled = maps_from_rows("....", "....", "...x", "..x.")
    value = optimum(*fl.transition_model(walled, "penalty"))[0][0]
    assert value == pytest.approx(SIX_MOVE_OPTIMUM - 0.5 * GAMMA**4, rel=1e-12)
    # Slipping lowers the optimum.
    tasks = fl.benchmark_tasks("hole", "generated")
    assert max(optimum(*fl.transition_model(m, "hole", slippery=True))[0][0] for m in tasks) < 1.0


def test_env_method_matches_module_function_and_validates():
    env = gym.make(IDS["hole"], slippery=True)
    env.reset(seed=3)
    P, R = env.unwrapped.transition_model()
    P2, R2 = fl.transition_model(env.unwrapped.get_task(), "hole", slippery=True)
    np.testing.assert_array_equal(P, P2)
    np.testing.assert_array_equal(R, R2)
    with pytest.raises(ValueError, match="MetaFrozenLake"):
        env.unwrapped.transition_model(np.ones(16))


def test_slippery_transitions_match_gymnasium_frozenlake():
    task = fl.benchmark_tasks("hole", "generated")[3]
    desc = ["".join("H" if task[4 * r + c] else "F" for c in range(4)) for r in range(4)]
    desc[0], desc[3] = "S" + desc[0][1:], desc[3][:3] + "G"
    gym_P = FrozenLakeEnv(desc=desc, is_slippery=True).P
    P, R = fl.transition_model(task, "hole", slippery=True)
    for s in np.flatnonzero(task == 0)[:-1]:  # non-absorbing cells
        for a in range(4):
            expected = np.zeros(16)
            for prob, nxt, _, _ in gym_P[s][a]:
                expected[nxt] += prob
            np.testing.assert_allclose(P[s, a], expected, atol=1e-12)
            reward = np.where(task == 1, -1.0, 0.0)
            reward[15] = 1.0
            assert R[s, a] == pytest.approx(expected @ reward)
    for s in [*np.flatnonzero(task), 15]:  # holes and goal absorb and keep paying
        np.testing.assert_array_equal(P[s, :, s], 1.0)
        np.testing.assert_array_equal(R[s], -1.0 if s != 15 else 1.0)


def test_penalty_cells_are_not_absorbing():
    task = maps_from_rows("...x", "....", "....", "....")
    P, R = fl.transition_model(task, "penalty")
    assert P[3, fl.DOWN, 7] == 1.0 and P[2, fl.RIGHT, 3] == 1.0 and P[3, fl.UP, 3] == 1.0
    assert R[2, fl.RIGHT] == -0.5 and R[3, fl.DOWN] == 0.0 and R[3, fl.UP] == -0.5  # bumping the wall stays
    assert R[14, fl.RIGHT] == 1.0 and P[15, :, 15].tolist() == [1.0] * 4


# --- model vs env ------------------------------------------------------------------------------
def test_optimal_policy_rollouts_match_value_exactly_without_slip():
    for kind, env_id in IDS.items():
        for task in fl.benchmark_tasks(kind, "generated")[:5]:
            V, policy = optimum(*fl.transition_model(task, kind))
            returns = rollout_returns(env_id, task, 2, lambda t, obs, policy=policy: policy[t, obs])
            np.testing.assert_allclose(returns, V[0], rtol=1e-12)


@pytest.mark.parametrize("kind", ["hole", "penalty"])
def test_slippery_monte_carlo_agrees_with_model(kind):
    """4,000 rollouts of the optimal and of the uniform policy land within 4 standard errors.

    Four standard errors: a correct env fails with probability ~6e-5 for a fresh seed, while a
    wrong slip rule or reward (e.g. slips of 1/4, a missing absorbing cell) moves the mean by far
    more than the ~0.02 tolerance; the seed is fixed, so the test is deterministic.
    """
    task = fl.benchmark_tasks(kind, "generated")[1]
    P, R = fl.transition_model(task, kind, slippery=True)
    V, policy = optimum(P, R)
    n = 4000
    returns = rollout_returns(IDS[kind], task, n, lambda t, obs: policy[t, obs], seed=1, slippery=True)
    assert abs(returns.mean() - V[0]) < 4 * returns.std() / np.sqrt(n)

    # The uniform policy, evaluated exactly: V_t = mean_a (R + gamma P V_{t+1}).
    V_uniform = np.zeros(16)
    for _ in range(HORIZON):
        V_uniform = (R + GAMMA * P @ V_uniform).mean(-1)
    rng = np.random.default_rng(2)
    returns = rollout_returns(IDS[kind], task, n, lambda t, obs: rng.integers(0, 4, n), seed=2, slippery=True)
    assert abs(returns.mean() - V_uniform[0]) < 4 * returns.std() / np.sqrt(n)


def test_scripted_rewards_and_absorption():
    # All frozen: 6 moves to the goal, then +1 on every remaining step (43 + the arrival step).
    env = gym.make(IDS["hole"])
    obs, _ = env.reset(seed=0, options={"task": ALL_FROZEN})
    rewards, cells = [], []
    for t in range(HORIZON):
        action = [fl.RIGHT, fl.RIGHT, fl.RIGHT, fl.DOWN, fl.DOWN, fl.DOWN][t] if t < 6 else fl.LEFT
        obs, reward, terminated, truncated, info = env.step(action)
        rewards.append(reward)
        cells.append(int(obs))
        assert terminated == (t == HORIZON - 1)  # (TimeLimit also flags the last step truncated)
    assert cells[:6] == [1, 2, 3, 7, 11, 15] and set(cells[6:]) == {15}
    assert rewards == [0.0] * 5 + [1.0] * 44
    assert info["episode_end"] and info["episode_return"] == 44.0

    # A hole at cell 3: walking right falls in at step 3 and stays there at -1 a step.
    task = maps_from_rows("...x", "....", "....", "....")
    obs, _ = env.reset(options={"task": task})
    returns = [env.step(a)[1] for a in [fl.RIGHT] * 3 + [fl.DOWN] * (HORIZON - 3)]
    assert returns == [0.0, 0.0] + [-1.0] * (HORIZON - 2) and env.unwrapped.core.pos[0] == 3

    # Penalty cells cost -0.5 each visit and can be crossed; bumping a wall keeps the agent in place.
    env = gym.make(IDS["penalty"])
    env.reset(options={"task": maps_from_rows(".x..", "....", "....", "....")})
    steps = [env.step(a)[:2] for a in (fl.UP, fl.RIGHT, fl.RIGHT, fl.LEFT)]
    assert steps == [(0, 0.0), (1, -0.5), (2, 0.0), (1, -0.5)]


# --- generator and benchmark sets -------------------------------------------------------------
@pytest.mark.parametrize("kind", ["hole", "penalty"])
def test_map_distribution_is_redraw_until_path(kind):
    """The enumerated distribution equals the rejection sampler's, computed independently."""
    free_rule = (lambda r, c: r + c <= 2) if kind == "hole" else (lambda r, c: False)
    cells = [s for s in range(1, 15) if not free_rule(*divmod(s, 4))]
    expected = {}
    for bits in itertools.product((0, 1), repeat=len(cells)):
        task = np.zeros(16, dtype=np.int8)
        task[cells] = bits
        if shortest_path(task) is not None:
            expected[task.tobytes()] = 0.2 ** sum(bits) * 0.8 ** (len(cells) - sum(bits))
    total = sum(expected.values())
    maps, cdf = fl.map_distribution(kind, 0.2)
    pmf = np.diff(cdf, prepend=0.0)
    assert len(maps) == len(expected)
    for task, p in zip(maps, pmf, strict=True):
        assert p == pytest.approx(expected[task.tobytes()] / total, rel=1e-9)


def test_sampled_hole_maps_are_valid_and_follow_the_distribution():
    env = gym.make(IDS["hole"]).unwrapped
    env.reset(seed=5)
    tasks = np.stack(env.sample_tasks(20000))
    rows, cols = np.divmod(np.arange(16), 4)
    assert not tasks[:, rows + cols <= 2].any() and not tasks[:, 15].any()
    assert all(shortest_path(t) is not None for t in tasks[:2000])
    maps, cdf = fl.map_distribution("hole", 0.2)
    marginal = np.diff(cdf, prepend=0.0) @ maps
    se = np.sqrt(marginal * (1 - marginal) / len(tasks))
    assert np.all(np.abs(tasks.mean(0) - marginal) <= 5 * se + 1e-12)
    # The reset draws through the same mapping.
    _, info = env.reset(seed=5)
    assert info["task"].dtype == np.int8 and shortest_path(info["task"]) is not None


BENCHMARK_HOLE = [
    "......x.........", ".......x...x....", ".............x..", "......x...x...x.", "...x.........x..",
    "......x..x.x....", "...x.......x....", ".........x......", ".........x......", "......x....x....",
]
BENCHMARK_PENALTY = [
    "..x...........x.", ".....x......x...", "..x......x......", "......xx....x...", ".............x..",
    "...........xx...", "................", "....x.......x...", "..x..x.....x....", ".......x..x.....",
    "..x.....x.......", "...x.x.......x..", "....x....x......", "...x.....x.x....", ".....x......x...",
    "....x.x..x....x.", ".......x........", "...x.....x......", ".x..............", "................",
]


def test_benchmark_sets_are_fixed_and_valid():
    holes, penalties = fl.benchmark_tasks("hole", "generated"), fl.benchmark_tasks("penalty", "generated")
    assert holes.shape == (10, 16) and penalties.shape == (20, 16)
    # Pinned: the sets must not change across runs, platforms or refactors of the generator.
    assert ["".join(".x"[c] for c in m) for m in holes] == BENCHMARK_HOLE
    assert ["".join(".x"[c] for c in m) for m in penalties] == BENCHMARK_PENALTY
    for kind, tasks in (("hole", holes), ("penalty", penalties)):
        env = gym.make(IDS[kind]).unwrapped
        for task in tasks:
            np.testing.assert_array_equal(env.core.check_task(task), task)
            assert shortest_path(task) is not None
    with pytest.raises(ValueError, match="kind"):
        fl.benchmark_tasks("holes")
    with pytest.raises(ValueError, match=r"source must be one of \('paper', 'generated'\), got 'authors'"):
        fl.benchmark_tasks("hole", source="authors")


#: The authors' maps as released (their row strings; H = hole or penalty cell), typed in independently
#: of the package data so that a damaged or edited data file fails here.
PAPER_HOLE_ROWS = [
    "SFFF FFFF FFFF FFFG", "SFFF FFFF FFFF FFFG", "SFFF FFFF FFFH FHFG", "SFFH FFFF FFHF FFHG",
    "SFFF FFFF FFFF FHFG", "SFFF FFFF FFHH FFFG", "SFFF FFFF FHHF FFFG", "SFFF FFFF FFFF FFFG",
    "SFFH FFFF FFFF FFFG", "SFFF FFFH FFFF FFFG",
]


def test_paper_maps_load_are_valid_and_reach_their_optimum():
    holes, penalties = fl.benchmark_tasks("hole"), fl.benchmark_tasks("penalty")  # source="paper" is the default
    assert holes.shape == (10, 16) and penalties.shape == (20, 16)
    np.testing.assert_array_equal(holes, [[c == "H" for c in rows.replace(" ", "")] for rows in PAPER_HOLE_ROWS])
    assert (holes.sum(1) == 0).sum() == 3  # 3 hole maps without a hole
    holes[0, 5] = 1  # a copy: the cached set is not altered
    assert fl.benchmark_tasks("hole")[0, 5] == 0
    for kind, tasks in (("hole", fl.benchmark_tasks("hole")), ("penalty", penalties)):
        env = gym.make(IDS[kind]).unwrapped
        for task in tasks:
            np.testing.assert_array_equal(env.core.check_task(task), task)
            moves = shortest_path(task)
            assert moves is not None  # a path S -> G that avoids every marked cell
            # Every released map has a clean 6-move path, so value iteration gives 1.63831 on each.
            V, _ = optimum(*fl.transition_model(task, kind))
            assert moves == 6 and V[0] == pytest.approx(SIX_MOVE_OPTIMUM, rel=1e-12)
    # The uniform policy's exact return on the hole maps, -0.240, is the paper's random-init K = 0
    # figure (-0.242, from sampled evaluation).
    uniform = []
    for task in fl.benchmark_tasks("hole"):
        P, R = fl.transition_model(task, "hole")
        V = np.zeros(16)
        for _ in range(HORIZON):
            V = (R + GAMMA * P @ V).mean(-1)
        uniform.append(V[0])
    assert np.mean(uniform) == pytest.approx(-0.24, abs=5e-4)


def test_parse_map_validates():
    np.testing.assert_array_equal(fl.parse_map(["SFFH", "FFFF", "FFFF", "FFFG"]), maps_from_rows("...x", *["...."] * 3))
    for bad in (["SFFF", "FFFF", "FFFF", "FFFF"], ["SFFX", "FFFF", "FFFF", "FFFG"], ["SFF", "FFFF", "FFFF", "FFFG"]):
        with pytest.raises(ValueError, match="S first, G last and F or H between"):
            fl.parse_map(bad)


# --- Gymnasium contract ------------------------------------------------------------------------
VARIANTS = [{}, {"slippery": True}, {"observation": "onehot", "episodes_per_trial": 3, "max_episode_steps": 147}]


@pytest.mark.parametrize("env_id", IDS.values())
@pytest.mark.parametrize("kwargs", VARIANTS)
def test_check_env_pickle_and_renders(env_id, kwargs):
    for render_mode in (None, "rgb_array", "ansi"):
        env = gym.make(env_id, render_mode=render_mode, **kwargs)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            check_env(env.unwrapped)
    env = gym.make(env_id, **kwargs)
    env.reset(seed=4)
    for _ in range(20):
        env.step(env.action_space.sample())
    clone = pickle.loads(pickle.dumps(env))
    for a in np.random.default_rng(0).integers(0, 4, 200):
        first, second = env.step(a), clone.step(a)
        np.testing.assert_array_equal(first[0], second[0])
        assert first[1:4] == second[1:4]
        if first[2]:
            np.testing.assert_array_equal(env.reset()[0], clone.reset()[0])


def test_observation_variants():
    env = gym.make(IDS["hole"], observation="onehot", episodes_per_trial=2, max_episode_steps=98)
    assert env.observation_space.shape == (17,)
    obs, _ = env.reset(seed=0, options={"task": ALL_FROZEN})
    np.testing.assert_array_equal(obs, np.eye(17, dtype=np.float32)[0])
    obs, *_ = env.step(fl.DOWN)
    np.testing.assert_array_equal(obs, np.eye(17, dtype=np.float32)[4])
    for _ in range(HORIZON - 1):
        obs, _, terminated, _, info = env.step(fl.DOWN)
    assert not terminated and info["inner_episode"] == 1 and info["episode_end"]
    assert obs[0] == 1.0 and obs[16] == 1.0 and obs.sum() == 2.0  # next episode at the start, flag set
    np.testing.assert_array_equal(info["final_episode_observation"], np.eye(17, dtype=np.float32)[12])
    assert gym.make(IDS["hole"]).observation_space == gym.spaces.Discrete(16)


def test_render_outputs():
    task = maps_from_rows("...x", "....", "....", "....")
    env = gym.make(IDS["hole"], render_mode="ansi")
    env.reset(seed=0, options={"task": task})
    assert env.render() == "\n\x1b[41mS\x1b[0mFFH\nFFFF\nFFFF\nFFFG\n"
    env.step(fl.RIGHT)
    assert env.render() == "  (Right)\nS\x1b[41mF\x1b[0mFH\nFFFF\nFFFF\nFFFG\n"
    env = gym.make(IDS["penalty"], render_mode="rgb_array", render_scale=1)
    env.reset(seed=0, options={"task": task})
    img = env.render()
    assert img.shape == (64, 64, 3) and img.dtype == np.uint8
    assert tuple(img[8, 8]) == fl.PALETTE["agent"] and tuple(img[2, 2]) == fl.PALETTE["start"]
    assert tuple(img[8, 56]) == fl.PALETTE["penalty"] and tuple(img[56, 56]) == fl.PALETTE["goal"]


@pytest.mark.parametrize(
    "kwargs", [{"slippery": True}, {"observation": "onehot", "episodes_per_trial": 2}]
)
@pytest.mark.parametrize("env_id", IDS.values())
def test_vector_env_matches_single_envs_across_autoresets(env_id, kwargs):
    """make_vec(num_envs=4, seed=s) steps exactly like single envs seeded s + i, over three trials."""
    actions = np.random.default_rng(0).integers(0, 4, size=(3 * 98 + 5, 4))
    assert assert_vector_matches_singles(env_id, actions, seed=11, **kwargs) >= 3 * 4


def test_same_seed_same_trajectory_and_tasks_differ_across_seeds():
    def run(seed):
        env = gym.make(IDS["penalty"], slippery=True)
        obs, info = env.reset(seed=seed)
        trace = [info["task"].tolist(), int(obs)]
        trace += [int(env.step(a)[0]) for a in np.random.default_rng(1).integers(0, 4, 49)]
        return trace

    assert run(7) == run(7)
    assert len({str(run(s)) for s in range(5)}) > 1


# --- validation --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"slippery": "yes"}, "slippery"),
        ({"horizon": 0}, "horizon"),
        ({"observation": "rgb"}, "observation"),
        ({"hole_prob": 1.0}, "hole_prob"),
        ({"hole_prob": -0.1}, "hole_prob"),
        ({"episodes_per_trial": 2, "max_episode_steps": 98}, "episodes_per_trial"),
    ],
)
def test_invalid_kwargs_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        gym.make(IDS["hole"], **kwargs)


def test_invalid_tasks_and_actions_raise():
    hole = gym.make(IDS["hole"]).unwrapped
    penalty = gym.make(IDS["penalty"]).unwrapped
    bad = {
        "shape": np.zeros(15),
        "code": np.full(16, 2),
        "start": maps_from_rows("x...", "....", "....", "...."),
        "goal": maps_from_rows("....", "....", "....", "...x"),
    }
    for task in bad.values():
        for env in (hole, penalty):
            with pytest.raises(ValueError, match=env.core.family):
                env.set_task(task)
    blocked = maps_from_rows("....", "....", "...x", "..x.")
    near_start = maps_from_rows("..x.", "....", "....", "....")
    for task in (blocked, near_start):
        with pytest.raises(ValueError, match="path"):
            hole.set_task(task)
        penalty.set_task(task)  # penalty cells block nothing
        np.testing.assert_array_equal(penalty.get_task(), task)
    hole.reset(seed=0)
    for action in (4, -1, 1.5, [0, 1]):
        with pytest.raises(ValueError, match="Discrete"):
            hole.step(action)
