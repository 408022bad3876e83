"""``python -m metarl_agents.train_cli`` (the old module of ``metarl-train``): see :mod:`metarl_agents.cli.train`."""

from metarl_agents.cli.train import build_parser, main

__all__ = ["build_parser", "main"]

if __name__ == "__main__":
    raise SystemExit(main())
