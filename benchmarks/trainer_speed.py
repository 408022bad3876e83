"""End-to-end training frames/s of MetaPPO, side by side in one run (spec/benchmarks.md §3).

(a) MetaPPO + RNNPolicy (GRU 256, plain 64-64 head) against ``sb3_contrib.RecurrentPPO`` +
    ``MlpLstmPolicy`` (one LSTM of 256 shared by actor and critic, 64-64 head): same env, 16 envs,
    same ``n_steps``, 2 epochs x 4 minibatches, PPO settings from the env's preset. Target >= 1.5x.
(b) SplAgger with its hypernetwork head against SplAgger with a plain head (same 256-128 base
    sizes) on MetaTMaze-v0. Target >= 0.5x.

    python benchmarks/trainer_speed.py                 # both comparisons, 3 rounds
    python benchmarks/trainer_speed.py --rounds 5 --threads 1 --n-steps 700

All models are built and warmed up (one untimed update) first; then every round times one update
(rollout + training, ``n_envs * n_steps`` frames) of each variant in turn, and each variant's best
round is reported. Interleaving and taking the best keep the ratios fair on a shared machine whose
load changes during the run.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch as th
from sb3_contrib import RecurrentPPO
from stable_baselines3.common.base_class import BaseAlgorithm

from metarl_agents.ppo import MetaPPO
from metarl_agents.presets import load_preset
from metarl_agents.vec_env import make_vec_env

N_ENVS = 16


def _ppo_settings(env_id: str, n_steps: int) -> dict:
    preset = load_preset(env_id)
    keys = ("gamma", "gae_lambda", "ent_coef", "vf_coef", "max_grad_norm", "clip_range", "learning_rate", "n_epochs")
    return {"n_steps": n_steps, **{k: preset[k] for k in keys}}


def meta_ppo(env_id: str, n_steps: int, policy: str, **policy_kwargs) -> MetaPPO:
    env = make_vec_env(env_id, N_ENVS, seed=0)
    return MetaPPO(policy, env, n_minibatches=4, policy_kwargs=policy_kwargs, seed=0, device="cpu",
                   **_ppo_settings(env_id, n_steps))


def recurrent_ppo(env_id: str, n_steps: int) -> RecurrentPPO:
    env = make_vec_env(env_id, N_ENVS, seed=0)
    policy_kwargs = {"lstm_hidden_size": 256, "net_arch": [64, 64], "shared_lstm": True, "enable_critic_lstm": False}
    return RecurrentPPO("MlpLstmPolicy", env, batch_size=N_ENVS * n_steps // 4, policy_kwargs=policy_kwargs, seed=0,
                        device="cpu", **_ppo_settings(env_id, n_steps))


def variants(env_ids: list[str], n_steps: int) -> dict[str, Callable[[], BaseAlgorithm]]:
    """Name -> model factory, in comparison pairs."""
    out: dict[str, Callable[[], BaseAlgorithm]] = {}
    for env_id in env_ids:
        out[f"{env_id} MetaPPO RNN"] = lambda e=env_id: meta_ppo(e, n_steps, "RNN", head="mlp", net_arch=(64, 64))
        out[f"{env_id} RecurrentPPO LSTM"] = lambda e=env_id: recurrent_ppo(e, n_steps)
    out["MetaTMaze-v0 SplAgger hyper head"] = lambda: meta_ppo("MetaTMaze-v0", n_steps, "SplAgger", head="hyper")
    out["MetaTMaze-v0 SplAgger plain head"] = lambda: meta_ppo("MetaTMaze-v0", n_steps, "SplAgger", head="mlp")
    return out


def measure(models: dict[str, BaseAlgorithm], rounds: int) -> dict[str, float]:
    """Best frames/s of one update per model over ``rounds`` interleaved rounds."""
    best = dict.fromkeys(models, 0.0)
    for model in models.values():
        model.learn(model.n_envs * model.n_steps)  # warm-up update
    for _ in range(rounds):
        for name, model in models.items():
            frames = model.n_envs * model.n_steps
            start = time.perf_counter()
            model.learn(frames, reset_num_timesteps=False)
            best[name] = max(best[name], frames / (time.perf_counter() - start))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--envs", nargs="+", default=["MetaTMaze-v0", "MetaPlanningGame-v0"])
    parser.add_argument("--n-steps", type=int, default=700)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest for these batch sizes)")
    args = parser.parse_args()
    th.set_num_threads(args.threads)
    fps = measure({name: make() for name, make in variants(args.envs, args.n_steps).items()}, args.rounds)
    for name, value in fps.items():
        print(f"{name:45s} {value:9.0f} frames/s")
    print(f"\nratios (n_envs {N_ENVS}, n_steps {args.n_steps}, best of {args.rounds} rounds, {args.threads} thread(s))")
    for env_id in args.envs:
        ratio = fps[f"{env_id} MetaPPO RNN"] / fps[f"{env_id} RecurrentPPO LSTM"]
        print(f"  {env_id}: MetaPPO / RecurrentPPO = {ratio:.2f}x (target >= 1.5x)")
    ratio = fps["MetaTMaze-v0 SplAgger hyper head"] / fps["MetaTMaze-v0 SplAgger plain head"]
    print(f"  SplAgger hyper head / plain head = {ratio:.2f}x (target >= 0.5x)")


if __name__ == "__main__":
    main()
