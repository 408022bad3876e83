"""The Ray backend on a real two-node cluster (two ``ray start`` nodes on this machine, no mocks of Ray):
the same results as the local pool, no worker opening the store, a lost node, a killed driver, a lost cluster.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="Ray is optional (pip install 'metarl[ray]'); Ray backend not tested")

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))  # the fakes, the cluster fixture, the tiny real run

import leaderboard_fakes  # noqa: E402
import resume_driver  # noqa: E402
from leaderboard_fakes import FakeTrainer, fake_return  # noqa: E402
from ray_cluster import TwoNodeCluster  # noqa: E402
from test_leaderboard_runner import EVAL_FRAMES, grid  # noqa: E402

from metarl_agents.leaderboard.grid import build_grid  # noqa: E402
from metarl_agents.leaderboard.runner import MetaPPOTrainer, run_grid  # noqa: E402
from metarl_agents.leaderboard.store import ResultStore  # noqa: E402


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    cluster = TwoNodeCluster(tmp_path_factory.mktemp("ray"))
    cluster.start_head()
    try:
        cluster.wait_for_head()
        ray.init(address=cluster.address, log_to_driver=False)
        cluster.start_second()
        cluster.wait_for_nodes(2)
        yield cluster
    finally:
        ray.shutdown()
        cluster.stop()


def ensure_two_nodes(cluster) -> None:
    if cluster.second is None or cluster.second.poll() is not None:
        cluster.start_second()
    cluster.wait_for_nodes(2)


def points(db) -> dict[str, tuple]:
    with ResultStore(db, readonly=True) as store:
        return {run.run_key: (run.status, tuple((p.frames, p.meta_episode_return, tuple(p.episode_returns))
                                                for p in store.evaluations(run.id)))
                for run in store.runs()}


def nodes_of(db) -> dict[str, str | None]:
    with ResultStore(db, readonly=True) as store:
        return {run.run_key: run.machine.get("ray_node_id") for run in store.runs()}


def tiny_real_grid():
    return build_grid(["MetaTMaze-v0"], ["RNN", "SplAgger"], ["7,", "8,"], [1e-3], frames=96, eval_every=32,
                      n_eval_tasks=2, env_kwargs=resume_driver.ENV_KWARGS, overrides=resume_driver.OVERRIDES)


def test_real_grid_on_two_nodes_equals_the_local_pool_and_no_worker_opens_the_store(cluster, tmp_path):
    ensure_two_nodes(cluster)
    specs = tiny_real_grid()
    assert len(specs) == 4
    trainer = MetaPPOTrainer(policy_kwargs=resume_driver.TINY_POLICY, threads=1)
    on_ray = cluster.stores / "ray.db"
    summary = run_grid(specs, on_ray, backend="ray", trainer=trainer, show_progress=False)
    assert summary.ok and len(summary.finished) == 4
    pool_db = tmp_path / "pool.db"
    assert run_grid(specs, pool_db, workers=2, trainer=trainer, show_progress=False).ok
    expected = points(pool_db)
    assert points(on_ray) == expected  # bit for bit: every point, return and per-task return
    assert all(status == "finished" and len(p) == 3 for status, p in expected.values())
    assert cluster.second_node_id() in set(nodes_of(on_ray).values())  # some runs trained on the second node
    # The hook was live in the workers of both nodes, and nothing tripped it.
    assert not cluster.violations.exists()

    @ray.remote(num_cpus=0)
    def open_store(path):
        try:
            open(path, "rb").close()
        except PermissionError:
            return "refused"
        return "opened"

    where = [ray.util.scheduling_strategies.NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
             for node in cluster.nodes()]
    assert ray.get([open_store.options(scheduling_strategy=s).remote(str(on_ray)) for s in where]) == ["refused"] * 2
    cluster.violations.unlink()


def run_in_thread(**kwargs):
    outcome = {}
    thread = threading.Thread(target=lambda: outcome.update(summary=run_grid(**kwargs)), daemon=True)
    thread.start()
    return thread, outcome


def wait_until(condition, timeout=120.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_lost_node_runs_finish_on_the_head_from_their_last_checkpoint(cluster, tmp_path):
    ensure_two_nodes(cluster)
    second = cluster.second_node_id()
    ray.cloudpickle.register_pickle_by_value(leaderboard_fakes)
    db, log = cluster.stores / "lost.db", str(tmp_path / "log")
    specs = grid()[:3]  # 3 CPUs: one run on the head, two on the second node
    thread, outcome = run_in_thread(specs=specs, db_path=db, backend="ray", trainer=FakeTrainer(log, sleep=0.5),
                                    show_progress=False, checkpoints="driver")

    def second_node_checkpointed():
        try:
            with ResultStore(db, readonly=True) as store:
                return [run.run_key for run in store.runs() if run.machine.get("ray_node_id") == second
                        and (run.checkpoint_frames or 0) >= 300 and run.status == "running"]
        except Exception:  # noqa: BLE001 - not created yet
            return []

    wait_until(lambda: len(second_node_checkpointed()) == 2)
    victims = second_node_checkpointed()
    cluster.kill(cluster.second)
    killed_at = {key: frames for key, (_, frames) in stored_checkpoints(db).items()}
    thread.join(300)
    summary = outcome["summary"]
    assert summary.ok and sorted(summary.finished) == sorted(s.run_key for s in specs)
    final = points(db)
    for s in specs:  # every point once, as an uninterrupted run stores it
        assert final[s.run_key] == ("finished", tuple((f, fake_return(s.seed, s.learning_rate, f), (fake_return(s.seed, s.learning_rate, f) / 2,) * 2)
                                                      for f in EVAL_FRAMES))
    resumed = {line[1]: int(line[2]) for line in FakeTrainer(log).lines() if line[0] == "resume"}
    assert set(resumed) == set(victims)
    for key in victims:  # from the checkpoint the store named when the node died, or a newer one
        assert resumed[key] >= killed_at[key] >= 300
    head = {n["NodeID"] for n in cluster.nodes()} - {second}
    assert {nodes_of(db)[key] for key in victims} <= head  # their last session ran on the head
    assert sorted(p.name for p in (cluster.stores / "lost.db.checkpoints").iterdir()) == sorted(
        f"{s.run_key}.f1000.pt" for s in specs)
    assert not cluster.violations.exists()


def stored_checkpoints(db) -> dict[str, tuple[str, int]]:
    with ResultStore(db, readonly=True) as store:
        return {run.run_key: (run.status, run.checkpoint_frames or 0) for run in store.runs()}


def driver(cluster, db, log, *extra, sleep=0.3) -> subprocess.Popen:
    args = [sys.executable, str(HERE / "ray_driver.py"), log, str(sleep), "--envs", "MetaTMaze-v0", "--agents",
            "RNN", "SplAgger", "--seeds", "2", "--lrs", "1e-3", "--frames", "1000", "--eval-every", "250",
            "--db", str(db), "--backend", "ray", "--address", cluster.address, "--no-progress", *extra]
    return subprocess.Popen(args, env=cluster.client_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_killed_driver_then_the_same_command_resumes(cluster, tmp_path):
    ensure_two_nodes(cluster)
    db, log = cluster.stores / "killed.db", str(tmp_path / "log")
    first = driver(cluster, db, log, "--checkpoints", str(tmp_path / "shared"))
    wait_until(lambda: db.exists() and any(frames >= 300 for _, frames in stored_checkpoints(db).values()))
    first.kill()
    first.wait(60)
    before = stored_checkpoints(db)
    second = driver(cluster, db, log, "--checkpoints", str(tmp_path / "shared"), sleep=0.0)
    out, err = second.communicate(timeout=300)
    assert second.returncode == 0, err
    assert "4 runs" in out and ", 0 failed" in out
    final = points(db)
    assert len(final) == 4 and all(status == "finished" and [p[0] for p in pts] == EVAL_FRAMES
                                   for status, pts in final.values())
    resumed = {line[1]: int(line[2]) for line in FakeTrainer(log).lines() if line[0] == "resume"}
    assert resumed and all(resumed[key] >= before[key][1] for key in resumed)
    assert not cluster.violations.exists()


class NodeLoadTrainer(FakeTrainer):
    """The fake trainer, noting how many runs train at once on its node when one starts or resumes."""

    def _start(self, spec):
        folder = Path(self.log + ".running") / ray.get_runtime_context().get_node_id()
        folder.mkdir(parents=True, exist_ok=True)
        (folder / spec.run_key).touch()
        self._log("load", folder.name, len(list(folder.iterdir())))

    def build(self, spec):
        self._start(spec)
        return super().build(spec)

    def evaluate(self, model, spec, n_tasks=None):
        result = super().evaluate(model, spec, n_tasks)
        if model.num_timesteps >= spec.frames:
            (Path(self.log + ".running") / ray.get_runtime_context().get_node_id() / spec.run_key).unlink()
        return result


def test_a_node_trains_no_more_runs_at_once_than_its_cpus(cluster, tmp_path):
    """A task waiting for the driver's reply keeps its CPU (a blocking ray.get would lend it to another run)."""
    ensure_two_nodes(cluster)
    ray.cloudpickle.register_pickle_by_value(leaderboard_fakes)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    db, log = cluster.stores / "load.db", str(tmp_path / "log")
    specs = grid()[:6]
    assert run_grid(specs, db, backend="ray", trainer=NodeLoadTrainer(log, sleep=0.1), show_progress=False).ok
    cpus = {node["NodeID"]: node["Resources"]["CPU"] for node in cluster.nodes()}
    loads = [(node, int(count)) for kind, node, count in (line for line in FakeTrainer(log).lines()
                                                           if line[0] == "load")]
    assert len(loads) == 6 and all(count <= cpus[node] for node, count in loads), (loads, cpus)
    assert max(count for node, count in loads if cpus[node] == 2) == 2  # the second node did run two at once


def test_cluster_that_goes_away_gives_one_line_and_leaves_a_valid_store(cluster, tmp_path):
    """Last in this file: it stops the cluster."""
    ensure_two_nodes(cluster)
    db, log = cluster.stores / "gone.db", str(tmp_path / "log")
    process = driver(cluster, db, log, "--checkpoints", "driver", sleep=0.5)
    wait_until(lambda: db.exists() and any(frames >= 300 for _, frames in stored_checkpoints(db).values()))
    ray.shutdown()  # this test process lets go of the cluster too
    cluster.kill(cluster.second)
    cluster.kill(cluster.head)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 2
    last = err.strip().splitlines()[-1]
    assert last.startswith("metarl-bench run: error: the Ray cluster went away during the sweep"), err
    runs = stored_checkpoints(db)  # the store opens; no run is left "running": each is done or resumable
    assert len(runs) == 4 and all(status in ("finished", "failed", "pending") for status, _ in runs.values())
    assert any(status == "failed" and frames >= 300 for status, frames in runs.values())
    with ResultStore(db, readonly=True) as store:
        for run in store.runs():
            frames = [p.frames for p in store.evaluations(run.id)]
            assert frames == EVAL_FRAMES[:len(frames)] and run.checkpoint_frames == (frames[-1] if frames else None)
            if run.checkpoint_path:
                assert (db.parent / run.checkpoint_path).is_file()
