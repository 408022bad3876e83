"""The Ray backend: one task per run on any node of a cluster; the driver alone writes the store.

Each task sends its messages (:mod:`.messages`) to a mailbox actor pinned to the driver's node and waits for
the driver's reply; the driver takes them from the mailbox and records them. A task whose node dies is
retried by Ray (``RAY_MAX_RETRIES`` times) on another node, where it asks the driver for the run's newest
checkpoint and resumes from it, so the run's points are those of an uninterrupted run. A cluster that goes
away ends the sweep with :class:`ClusterLost`; the store stays as the last recorded message left it.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Iterator
from contextlib import suppress
from typing import Any


class ClusterLost(RuntimeError):
    """The Ray cluster went away during the sweep (the store stays valid; the same command resumes)."""


RAY_MAX_RETRIES = 3
TAKE_TIMEOUT_S = 60.0  # the mailbox answers a take within 0.2 s; this long without an answer: the cluster is gone


class Mailbox:
    """Workers' messages waiting for the driver, and the workers waiting for its replies (an async actor)."""

    def __init__(self) -> None:
        self.inbox: list[tuple[int | None, Any]] = []  # (sequence, message); sequence None: a progress event
        self.waiting: dict[int, asyncio.Future] = {}
        self.arrived = asyncio.Event()
        self.count = 0

    async def send(self, message: Any) -> tuple[bool, Any]:
        """Deliver ``message`` and return the driver's reply once it has recorded it."""
        self.count += 1
        reply = asyncio.get_running_loop().create_future()
        self.waiting[self.count] = reply
        self.inbox.append((self.count, message))
        self.arrived.set()
        return await reply

    async def progress(self, event: tuple) -> None:
        self.inbox.append((None, event))
        self.arrived.set()

    async def take(self, timeout: float) -> list[tuple[int | None, Any]]:
        if not self.inbox:
            with suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), timeout)
        items, self.inbox = self.inbox, []
        self.arrived.clear()
        return items

    async def reply(self, sequence: int, ok: bool, value: Any) -> None:
        waiting = self.waiting.pop(sequence, None)
        if waiting is not None and not waiting.done():
            waiting.set_result((ok, value))


class _Sender:
    """A task's line to the driver through the mailbox."""

    def __init__(self, mailbox: Any) -> None:
        self.mailbox = mailbox

    def send(self, message: Any) -> Any:
        import ray

        reply = self.mailbox.send.remote(message)
        # Wait outside Ray: a task blocked in ray.get lends its CPU to another task, and the node would then
        # train more runs at once than it has CPUs. Once the reply is there, ray.get does not block.
        reply.future().result()
        ok, value = ray.get(reply)
        if not ok:
            raise value
        return value

    def progress(self, event: tuple) -> None:
        self.mailbox.progress.remote(event)


def _ray_task(run_in_worker: Callable, spec: Any, trainer: Any, mailbox: Any, location: Any,
              threads: int) -> tuple[str, str, str | None]:
    import ray

    sender = _Sender(mailbox)
    where = {"ray_node_id": ray.get_runtime_context().get_node_id()}
    return run_in_worker(spec, sender.send, trainer, sender.progress, location, where, threads)


def run_ray(todo, ledger, address, trainer, display, location, gpus_per_run,
            run_in_worker: Callable) -> Iterator[tuple[str, str, str | None]]:
    """Run ``todo`` as Ray tasks (``run_in_worker``: the runner's worker entry point, passed in so that this
    module does not import the runner) and yield each run's (key, status, error)."""
    check_ray_address(address)
    try:
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
    except ImportError:
        raise ValueError("--backend ray needs Ray: pip install 'metarl[ray]'") from None
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    try:
        here = ray.get_runtime_context().get_node_id()
        mailbox = ray.remote(num_cpus=0)(Mailbox).options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=False)).remote()
        task = ray.remote(_ray_task).options(num_cpus=1, num_gpus=gpus_per_run or 0, max_retries=RAY_MAX_RETRIES,
                                             retry_exceptions=False)
        pending = {task.remote(run_in_worker, spec, trainer, mailbox, location, 1): spec for spec, _ in todo}

        def serve(timeout: float) -> None:
            try:
                items = ray.get(mailbox.take.remote(timeout), timeout=TAKE_TIMEOUT_S)
            except (ray.exceptions.RayError, ConnectionError) as exc:
                raise ClusterLost(f"the Ray cluster went away during the sweep ({type(exc).__name__}); the store "
                                  "keeps every recorded point: start the cluster again and re-run the same command "
                                  "to resume") from exc
            for sequence, item in items:
                if sequence is None:
                    display.handle(item)
                else:
                    mailbox.reply.remote(sequence, *ledger.answer(item))

        while pending:
            serve(0.2)
            done, _ = ray.wait(list(pending), num_returns=len(pending), timeout=0)
            for ref in done:
                spec = pending.pop(ref)
                try:
                    yield ray.get(ref)
                except ray.exceptions.RayError as exc:
                    yield spec.run_key, "failed", f"Ray task failed: {' '.join(str(exc).split())[:500]}"
        serve(0.0)
    finally:
        if started_here:
            with suppress(Exception):  # the cluster may be gone already
                ray.shutdown()


RAY_CONNECT_TIMEOUT_S = 30.0


_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])  # + empty SETTINGS


def check_ray_address(address: str | None, timeout: float = RAY_CONNECT_TIMEOUT_S) -> None:
    """Fail within about ``timeout`` with a clear message if no Ray head answers at ``host:port``.

    ``ray.init`` waits for an unreachable head indefinitely. A Ray head (and a Ray client server) speaks
    gRPC, so it answers an HTTP/2 connection preface with a SETTINGS frame; a closed port, a silent host or
    a proxy that accepts anything does not. ``auto`` and addresses without a port are left to Ray.
    """
    if not address or address in ("auto", "local"):
        return
    host, sep, port = address.split("://", 1)[-1].rpartition(":")
    if not sep or not port.isdigit():
        return
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout) as connection:
            connection.settimeout(timeout)
            connection.sendall(_HTTP2_PREFACE)
            reply = connection.recv(9)
        problem = None if len(reply) == 9 and reply[3] == 4 else "it is not a gRPC server"
    except TimeoutError:
        problem = f"no answer within {timeout:g} s"
    except OSError as exc:
        problem = exc.strerror or str(exc)
    if problem is not None:
        raise ValueError(f"the Ray cluster at --address {address} does not answer ({problem}); check the address "
                         "(`ray status` on the head node) or leave --address out to start a local Ray instance")
