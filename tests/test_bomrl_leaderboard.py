"""BO-MRL and MAML-TRPO on the leaderboard: runs into the store, the report ranks them, exact resume, bad input.

Every run here is a tiny one on MetaPointNav2D-v0 (2 tasks x (2 + 2) trajectories of 10 + 5 steps = 120
frames per meta-iteration, a 8-unit policy), a fraction of a second per meta-iteration.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from metarl_agents.bomrl.mdp import single_threaded
from metarl_agents.leaderboard.meta_gradient import MetaGradientTrainer, build_meta_gradient_grid
from metarl_agents.leaderboard.runner import checkpoint_dir, run_grid
from metarl_agents.leaderboard.store import ResultStore

POINT = dict(n_trajectories=2, post_trajectories=2, tasks_per_iteration=2, test_rounds=1, test_trajectories=2,
             inner_steps=3, horizon=10, continuation=5, hidden=[8])
FRAMES_PER_ITERATION = 2 * (2 + 2) * (10 + 5)
ENV = "MetaPointNav2D-v0"
HERE = Path(__file__).parent


@pytest.fixture(autouse=True)
def one_torch_thread():
    with single_threaded():
        yield


def points(db: Path) -> dict[str, list[tuple]]:
    with ResultStore(db, readonly=True) as store:
        return {run.run_key: [(p.frames, p.meta_episode_return, p.episode_returns) for p in store.evaluations(run.id)]
                for run in store.runs()}


def grid(agents=("BOMRL-Alg1",), seeds=("1",), iterations=4, every=2, **settings):
    return build_meta_gradient_grid([ENV], list(agents), list(seeds), iterations=iterations,
                                    eval_every_iterations=every, overrides=POINT, **settings)


def test_bench_runs_both_agents_into_the_store_and_the_report_ranks_them_with_intervals(tmp_path, capsys):
    from metarl_agents.cli.bench import main

    db, out = tmp_path / "results.db", tmp_path / "report"
    overrides = [item for key, value in POINT.items() for item in ("--override", f"{key}={json.dumps(value)}")]
    assert main(["run", "--agents", "BOMRL-Alg1", "MAML-TRPO", "--envs", ENV, "--seeds", "2", "--iterations", "4",
                 "--eval-every-iterations", "2", *overrides, "--db", str(db), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "4 runs" in printed and "iterations = 4" in printed and "frames_per_iteration = 120" in printed
    with ResultStore(db, readonly=True) as store:
        runs = store.runs()
        assert sorted((r.agent, r.seed, r.status, r.protocol) for r in runs) == [
            ("BOMRL-Alg1", 0, "finished", "bomrl"), ("BOMRL-Alg1", 1, "finished", "bomrl"),
            ("MAML-TRPO", 0, "finished", "bomrl"), ("MAML-TRPO", 1, "finished", "bomrl")]
        # the learning rate is the adaptation's step
        assert {(r.agent, r.learning_rate) for r in runs} == {("BOMRL-Alg1", 1e-3), ("MAML-TRPO", 0.1)}
        assert {r.frames for r in runs} == {4 * FRAMES_PER_ITERATION}
        assert {r.paper_frames for r in runs} == {500 * FRAMES_PER_ITERATION}
        for run in runs:
            stored = store.evaluations(run.id)
            assert [p.frames for p in stored] == [2 * FRAMES_PER_ITERATION, 4 * FRAMES_PER_ITERATION]
            for p in stored:  # K = 0 and K = 1 returns; the point's return is K = 1
                assert len(p.episode_returns) == 2 and p.meta_episode_return == p.episode_returns[1] < 0
            assert run.resolved_config["iterations"] == 4 and run.resolved_config["method"] in ("alg1", "maml")
    assert main(["report", "--db", str(db), "--out", str(out)]) == 0
    text = (out / "leaderboard.md").read_text()
    assert f"## {ENV} — 4 meta-iterations (480 frames) (REDUCED BUDGET; paper: 500) — BO-MRL protocol" in text
    assert "evaluated every 2 meta-iterations and at the end by a meta-test on the protocol's 9 test tasks" in text
    rows = {row["agent"]: row for row in csv.DictReader((out / "leaderboard.csv").open())}
    assert set(rows) == {"BOMRL-Alg1", "MAML-TRPO"}
    assert sorted(int(row["rank_final"]) for row in rows.values()) == [1, 2]
    for row in rows.values():  # a mean over the two seeds within its bootstrap interval
        assert row["n_seeds"] == "2"
        assert float(row["final_ci_low"]) < float(row["final_mean"]) < float(row["final_ci_high"])
    assert (out / f"{ENV}__frames480-REDUCED.png").stat().st_size > 0


@pytest.mark.parametrize("agent", ["BOMRL-Alg1", "BOMRL-Alg2", "BOMRL-Alg3", "MAML-TRPO"])
def test_frames_count_the_environment_steps_that_meta_training_collects(agent):
    (spec,) = grid(agents=[agent], iterations=3)
    model = MetaGradientTrainer().build(spec)
    learner, collected = model.run.learner, []
    collect = learner.collect

    def counting(*args, **kwargs):
        data = collect(*args, **kwargs)
        collected.append(data.rewards.size)  # (tasks, trajectories, steps)
        return data

    learner.collect = counting
    model.learn(2 * FRAMES_PER_ITERATION - 1)  # whole meta-iterations: the second goes past the target
    assert model.num_timesteps == sum(collected) == 2 * FRAMES_PER_ITERATION and model.run.iterations == 2
    model.run.close()


def test_the_trainer_trains_what_the_command_trains_and_its_evaluations_change_nothing(tmp_path):
    from metarl_agents.bomrl.cheetah import run
    from metarl_agents.leaderboard.meta_gradient import protocol_for

    (spec,) = grid(seeds=["5,"], iterations=3, every=1)  # a meta-test after every meta-iteration
    assert run_grid([spec], tmp_path / "r.db", trainer=MetaGradientTrainer(), show_progress=False).ok
    with ResultStore(tmp_path / "r.db", readonly=True) as store:
        final = tmp_path / store.run_by_key(spec.run_key).checkpoint_path
    trained = MetaGradientTrainer().resume(spec, final).run.history
    command = run(protocol_for(spec), 5, 3, tmp_path / "command", log=lambda _: None)["training_curve"]
    without_time = [{k: v for k, v in record.items() if k != "seconds"} for record in trained]
    assert without_time == [{k: v for k, v in record.items() if k != "seconds"} for record in command]
    assert len(trained) == 3


_KILLED_RUN = """
import os, signal, sys
sys.path.insert(0, {tests!r})
from test_bomrl_leaderboard import grid
from metarl_agents.leaderboard.meta_gradient import MetaGradientTrainer
from metarl_agents.leaderboard.runner import run_grid

class KilledAtSecondEvaluation(MetaGradientTrainer):
    evaluations = 0

    def evaluate(self, model, spec, n_tasks=None):
        self.evaluations += 1
        if self.evaluations == 2:  # the first point and its checkpoint are in the store
            os.kill(os.getpid(), signal.SIGKILL)
        return super().evaluate(model, spec, n_tasks)

run_grid(grid(agents=["MAML-TRPO"], iterations=6), {db!r}, trainer=KilledAtSecondEvaluation(), show_progress=False)
"""


class ResumeRecorder(MetaGradientTrainer):
    def __init__(self) -> None:
        super().__init__()
        self.resumed_at: list[int] = []

    def resume(self, spec, checkpoint):
        model = super().resume(spec, checkpoint)
        self.resumed_at.append(model.num_timesteps)
        return model


def test_a_killed_run_resumes_to_the_numbers_of_an_uninterrupted_one(tmp_path):
    specs = grid(agents=["MAML-TRPO"], iterations=6)
    assert run_grid(specs, tmp_path / "whole.db", trainer=MetaGradientTrainer(), show_progress=False).ok
    expected = points(tmp_path / "whole.db")
    key = specs[0].run_key
    assert [frames for frames, _, _ in expected[key]] == [2 * FRAMES_PER_ITERATION, 4 * FRAMES_PER_ITERATION,
                                                          6 * FRAMES_PER_ITERATION]

    db = tmp_path / "killed.db"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1")
    killed = subprocess.run([sys.executable, "-c", _KILLED_RUN.format(tests=str(HERE), db=str(db))], env=env,
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr
    assert points(db) == {key: expected[key][:1]}
    trainer = ResumeRecorder()
    summary = run_grid(specs, db, trainer=trainer, show_progress=False)
    assert summary.finished == [key] and trainer.resumed_at == [2 * FRAMES_PER_ITERATION]  # from its checkpoint
    assert points(db) == expected  # every frame count and return, bit for bit
    assert [p.name for p in checkpoint_dir(db).iterdir()] == [f"{key}.f{6 * FRAMES_PER_ITERATION}.pt"]


def test_a_checkpoint_of_another_run_is_refused(tmp_path):
    from metarl_agents.leaderboard.checkpoint import CheckpointError

    (first,), (second,) = grid(seeds=["1,"]), grid(seeds=["2,"])
    trainer = MetaGradientTrainer()
    model = trainer.build(first)
    model.learn(FRAMES_PER_ITERATION)
    trainer.save(model, first, tmp_path / "c.pt")
    with pytest.raises(CheckpointError, match="belongs to another run .differs in run_key, seed"):
        trainer.resume(second, tmp_path / "c.pt")
    assert trainer.resume(first, tmp_path / "c.pt").run.history == model.run.history


def test_bad_agent_and_env_combinations_and_settings_name_what_is_allowed(tmp_path, capsys):
    from metarl_agents.bomrl.mujoco_protocol import METHODS, TASK_IDS
    from metarl_agents.cli.bench import main
    from metarl_agents.leaderboard.grid import build_grid, registered_agents
    from metarl_agents.leaderboard.meta_gradient_agents import AGENT_METHODS, ENV_TASKS

    assert {task: env for env, task in ENV_TASKS.items()} == TASK_IDS and set(AGENT_METHODS.values()) == set(METHODS)
    assert set(AGENT_METHODS) <= set(registered_agents())
    with pytest.raises(ValueError, match="BOMRL-Alg1 run on MetaCheetahVel-v0, MetaCheetahDir-v0, MetaPointNav2D-v0 "
                                         "only; got MetaTMaze-v0"):
        build_meta_gradient_grid(["MetaTMaze-v0"], ["BOMRL-Alg1"])
    with pytest.raises(ValueError, match="SplAgger train by frames and BOMRL-Alg2 by meta-iterations"):
        build_meta_gradient_grid([ENV], ["SplAgger", "BOMRL-Alg2"])
    with pytest.raises(ValueError, match="unknown agent 'BOMRL-Alg9'; allowed: .*BOMRL-Alg1, BOMRL-Alg2, BOMRL-Alg3, "
                                         "MAML-TRPO"):
        build_meta_gradient_grid([ENV], ["BOMRL-Alg9"])
    with pytest.raises(ValueError, match="BOMRL-Alg1 train by meta-iterations, not frames: build their runs with "
                                         ".*build_meta_gradient_grid"):
        build_grid([ENV], ["BOMRL-Alg1"])
    with pytest.raises(ValueError, match=r"frames=1000 does not apply .* \(--iterations\)"):
        build_meta_gradient_grid([ENV], ["MAML-TRPO"], frames=1000)
    with pytest.raises(ValueError, match="unknown override 'n_envs'; allowed: n_trajectories, post_trajectories"):
        build_meta_gradient_grid([ENV], ["MAML-TRPO"], overrides={"n_envs": 4})
    with pytest.raises(ValueError, match="inner_lr, maml_lr.* --lrs"):
        build_meta_gradient_grid([ENV], ["MAML-TRPO"], overrides={"maml_lr": 0.01})
    with pytest.raises(ValueError, match="horizon must be an integer >= 1, got 0"):
        build_meta_gradient_grid([ENV], ["MAML-TRPO"], overrides={"horizon": 0})
    with pytest.raises(ValueError, match='a protocol setting has a value of the wrong type .*settings: {"gamma": "high"}'):
        build_meta_gradient_grid([ENV], ["MAML-TRPO"], overrides={"gamma": "high"})
    with pytest.raises(ValueError, match="iterations must be an integer >= 1, got 0"):
        build_meta_gradient_grid([ENV], ["MAML-TRPO"], iterations=0)
    with pytest.raises(ValueError, match="train on the CPU; got device 'cuda' .allowed: cpu."):
        MetaGradientTrainer(device="cuda")
    for argv, message in (
        (["--agents", "MAML-TRPO", "--envs", "MetaTMaze-v0"], "MAML-TRPO run on MetaCheetahVel-v0, MetaCheetahDir-v0, "
                                                              "MetaPointNav2D-v0 only; got MetaTMaze-v0"),
        (["--agents", "RNN", "--envs", "MetaTMaze-v0", "--iterations", "5"],
         "--iterations and --eval-every-iterations apply to the meta-gradient agents only"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            main(["run", *argv, "--db", str(tmp_path / "unused.db")])
        assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "unused.db").exists()


def test_default_grid_is_the_papers_budget_and_seeds():
    specs = build_meta_gradient_grid(["MetaCheetahVel-v0", "MetaCheetahDir-v0"], ["BOMRL-Alg1", "MAML-TRPO"])
    assert len(specs) == 2 * 2 * 3 and {s.seed for s in specs} == {0, 1, 2}
    vel = [s for s in specs if s.env_id == "MetaCheetahVel-v0"]
    per_iteration = 10 * (20 + 100) * (200 + 200)  # 10 velocities, 20 + 100 trajectories of 200 + 200 steps
    assert {(s.frames, s.paper_frames, s.eval_every, s.n_eval_tasks) for s in vel} == {
        (500 * per_iteration, 500 * per_iteration, 50 * per_iteration, 19)}
    assert not any(s.reduced for s in specs)
    assert len({s.group_key() for s in vel}) == 1  # BO-MRL and MAML-TRPO are ranked together
    dir_frames = {s.frames for s in specs if s.env_id == "MetaCheetahDir-v0"}
    assert dir_frames == {500 * 4 * (20 + 100) * (200 + 200)}  # the 4 directions per iteration


def test_the_splagger_claims_are_never_judged_on_a_bomrl_group():
    import dataclasses

    import numpy as np

    from metarl_agents.leaderboard.claims import paper_groups
    from metarl_agents.leaderboard.groups import Entry, Group

    (spec,) = build_meta_gradient_grid(["MetaCheetahVel-v0"], ["BOMRL-Alg1"], ["0,"])
    memory = dataclasses.replace(spec, agent="SplAgger", protocol="paper")

    def group(run):
        return Group(run, entries=[Entry(run.agent, run.learning_rate, [0], np.array([run.frames]),
                                         np.array([[1.0]]),
                                         np.array([[False]]))])

    chosen = paper_groups([group(spec), group(memory)], "MetaCheetahVel-v0")
    assert [(g.config.agent, g.protocol) for g in chosen] == [("SplAgger", "paper")]


def test_the_early_stopping_rule_ends_a_run_at_the_evaluation_that_meets_it(tmp_path):
    (spec,) = grid(agents=["BOMRL-Alg2"], iterations=6, stop_at_return=-1e9, patience=2)
    models = []

    class Keeping(MetaGradientTrainer):
        def build(self, spec):
            models.append(super().build(spec))
            return models[-1]

    assert run_grid([spec], tmp_path / "r.db", trainer=Keeping(), show_progress=False).ok
    assert models[0].run.iterations == 4  # no meta-iteration after the rule was met
    with ResultStore(tmp_path / "r.db", readonly=True) as store:
        record = store.run_by_key(spec.run_key)
        assert record.status == "finished"
        assert [p.frames for p in store.evaluations(record.id)] == [2 * FRAMES_PER_ITERATION, 4 * FRAMES_PER_ITERATION]
