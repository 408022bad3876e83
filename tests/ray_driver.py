"""``metarl-bench run --backend ray`` with the fake trainer, as a process a test can kill:
``python ray_driver.py LOG SLEEP metarl-bench-run-arguments...``."""

from __future__ import annotations

import sys


def main(log: str, sleep: str, *argv: str) -> int:
    from leaderboard_fakes import FakeTrainer

    from metarl_agents.cli import bench
    from metarl_agents.leaderboard import runner

    runner.MetaPPOTrainer = lambda **_: FakeTrainer(log, sleep=float(sleep))  # the command's trainer
    return bench.main(["run", *argv])


if __name__ == "__main__":
    raise SystemExit(main(*sys.argv[1:]))
