"""Running a grid: one run (:func:`train_one`) and the local-pool and Ray backends around it.

A run is one ``learn`` call up to its budget. Every ``eval_every`` frames (between two PPO updates)
and at the end it evaluates, writes a checkpoint (temp file + ``os.replace``, so a checkpoint file is
always complete) and then has the driver record the evaluation and the checkpoint in one store
transaction. Killing any process at any point therefore loses at most the evaluation interval in
progress, and the next ``run`` resumes from the checkpoint the store names.

Only the driver (the process that called :func:`run_grid`) opens the store. The run itself
(:func:`train_session`) runs wherever the backend puts it -- this process, a pool process, a Ray task on
another node -- and sends its events to the driver (:mod:`.messages`), waiting for each to be recorded.

Training goes through a small :class:`Trainer` seam (build / resume / evaluate) whose default,
:class:`MetaPPOTrainer`, uses only the public trainer API (``RunSpec.config``, ``build_model``, ``learn`` with a
callback, ``save``/``load``, ``evaluate_meta``); tests inject a fake one to exercise the bookkeeping.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import importlib.metadata
import multiprocessing
import os
import platform
import queue as queue_module
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Protocol

from metarl_agents.leaderboard.grid import RunSpec
from metarl_agents.leaderboard.locations import CheckpointFolder, checkpoint_location
from metarl_agents.leaderboard.lock import SweepLock
from metarl_agents.leaderboard.messages import (
    RESTART_HINT,
    Evaluated,
    Failed,
    Ledger,
    Resume,
    Started,
    Stopped,
    checkpoint_dir,
    describe,
    remove_stale_files,
    stored_checkpoint,  # noqa: F401 - metarl-train resumes through it
)
from metarl_agents.leaderboard.ray_backend import ClusterLost, check_ray_address, run_ray  # noqa: F401 - re-exported
from metarl_agents.leaderboard.store import ResultStore, StoreError, check_store_file
from metarl_agents.training.errors import CheckpointError, TrainingDivergedError

BACKENDS = ("local", "ray")
_VERSIONED_PACKAGES = ("torch", "numpy", "gymnasium", "stable-baselines3", "sb3-contrib")


# -- the trainer seam ------------------------------------------------------------------------------


class Model(Protocol):
    """What the runner needs from a trained model (an SB3 algorithm satisfies it)."""

    num_timesteps: int

    def learn(self, total_timesteps: int, callback: Any = None, reset_num_timesteps: bool = True,
              progress_bar: bool = False) -> Any: ...


class Trainer(Protocol):
    def build(self, spec: RunSpec) -> Model:
        """A fresh model for this run."""

    def save(self, model: Model, spec: RunSpec, path: Path, final: bool = False) -> None:
        """Write everything needed to continue ``model`` exactly (``final``: only what is needed to use the
        trained model, the run being over)."""

    def resume(self, spec: RunSpec, checkpoint: Path) -> Model:
        """The model saved in ``checkpoint``, ready to continue training; ``CheckpointError`` if the file is
        damaged or was written for another run."""

    def evaluate(self, model: Model, spec: RunSpec, n_tasks: int | None = None) -> dict[str, Any]:
        """``evaluate_meta``'s result: needs ``meta_episode_return`` and ``episode_returns``. ``n_tasks`` (passed
        only when it differs from ``spec.n_eval_tasks``: one of the run's last evaluations) replaces it."""


class MetaPPOTrainer:
    """The project's trainer; checkpoints hold its whole training state (:mod:`.checkpoint`).

    A run's model is built from its configuration (:meth:`RunSpec.config`), on ``device`` with ``threads``
    torch threads (None: leave torch's setting alone). ``policy_kwargs`` are a default architecture for runs
    whose spec has none (e.g. a small network for a smoke test); the architecture is part of every
    checkpoint's identity, so a checkpoint of another architecture is refused.
    """

    def __init__(self, policy_kwargs: dict[str, Any] | None = None, device: str = "cpu",
                 threads: int | None = None) -> None:
        self.policy_kwargs = dict(policy_kwargs or {})
        self.device, self.threads = device, threads

    def config(self, spec: RunSpec) -> Any:
        """The run's validated configuration (a RunConfig) on this trainer's device."""
        if self.policy_kwargs and not spec.policy_kwargs:
            spec = dataclasses.replace(spec, policy_kwargs=dict(self.policy_kwargs))
        return spec.config(device=self.device, threads=1 if self.threads is None else self.threads)

    def build(self, spec: RunSpec) -> Model:
        from metarl_agents.training.build import build_model

        if self.threads is not None:
            limit_threads(self.threads)
        return build_model(self.config(spec))

    def identity(self, spec: RunSpec) -> dict[str, Any]:
        """What a checkpoint must have been written for: the run's identity and settings, and the architecture."""
        fields = spec.store_fields()
        fields["policy_kwargs"] = repr(sorted((spec.policy_kwargs or self.policy_kwargs).items()))
        return fields

    def save(self, model: Model, spec: RunSpec, path: Path, final: bool = False) -> None:
        from metarl_agents.leaderboard.checkpoint import training_state, write_checkpoint

        write_checkpoint(path, self.identity(spec), training_state(model, final=final))

    def resume(self, spec: RunSpec, checkpoint: Path) -> Model:
        from metarl_agents.leaderboard.checkpoint import read_checkpoint, restore_training_state

        state = read_checkpoint(checkpoint, self.identity(spec))  # refuses another run's file before building
        model = self.build(spec)
        restore_training_state(model, state)
        return model

    def evaluate(self, model: Model, spec: RunSpec, n_tasks: int | None = None) -> dict[str, Any]:
        from metarl_agents.training.evaluation import evaluate_meta

        n_tasks = spec.n_eval_tasks if n_tasks is None else n_tasks
        return evaluate_meta(model, spec.env_id, n_tasks=n_tasks, seed=spec.eval_seed,
                             env_kwargs=dict(spec.env_kwargs) or None)


# -- provenance ------------------------------------------------------------------------------------


@cache
def package_versions() -> dict[str, str]:
    import metarl_envs

    versions = {"metarl": metarl_envs.__version__, "python": platform.python_version()}
    for name in _VERSIONED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


@cache
def machine_info() -> dict[str, Any]:
    return {"hostname": platform.node(), "platform": platform.platform(), "cpu": _cpu_name(),
            "cpu_count": _usable_cpus()}


def _usable_cpus() -> int:
    """Cores this process may run on (a container's or taskset's limit, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _cpu_name() -> str:
    with suppress(OSError), open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


# -- one run ---------------------------------------------------------------------------------------


Send = Callable[[Any], Any]  # a message to the driver -> its reply, once the driver has recorded it
ProgressSink = Callable[[tuple], None]


def cuda_memory(model: Any) -> dict[str, Any] | None:
    """This process's peak CUDA memory (allocated by tensors, and reserved by torch's caching allocator) when
    ``model`` trains on a CUDA device; None otherwise. Several runs sharing one GPU each report their own."""
    device = getattr(model, "device", None)
    if getattr(device, "type", None) != "cuda":
        return None
    import torch

    return {"cuda_device": torch.cuda.get_device_name(device),
            "cuda_peak_allocated_bytes": int(torch.cuda.max_memory_allocated(device)),
            "cuda_peak_reserved_bytes": int(torch.cuda.max_memory_reserved(device))}


class _Recorder:
    """Evaluates, checkpoints and reports one run to the driver; called between PPO updates and at the end."""

    def __init__(self, spec: RunSpec, send: Send, trainer: Trainer, location: CheckpointFolder, start: Resume,
                 progress: ProgressSink | None) -> None:
        self.spec, self.send, self.trainer, self.location = spec, send, trainer, location
        self.report: ProgressSink = progress or (lambda event: None)
        self.wall_time_before, self.started = start.wall_time_s, time.perf_counter()
        self.checkpoint: Path | None = None
        self.checkpoint_frames = start.checkpoint_frames  # named if training diverges before the next

    def wall_time(self) -> float:
        return self.wall_time_before + time.perf_counter() - self.started

    def evaluate(self, model: Model) -> dict[str, Any]:
        # The run's last evaluations may use more tasks; a trainer is asked for that only when it does.
        n_tasks = self.spec.eval_tasks_at(int(model.num_timesteps), _rollout_frames(model))
        return self.trainer.evaluate(model, self.spec, **({} if n_tasks == self.spec.n_eval_tasks
                                                            else {"n_tasks": n_tasks}))

    def record(self, model: Model, result: dict[str, Any], finished: bool = False) -> None:
        """Checkpoint ``model`` and have the driver store it with its evaluation ``result``."""
        frames = int(model.num_timesteps)
        try:
            saved, payload = self.location.write(self.trainer, model, self.spec, frames, finished)
        except OSError as exc:  # e.g. a full disk
            raise CheckpointError(f"could not write the checkpoint of {self.spec.run_key} at {frames} frames to "
                                  f"{self.location.describe()}: {exc.strerror or exc}") from exc
        # The driver records the point and the checkpoint in one transaction; only then is the old file unused.
        self.send(Evaluated(self.spec.run_key, frames, float(result["meta_episode_return"]),
                            [float(x) for x in result["episode_returns"]], self.wall_time(), saved.name, finished,
                            payload, cuda_memory(model)))
        if self.checkpoint is not None and self.checkpoint != saved:
            self.checkpoint.unlink(missing_ok=True)
        self.checkpoint, self.checkpoint_frames = saved, frames
        monitor = getattr(model, "stall_monitor", None)  # MetaPPO's: warns when the return is stuck
        if monitor is not None:
            monitor.evaluated(float(result["meta_episode_return"]))
        self.report(("eval", self.spec.run_key, frames, float(result["meta_episode_return"])))


def _rollout_frames(model: Model) -> int:
    """Frames per PPO update (SB3's ``n_steps`` per env times ``n_envs``), which fixes the evaluation schedule."""
    return int(getattr(model, "n_steps", 1) or 1) * int(getattr(model, "n_envs", 1) or 1)


def _stop_rule(spec: RunSpec, returns: Sequence[float]) -> Any:
    """The run's early-stopping rule (a ``StopTrainingOnReturn``) having counted its stored ``returns`` (a resumed
    run continues its streak), or None. Imported here: SB3 imports torch."""
    if spec.stop_at_return is None or spec.patience is None:
        return None
    from metarl_agents.training.callbacks import StopTrainingOnReturn

    rule = StopTrainingOnReturn(spec.stop_at_return, spec.patience)
    for meta_episode_return in returns:
        rule.observe(meta_episode_return)
    return rule


def _training_callbacks(recorder: _Recorder, model: Model, stop_rule: Any) -> Any:
    """Evaluate + checkpoint + record at the first rollout start past each ``eval_every`` multiple (not at the
    frames the model starts from: a fresh run's curve starts after ``eval_every``, a resumed run's point is
    stored), with the stop rule as the evaluation's child, and progress after every rollout.

    A rollout start comes right after the previous update, so the checkpoint holds trained weights for
    every frame it counts. The final evaluation is not among them: :func:`train_session` takes it.
    """
    from stable_baselines3.common.callbacks import CallbackList

    from metarl_agents.training.callbacks import EvaluationCallback, OnRolloutEnd

    key = recorder.spec.run_key
    evaluation = EvaluationCallback(recorder.evaluate, recorder.spec.eval_every, callback_after_eval=stop_rule,
                                    on_result=lambda result: recorder.record(model, result),
                                    eval_at_start=False, eval_at_end=False)
    progress = OnRolloutEnd(lambda trained: recorder.report(("progress", key, int(trained.num_timesteps))))
    return CallbackList([evaluation, progress])


def train_one(spec: RunSpec, store: ResultStore | str | Path, trainer: Trainer | None = None,
              progress: ProgressSink | None = None, checkpoints: CheckpointFolder | None = None) -> str:
    """Train (or finish) one run in this process and record it; returns "finished" or "skipped".

    The run is one ``learn`` call up to the budget (so learning-rate schedules see the whole run, also
    after a resume) with an evaluation and checkpoint every ``eval_every`` frames and at the end. A
    failure is recorded as status "failed" (with the traceback) and re-raised; the run then resumes from
    its last checkpoint next time. ``checkpoints``: where they live (default: beside the store).
    """
    if not isinstance(store, ResultStore):
        with ResultStore(store) as opened:
            return train_one(spec, opened, trainer, progress, checkpoints)
    store.register_run(spec.store_fields())
    location = checkpoints or checkpoint_location(None, store.path)
    ledger = Ledger(store, keeps_checkpoints=location.sends_payload)
    return train_session(spec, ledger.handle, location, trainer, progress)


def train_session(spec: RunSpec, send: Send, location: CheckpointFolder, trainer: Trainer | None = None,
                  progress: ProgressSink | None = None, where: dict[str, Any] | None = None) -> str:
    """A worker's side of one run: trains it and sends every event to the driver, never opening the store.

    ``send`` delivers a message (:mod:`.messages`) and returns once the driver has recorded it (its reply,
    or the driver's error raised here). The first message asks the driver where the run stands, so a task
    that Ray retries on another node resumes from the newest checkpoint, not from the one it was given.
    ``where`` adds to the machine record (e.g. the Ray node).
    """
    trainer = trainer or MetaPPOTrainer()
    config = trainer.config(spec).as_dict() if hasattr(trainer, "config") else None
    machine = {**machine_info(), **(where or {})}
    start = send(Started(spec.run_key, machine, package_versions(), config))
    if start.finished:
        return "skipped"
    recorder = _Recorder(spec, send, trainer, location, start, progress)
    stop_rule = _stop_rule(spec, start.returns)
    try:
        checkpoint = location.prepare(spec.run_key, start.checkpoint, start.payload)
        recorder.checkpoint = checkpoint
        if stop_rule is not None and stop_rule.met:  # killed after the rule was met, before the run was marked finished
            send(Stopped(spec.run_key, recorder.wall_time()))
            return "finished"
        if checkpoint is None:
            model = trainer.build(spec)
        elif checkpoint.exists():
            model = trainer.resume(spec, checkpoint)
        else:
            raise CheckpointError(f"checkpoint {start.checkpoint} is missing from {location.describe()}")
        recorder.report(("start", spec.run_key, int(model.num_timesteps)))
        recorder.report(("where", spec.run_key, describe(machine)))
        if model.num_timesteps < spec.frames:
            model.learn(spec.frames - model.num_timesteps, reset_num_timesteps=False, progress_bar=False,
                        callback=_training_callbacks(recorder, model, stop_rule))
        if stop_rule is not None and stop_rule.met:
            send(Stopped(spec.run_key, recorder.wall_time()))
        else:
            recorder.record(model, recorder.evaluate(model), finished=True)
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            reason = "interrupted"
        elif isinstance(exc, CheckpointError):
            reason = f"{exc}; {RESTART_HINT}"
            exc.args = (reason,)
        elif isinstance(exc, TrainingDivergedError):
            last = (f"{recorder.checkpoint.name} ({recorder.checkpoint_frames} frames)" if recorder.checkpoint
                    else "none (it diverged before the first evaluation)")
            reason = f"{exc}. Last finite checkpoint: {last}"
            exc.args = (reason,)
        else:
            reason = traceback.format_exc()
        try:
            send(Failed(spec.run_key, reason, recorder.wall_time()))
        except StoreError as store_exc:  # e.g. the disk is full: say both, the run stays marked as started
            raise StoreError(f"{exc}; and the failure could not be recorded: {store_exc}") from exc
        raise
    finally:
        location.close()
    return "finished"


# -- backends --------------------------------------------------------------------------------------


@dataclass
class SweepSummary:
    finished: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed


def limit_threads(threads: int) -> None:
    """Give each worker its share of the cores (set before torch is imported in a fresh process)."""
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[variable] = str(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


class _PoolChannel:
    """A pool worker's line to the driver: messages and progress on the shared queue, replies on its own."""

    def __init__(self, events: Any, replies: Any, slot: int) -> None:
        self.events, self.replies, self.slot, self.sent = events, replies, slot, 0

    def send(self, message: Any) -> Any:
        self.sent += 1
        self.events.put(("message", self.slot, self.sent, message))
        while True:
            sequence, ok, value = self.replies.get()
            if sequence == self.sent:
                break
        if not ok:
            raise value
        return value

    def progress(self, event: tuple) -> None:
        self.events.put(("progress", event))


_worker_channel: _PoolChannel | None = None


def _init_worker(threads: int, parent_pid: int, events: Any, replies: Sequence[Any], slots: Any) -> None:
    """Pool worker set-up: its share of the cores, its reply queue, and a watchdog that ends the worker when
    the sweep dies.

    A killed driver cannot stop its pool, and orphaned workers would keep training (and waiting for replies
    nobody sends); the watchdog sees the driver go (the worker is re-parented) within a second and exits.
    """
    global _worker_channel
    limit_threads(threads)
    slot = slots.get()
    _worker_channel = _PoolChannel(events, replies[slot], slot)

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="metarl-parent-watchdog", daemon=True).start()


def run_in_worker(spec: RunSpec, send: Send, trainer: Trainer | None, sink: ProgressSink | None,
                  location: CheckpointFolder, where: dict[str, Any] | None = None,
                  threads: int | None = None) -> tuple[str, str, str | None]:
    """A worker's run (``threads``: torch threads for this process): never raises, so one failed run does
    not stop the others."""
    if threads is not None:
        limit_threads(threads)
    try:
        return spec.run_key, train_session(spec, send, location, trainer, sink, where), None
    except Exception as exc:
        return spec.run_key, "failed", f"{type(exc).__name__}: {exc}"


def _run_in_pool_worker(spec: RunSpec, trainer: Trainer | None, location: CheckpointFolder) -> tuple[str, str, str | None]:
    channel = _worker_channel
    return run_in_worker(spec, channel.send, trainer, channel.progress, location)


def run_grid(specs: Sequence[RunSpec], db_path: str | Path, backend: str = "local", workers: int = 1,
             address: str | None = None, trainer: Trainer | None = None, show_progress: bool | None = None,
             restart_failed: bool = False, checkpoints: str | None = None,
             gpus_per_run: float | None = None) -> SweepSummary:
    """Run every unfinished run of the grid and record it in the store at ``db_path``.

    Runs already finished are skipped; unfinished ones resume from their last checkpoint, or, with
    ``restart_failed``, failed ones start again from scratch (their checkpoint and points are discarded).
    One sweep at a time may use a store: a second one raises :class:`StoreInUse` naming the first. ``workers``
    runs go at once in the local pool (1 = in this process); the Ray backend schedules one task per run
    (1 CPU and ``gpus_per_run`` GPUs each) on the cluster at ``address`` (None: start a local Ray instance),
    and retries a run whose node died. Either way only this process writes the store; workers send it their
    results. ``checkpoints``: where checkpoints live (:func:`~.locations.checkpoint_location`).
    ``show_progress=None`` shows progress bars on a terminal only.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; allowed: {', '.join(BACKENDS)}")
    if workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    repeated = [(key, n) for key, n in Counter(spec.run_key for spec in specs).items() if n > 1]
    if repeated:  # two workers would train it at once and race on its checkpoint
        raise ValueError(f"the grid lists run {repeated[0][0]} {repeated[0][1]} times; each run may appear once")
    if gpus_per_run is not None:
        if backend != "ray":
            raise ValueError("--gpus-per-run applies to --backend ray; the local pool shares the --device among "
                             "its --workers")
        if not (gpus_per_run > 0 and (gpus_per_run <= 1 or float(gpus_per_run).is_integer())):
            raise ValueError(f"--gpus-per-run must be a fraction in (0, 1] or a whole number, got {gpus_per_run:g}")
    location = checkpoint_location(checkpoints, db_path)
    db_path = str(Path(db_path).resolve())
    check_store_file(Path(db_path))  # refuse a foreign file before anything (the lock file) is written beside it
    from metarl_agents.leaderboard.progress import GridProgress

    summary = SweepSummary()
    todo = []
    with SweepLock(db_path), ResultStore(db_path) as store:  # the store is validated before any worker starts
        # This sweep holds the store, so a run still marked running was left so by a process that died.
        for record in store.runs(status="running"):
            store.mark_failed(record.id, "interrupted: the process training it stopped without recording why "
                                         "(killed, or its disk was full)")
        for spec in specs:
            record = store.register_run(spec.store_fields())
            if record.status == "failed" and restart_failed:
                store.restart_run(record.id)
                remove_stale_files(checkpoint_dir(db_path), spec.run_key, keep=None)
                if location.directory and not location.sends_payload:
                    remove_stale_files(Path(location.directory), spec.run_key, keep=None)
                record = store.run_by_key(spec.run_key)
            if record.status == "finished":
                summary.skipped.append(spec.run_key)
            else:
                todo.append((spec, record.checkpoint_frames or 0))
        ledger = Ledger(store, keeps_checkpoints=location.sends_payload)
        with GridProgress(todo, len(specs), len(summary.skipped), enabled=show_progress) as display:
            if backend == "ray":
                outcomes = run_ray(todo, ledger, address, trainer, display, location, gpus_per_run, run_in_worker)
            elif workers == 1 or len(todo) <= 1:
                outcomes = _run_inline(todo, ledger, trainer, display, location)
            else:
                outcomes = _run_pool(todo, ledger, workers, trainer, display, location)
            try:
                for key, status, error in outcomes:
                    display.run_done(key, status, error)
                    if status == "failed":
                        summary.failed[key] = error or "unknown error"
                        _record_lost_run(store, key, summary.failed[key])
                    elif status == "skipped":
                        summary.skipped.append(key)
                    else:
                        summary.finished.append(key)
            except ClusterLost as exc:
                for spec, _ in todo:
                    _record_lost_run(store, spec.run_key, f"interrupted: {exc}")
                raise
            finally:
                outcomes.close()  # an early stop winds the workers down while the store is still open
    return summary


def _record_lost_run(store: ResultStore, run_key: str, error: str) -> None:
    """Mark a run failed that could not say so itself (its worker died) and is still 'running'."""
    with suppress(StoreError, KeyError):  # else the next sweep marks it (it holds the store: 'running' is lost)
        record = store.run_by_key(run_key)
        if record.status == "running":
            store.mark_failed(record.id, error)


def _run_inline(todo, ledger, trainer, display, location):
    for spec, _ in todo:
        yield run_in_worker(spec, ledger.handle, trainer, display.handle, location)


def _run_pool(todo, ledger, workers, trainer, display, location):
    context = multiprocessing.get_context("spawn")
    workers = min(workers, len(todo))
    threads = max(1, _usable_cpus() // workers)
    # Queues reach the workers at their start (inheritance), so no manager process is needed.
    events, slots = context.Queue(), context.Queue()
    replies = [context.Queue() for _ in range(workers)]
    for slot in range(workers):
        slots.put(slot)

    def serve(timeout: float) -> None:
        """Answer the workers' messages and show their progress, waiting up to ``timeout`` for the first."""
        while True:
            try:
                item = events.get(timeout=timeout)
            except queue_module.Empty:
                return
            timeout = 0.0
            if item[0] == "progress":
                display.handle(item[1])
            else:
                _, slot, sequence, message = item
                replies[slot].put((sequence, *ledger.answer(message)))

    try:
        with cf.ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                                    initargs=(threads, os.getpid(), events, replies, slots)) as pool:
            pending = {pool.submit(_run_in_pool_worker, spec, trainer, location): spec for spec, _ in todo}
            try:
                while pending:
                    serve(0.1)
                    done, _ = cf.wait(pending, timeout=0, return_when=cf.FIRST_COMPLETED)
                    for future in done:
                        spec = pending.pop(future)
                        try:
                            yield future.result()
                        except cf.process.BrokenProcessPool:
                            yield spec.run_key, "failed", ("a worker process died (killed or out of memory); re-run "
                                                           "the same command to resume from the last checkpoint")
            finally:
                for future in pending:
                    future.cancel()
                _wind_down(pool, pending, serve)
            serve(0.0)
    finally:
        for channel in (events, slots, *replies):
            channel.close()


def _wind_down(pool: cf.ProcessPoolExecutor, pending: dict, serve: Callable[[float], None],
               grace_s: float = 10.0) -> None:
    """The sweep stops early (Ctrl-C, an error in the driver): answer the workers' last messages for a while
    (an interrupted run records "interrupted", as it did when it wrote the store itself), then end the
    workers still busy, which would otherwise wait for replies and keep the pool from shutting down."""
    deadline = time.monotonic() + grace_s
    while any(not future.done() for future in pending) and time.monotonic() < deadline:
        try:
            serve(0.1)
        except Exception:  # noqa: BLE001 - the store itself failed: nothing more can be recorded
            break
    if any(not future.done() for future in pending):
        for process in list((getattr(pool, "_processes", None) or {}).values()):
            process.terminate()
