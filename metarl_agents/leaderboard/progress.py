"""Live progress of a sweep: one tqdm bar for the whole grid and one per active run.

Workers only send small event tuples (start / progress / eval); all drawing happens in the driver, so
the bars stay readable however many processes or Ray tasks are training.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from tqdm.auto import tqdm

from metarl_agents.leaderboard.grid import RunSpec, format_frames


class GridProgress:
    """Grid bar counts frames still to train over all runs (so its rate and ETA are the sweep's)."""

    def __init__(self, todo: Sequence[tuple[RunSpec, int]], n_runs: int, n_skipped: int,
                 enabled: bool | None = None) -> None:
        self.specs = {spec.run_key: spec for spec, _ in todo}
        self.frames = {spec.run_key: done for spec, done in todo}
        self.n_runs, self.n_done = n_runs, n_skipped
        disable = not sys.stderr.isatty() if enabled is None else not enabled
        self._disable = disable
        remaining = sum(spec.frames - done for spec, done in todo)
        self.grid = tqdm(total=remaining, unit="frame", unit_scale=True, dynamic_ncols=True,
                         disable=disable, desc=self._grid_desc(), position=0)
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
            spec = self.specs[key]
            position = self._free_positions.pop(0) if self._free_positions else len(self.bars) + 1
            self.bars[key] = tqdm(
                total=spec.frames, initial=event[2], unit="frame", unit_scale=True, leave=False,
                dynamic_ncols=True, disable=self._disable, position=position,
                desc=f"{spec.env_id} {spec.agent} s{spec.seed} lr{spec.lr:g}",
            )
            self.bars[key].position_ = position
        elif kind == "progress":
            self._advance(key, event[2])
        elif kind == "eval":
            self._advance(key, event[2])
            if key in self.bars:
                self.bars[key].set_postfix(eval=f"{event[3]:.3g}")

    def _advance(self, key: str, frames: int) -> None:
        delta = frames - self.frames[key]
        if delta <= 0:
            return
        self.frames[key] = frames
        self.grid.update(delta)
        if key in self.bars:
            self.bars[key].update(delta)

    def run_done(self, key: str, status: str, error: str | None) -> None:
        self.n_done += 1
        self.grid.set_description(self._grid_desc())
        bar = self.bars.pop(key, None)
        if bar is not None:
            self._free_positions.append(bar.position_)
            bar.close()
        spec = self.specs[key]
        what = f"{spec.env_id} {spec.agent} seed={spec.seed} lr={spec.lr:g} ({format_frames(spec.frames)} frames)"
        self.write(f"{status}: {what}" + (f"\n  {error}" if error else ""))

    def __enter__(self) -> GridProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        for bar in self.bars.values():
            bar.close()
        self.grid.close()
