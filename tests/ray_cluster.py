"""A real two-node Ray cluster on this machine for the tests: a head and a second node, each with its own
temporary folder, started with ``ray start --block`` in their own sessions so that the test can kill every
process of a node (by the process ids it started and their descendants).

The head offers 1 CPU and the second node 2, so three runs submitted at once go one to the head and two to
the second node. The second node carries the custom resource ``second_node`` by which it is recognised.
Every Python process of the cluster runs ``ray_worker_site/sitecustomize.py``: an audit hook that refuses
(and logs) any open of a result store under ``stores``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).parent
RAY = str(Path(sys.executable).with_name("ray"))
# Node deaths are noticed within about 2 s instead of Ray's default 15 s or more.
FAST_HEALTH_CHECKS = {"RAY_health_check_period_ms": "500", "RAY_health_check_failure_threshold": "4",
                      "RAY_health_check_initial_delay_ms": "0", "RAY_USAGE_STATS_ENABLED": "0",
                      # The test process's setting (conftest: no token authentication) for every node.
                      "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "disabled")}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (read from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


class TwoNodeCluster:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.stores = base / "stores"
        self.stores.mkdir()
        self.violations = base / "violations.log"
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.env = dict(os.environ, **FAST_HEALTH_CHECKS, METARL_TEST_STORES=str(self.stores),
                        METARL_TEST_VIOLATIONS=str(self.violations), OMP_NUM_THREADS="1",
                        PYTHONPATH=os.pathsep.join([str(HERE / "ray_worker_site"), str(HERE.parent), str(HERE)]))
        # A driver's environment: the cluster's, without the hook (the driver is the one that opens the store).
        self.client_env = {key: value for key, value in self.env.items() if not key.startswith("METARL_TEST_")}
        self.client_env["PYTHONPATH"] = os.pathsep.join([str(HERE.parent), str(HERE)])
        self.head = self.second = None
        self.temp_dirs: list[str] = []

    def _start(self, name: str, args: list[str]) -> subprocess.Popen:
        temp = tempfile.mkdtemp(prefix=f"rt{name}", dir="/tmp")  # short: Ray's socket paths have a length limit
        self.temp_dirs.append(temp)
        log = open(self.base / f"{name}.log", "ab")
        return subprocess.Popen([RAY, "start", "--block", "--temp-dir", temp, "--disable-usage-stats", *args],
                                env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def start_head(self) -> None:
        self.head = self._start("head", ["--head", "--port", str(self.port), "--num-cpus", "1",
                                         "--include-dashboard=false"])

    def start_second(self) -> None:
        self.second = self._start("second", ["--address", self.address, "--num-cpus", "2",
                                             "--resources", json.dumps({"second_node": 2})])

    def wait_for_head(self, timeout: float = 120.0) -> None:
        """Until the head answers (``ray.init`` would otherwise wait on a head that is still starting)."""
        from metarl_agents.leaderboard.runner import check_ray_address

        deadline = time.monotonic() + timeout
        while True:
            try:
                check_ray_address(self.address, timeout=2.0)
                time.sleep(2.0)  # the port answers a moment before the head registers itself
                return
            except ValueError:
                if time.monotonic() > deadline or self.head.poll() is not None:
                    raise
                time.sleep(0.5)

    def nodes(self) -> list[dict]:
        import ray

        return [node for node in ray.nodes() if node["Alive"]]

    def wait_for_nodes(self, count: int, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.nodes()) != count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the test Ray cluster did not reach {count} nodes; see {self.base}/*.log")
            time.sleep(0.5)

    def second_node_id(self) -> str:
        return next(n["NodeID"] for n in self.nodes() if "second_node" in n["Resources"])

    def kill(self, process: subprocess.Popen | None) -> None:
        """SIGKILL a node: the process the fixture started and everything below it (raylet, workers)."""
        if process is None or process.poll() is not None:
            return
        for pid in descendants(process.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        process.wait(30)

    def stop(self) -> None:
        for process in (self.second, self.head):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)  # `ray start --block` stops its node's processes
                try:
                    process.wait(60)
                except subprocess.TimeoutExpired:
                    self.kill(process)
        for temp in self.temp_dirs:  # the nodes' sessions and logs (the node logs stay in ``base``)
            shutil.rmtree(temp, ignore_errors=True)
