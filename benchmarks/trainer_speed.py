"""End-to-end training frames/s of MetaPPO against sb3-contrib's RecurrentPPO, side by side in one run.

For every discrete family, each with its preset's ``n_steps`` and PPO settings,
16 envs, 2 epochs x 4 minibatches:

* ``MetaPPO RNN``: MetaPPO + RNNPolicy (GRU 256, plain 64-64 head), against
* ``RecurrentPPO LSTM``: ``sb3_contrib.RecurrentPPO`` + ``MlpLstmPolicy`` (one LSTM of 256 shared by
  actor and critic, 64-64 head), the equal model. Target >= 1.5x, with one and with two torch threads.
* ``MetaPPO SplAgger plain``: SplAgger (GRU 256, split max) with the plain head (256-128), for scale.

``--head-comparison`` adds SplAgger with its hypernetwork head against the plain head on MetaTMaze-v0
(target >= 0.5x; slow: the hypernetwork variant runs at a fifth of the plain one).

    python benchmarks/trainer_speed.py                                    # every family, 1 and 2 threads
    python benchmarks/trainer_speed.py --families MetaTMaze-v0 MetaPlanningGame-v0 --threads 1 --rounds 4
    python benchmarks/trainer_speed.py --families MetaTMaze-v0 --head-comparison

All models of a run are built and warmed up (one untimed update) first; then, for each thread count,
every round times one update (rollout + training, ``n_envs * n_steps`` frames) of each model in turn
and each model's best round is reported. Interleaving and taking the best keep the ratios fair on a
shared machine whose load changes during the run. With one thread the ratio of process CPU times
is printed too: it is what the machine's other load disturbs least. The load average is printed
before and after each thread count: above about 0.5 the machine was not quiet.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import torch as th
from sb3_contrib import RecurrentPPO
from stable_baselines3.common.base_class import BaseAlgorithm

from metarl_agents.training.ppo import MetaPPO
from metarl_agents.training.presets import load_preset
from metarl_agents.training.vec_env import make_vec_env

N_ENVS = 16
#: The registered ids with Discrete actions (the MuJoCo Cheetah families are Box).
DISCRETE_FAMILIES = (
    "MetaTMaze-v0", "MetaTMazeLongShort-v0", "MetaTMazeAgreement-v0", "MetaTMazeLatent-v0",
    "MetaMinecraftLongShort-v0", "MetaPlanningGame-v0", "MetaPlanningGame4x4-v0", "MetaPlanningGameJustGoal-v0",
    "MetaFrozenLake-v0", "MetaFrozenLakePenalty-v0",
)
META, RECURRENT, SPLAGGER = "MetaPPO RNN", "RecurrentPPO LSTM", "MetaPPO SplAgger plain"
HYPER, PLAIN = "MetaTMaze-v0 SplAgger hyper head", "MetaTMaze-v0 SplAgger plain head"


def _ppo_settings(env_id: str, n_steps: int | None) -> dict:
    preset = load_preset(env_id)
    keys = ("gamma", "gae_lambda", "ent_coef", "vf_coef", "max_grad_norm", "clip_range", "learning_rate", "n_epochs")
    return {"n_steps": n_steps or preset["n_steps"], **{k: preset[k] for k in keys}}


def meta_ppo(env_id: str, n_steps: int | None, policy: str, device: str = "cpu", **policy_kwargs) -> MetaPPO:
    env = make_vec_env(env_id, N_ENVS, seed=0)
    return MetaPPO(policy, env, n_minibatches=4, policy_kwargs=policy_kwargs, seed=0, device=device,
                   **_ppo_settings(env_id, n_steps))


def recurrent_ppo(env_id: str, n_steps: int | None) -> RecurrentPPO:
    env = make_vec_env(env_id, N_ENVS, seed=0)
    settings = _ppo_settings(env_id, n_steps)
    policy_kwargs = {"lstm_hidden_size": 256, "net_arch": [64, 64], "shared_lstm": True, "enable_critic_lstm": False}
    return RecurrentPPO("MlpLstmPolicy", env, batch_size=N_ENVS * settings["n_steps"] // 4, policy_kwargs=policy_kwargs,
                        seed=0, device="cpu", **settings)


def variants(env_ids: list[str], n_steps: int | None = None, splagger: bool = True,
             head_comparison: bool = False) -> dict[str, Callable[[], BaseAlgorithm]]:
    """Name -> model factory; ``n_steps`` None takes each env's preset value."""
    out: dict[str, Callable[[], BaseAlgorithm]] = {}
    for env_id in env_ids:
        out[f"{env_id} {META}"] = lambda e=env_id: meta_ppo(e, n_steps, "RNN", head="mlp", net_arch=(64, 64))
        out[f"{env_id} {RECURRENT}"] = lambda e=env_id: recurrent_ppo(e, n_steps)
        if splagger:
            out[f"{env_id} {SPLAGGER}"] = lambda e=env_id: meta_ppo(e, n_steps, "SplAgger", head="mlp")
    if head_comparison:
        out[HYPER] = lambda: meta_ppo("MetaTMaze-v0", n_steps, "SplAgger", head="hyper")
        out[PLAIN] = lambda: meta_ppo("MetaTMaze-v0", n_steps, "SplAgger", head="mlp")
    return out


def measure(models: dict[str, BaseAlgorithm], rounds: int) -> dict[str, float]:
    """Warm every model up, then its best frames/s (wall time) over ``rounds`` interleaved rounds."""
    for model in models.values():
        model.learn(model.n_envs * model.n_steps)
    return measure_wall_and_cpu(models, rounds)[0]


def measure_wall_and_cpu(models: dict[str, BaseAlgorithm], rounds: int) -> tuple[dict[str, float], dict[str, float]]:
    """Best frames/s of one update per model over ``rounds`` interleaved rounds: by wall time and by
    process CPU time (the latter counts every torch thread of the process)."""
    wall, cpu = dict.fromkeys(models, 0.0), dict.fromkeys(models, 0.0)
    for _ in range(rounds):
        for name, model in models.items():
            frames = model.n_envs * model.n_steps
            start, start_cpu = time.perf_counter(), time.process_time()
            model.learn(frames, reset_num_timesteps=False)
            wall[name] = max(wall[name], frames / (time.perf_counter() - start))
            cpu[name] = max(cpu[name], frames / max(time.process_time() - start_cpu, 1e-9))
    return wall, cpu


def _load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def report(fps: dict[str, float], cpu: dict[str, float], families: list[str], threads: int) -> None:
    for name, value in fps.items():
        extra = f"   ({cpu[name]:7.0f} by CPU time)" if threads == 1 else ""
        print(f"  {name:55s} {value:7.0f} frames/s{extra}")
    print("  ratios, wall time" + (" (CPU time)" if threads == 1 else "") + ":")
    for env_id in families:
        a, b = f"{env_id} {META}", f"{env_id} {RECURRENT}"
        line = f"    {env_id:28s} MetaPPO / RecurrentPPO = {fps[a] / fps[b]:5.2f}x"
        line += f" ({cpu[a] / cpu[b]:5.2f}x)" if threads == 1 else ""
        s = f"{env_id} {SPLAGGER}"
        if s in fps:
            line += f"   SplAgger plain / RecurrentPPO = {fps[s] / fps[b]:5.2f}x"
        print(line + "   (target MetaPPO >= 1.5x)")
    if HYPER in fps:
        print(f"    SplAgger hyper head / plain head = {fps[HYPER] / fps[PLAIN]:.2f}x (target >= 0.5x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--families", "--envs", nargs="+", default=list(DISCRETE_FAMILIES), metavar="ENV_ID",
                        help="env ids to run (default: every discrete family)")
    parser.add_argument("--n-steps", type=int, default=None, help="steps per env per update (default: the preset's)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch thread counts, run in turn")
    parser.add_argument("--no-splagger", action="store_true", help="leave out SplAgger with the plain head")
    parser.add_argument("--head-comparison", action="store_true", help="add SplAgger hyper vs plain head on MetaTMaze-v0")
    args = parser.parse_args()
    unknown = sorted(set(args.families) - set(DISCRETE_FAMILIES))
    if unknown:
        parser.error(f"unknown or non-discrete families {unknown}; choose from {list(DISCRETE_FAMILIES)}")
    if args.rounds < 1 or any(t < 1 for t in args.threads):
        parser.error(f"--rounds and --threads must be >= 1, got {args.rounds} and {args.threads}")

    th.set_num_threads(args.threads[0])
    factories = variants(args.families, args.n_steps, not args.no_splagger, args.head_comparison)
    models = {name: make() for name, make in factories.items()}
    for model in models.values():
        model.learn(model.n_envs * model.n_steps)  # warm-up update
    for threads in args.threads:
        th.set_num_threads(threads)
        before = _load()
        fps, cpu = measure_wall_and_cpu(models, args.rounds)
        print(f"\n{threads} torch thread(s), n_envs {N_ENVS}, n_steps {args.n_steps or 'of the preset'}, "
              f"best of {args.rounds} interleaved rounds; {before} before, {_load()} after")
        report(fps, cpu, args.families, threads)


if __name__ == "__main__":
    main()
