"""Progress of a sweep: live tqdm bars on a terminal, one line per evaluation in a log.

On a terminal (stderr) there is one bar for the whole grid and one per active run. When stdout is not a
terminal (``nohup``, a cluster job, ``> log``) the bars would be off and a long run would print nothing
between its configuration and its end, so each evaluation also prints one line to stdout: frames,
meta-episode return, frames per second and the time left.

Workers only send small event tuples (start / where / progress / eval); all drawing happens in the driver,
so the output stays readable however many processes or Ray tasks are training. Each run's bar and log lines
name the machine (and Ray node) it trains on when that is not this one, and a line says where it starts.
"""

from __future__ import annotations

import platform
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any

from tqdm.auto import tqdm

from metarl_agents.leaderboard.grid import RunSpec, format_frames


def format_duration(seconds: float) -> str:
    """59 -> "59 s", 754 -> "12.6 min", 9000 -> "2.5 h"."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _bar_desc(spec: RunSpec) -> str:
    return f"{spec.env_id} {spec.agent} s{spec.seed} lr{spec.learning_rate:g}"


def _what(spec: RunSpec) -> str:
    return f"{spec.env_id} {spec.agent} seed={spec.seed} lr={spec.learning_rate:g} ({format_frames(spec.frames)} frames)"


class GridProgress(AbstractContextManager):
    """Grid bar counts frames still to train over all runs (so its rate and ETA are the sweep's).

    ``enabled`` switches the bars (None: when stderr is a terminal); ``log_lines`` the per-evaluation
    lines (None: when stdout is not a terminal). ``clock`` gives the seconds the rates are measured in.
    """

    def __init__(self, todo: Sequence[tuple[RunSpec, int]], n_runs: int, n_skipped: int,
                 enabled: bool | None = None, log_lines: bool | None = None,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.specs = {spec.run_key: spec for spec, _ in todo}
        self.frames = {spec.run_key: done for spec, done in todo}
        self.n_runs, self.n_done = n_runs, n_skipped
        self._disable = not sys.stderr.isatty() if enabled is None else not enabled
        self._log_lines = not sys.stdout.isatty() if log_lines is None else log_lines
        self._clock = clock
        self._started_at = clock()
        self._trained = 0  # frames trained since this display started, over all runs
        self._run_start: dict[str, tuple[float, int]] = {}  # (time, frames) when each run (re)started
        self.where: dict[str, str] = {}  # the machine each run trains on
        remaining = sum(spec.frames - done for spec, done in todo)
        self.grid = tqdm(total=remaining, unit="frame", unit_scale=True, dynamic_ncols=True,
                         disable=self._disable, desc=self._grid_desc(), position=0)
        self.bars: dict[str, Any] = {}
        self._free_positions: list[int] = []
        if n_skipped:
            self.write(f"{n_skipped} of {n_runs} runs already finished in the store: skipped")

    def _grid_desc(self) -> str:
        return f"grid {self.n_done}/{self.n_runs} runs"

    def write(self, line: str) -> None:
        tqdm.write(line, file=sys.stderr)

    def handle(self, event: tuple) -> None:
        kind, key = event[0], event[1]
        if key not in self.specs:
            return
        if kind == "start":
            self._advance(key, event[2])
            self._run_start[key] = (self._clock(), event[2])
            spec = self.specs[key]
            position = self._free_positions.pop(0) if self._free_positions else len(self.bars) + 1
            self.bars[key] = tqdm(total=spec.frames, initial=event[2], unit="frame", unit_scale=True, leave=False,
                                  dynamic_ncols=True, disable=self._disable, position=position, desc=_bar_desc(spec))
            self.bars[key].position_ = position
        elif kind == "where":
            spec = self.specs[key]
            if event[2] != platform.node():  # runs on this machine's own processes need no label
                self.where[key] = event[2]
            if key in self.bars and key in self.where:
                self.bars[key].set_description(f"{_bar_desc(spec)} @{event[2]}")
            self.write(f"started: {_what(spec)} at {format_frames(self.frames[key])} frames on {event[2]}")
        elif kind == "progress":
            self._advance(key, event[2])
        elif kind == "eval":
            self._advance(key, event[2])
            if key in self.bars:
                self.bars[key].set_postfix(eval=f"{event[3]:.3g}")
            if self._log_lines:
                print(self.evaluation_line(key, event[2], event[3]), flush=True)

    def evaluation_line(self, key: str, frames: int, meta_episode_return: float) -> str:
        """One evaluation as a log line: the run, its frames, return, speed since it started and time left
        (and the sweep's time left while other runs are still to finish)."""
        spec = self.specs[key]
        now = self._clock()
        start_time, start_frames = self._run_start.get(key, (self._started_at, frames))
        line = (f"{spec.env_id} {spec.agent} seed={spec.seed} lr={spec.learning_rate:g}: {format_frames(frames)}/"
                f"{format_frames(spec.frames)} frames, return {meta_episode_return:.3f}")
        elapsed = now - start_time
        if frames > start_frames and elapsed > 0:
            rate = (frames - start_frames) / elapsed
            line += f", {rate:.0f} frames/s, ETA {format_duration(max(spec.frames - frames, 0) / rate)}"
        if key in self.where:
            line += f", on {self.where[key]}"
        others = self.n_runs - self.n_done - 1
        grid_elapsed = now - self._started_at
        if others > 0 and self._trained > 0 and grid_elapsed > 0:
            remaining = sum(max(s.frames - self.frames[k], 0) for k, s in self.specs.items())
            line += (f" (sweep: {self.n_done}/{self.n_runs} runs done, "
                     f"ETA {format_duration(remaining / (self._trained / grid_elapsed))})")
        return line

    def _advance(self, key: str, frames: int) -> None:
        delta = frames - self.frames[key]
        if delta <= 0:
            return
        self.frames[key] = frames
        self._trained += delta
        self.grid.update(delta)
        if key in self.bars:
            self.bars[key].update(delta)

    def run_done(self, key: str, status: str, error: str | None) -> None:
        self.n_done += 1
        self.frames[key] = max(self.frames[key], self.specs[key].frames)  # stopped early or failed: none left
        self.grid.set_description(self._grid_desc())
        bar = self.bars.pop(key, None)
        if bar is not None:
            self._free_positions.append(bar.position_)
            bar.close()
        where = f" on {self.where[key]}" if key in self.where else ""
        self.write(f"{status}: {_what(self.specs[key])}{where}" + (f"\n  {error}" if error else ""))

    def __exit__(self, *exc: object) -> None:
        for bar in self.bars.values():
            bar.close()
        self.grid.close()
