# Two entry points a person needs: `make demo` (set up + the main job) and `make test` (set up + tests).
#
# Everything runs in the project's own virtual environment, .venv/ (created on first use), or in the one
# already active ($VIRTUAL_ENV set). So the commands work where the system Python refuses `pip install`
# (PEP 668, "externally-managed-environment"), and the tests only see what this project declares, never
# packages the machine happens to have.
# The interpreter that creates .venv (e.g. `make test PYTHON=python3.12`).
PYTHON ?= python3
VENV ?= .venv
ifdef VIRTUAL_ENV
ENV_DIR := $(VIRTUAL_ENV)
else
ENV_DIR := $(VENV)
endif
PY := $(ENV_DIR)/bin/python
PIP := $(PY) -m pip
# torch is pinned here (pyproject keeps a range) so that setup takes the CPU build this pin resolves to
# from pip's configured sources. TORCH_INDEX=URL adds an extra index for torch (e.g. PyTorch's own CPU
# index, where PyPI would offer a CUDA build on your platform).
TORCH_PIN := torch==2.13.0
TORCH_INDEX ?=
# The project's own environment is installed once and again when pyproject.toml or this file change; an
# active environment (which may belong to another checkout) is installed into at every command.
ifdef VIRTUAL_ENV
SETUP := install
else
SETUP := $(VENV)/.metarl-installed
endif

.PHONY: install demo test test-slow bench lint

install:
ifndef VIRTUAL_ENV
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
endif
	$(PIP) install -q $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX)) $(TORCH_PIN)
	$(PIP) install -q -e ".[dev,zoo,ray]"
ifndef VIRTUAL_ENV
	touch $(VENV)/.metarl-installed
endif

$(VENV)/.metarl-installed: pyproject.toml Makefile
	$(MAKE) --no-print-directory install

# The main job, small enough for a few minutes on 2 cores: SplAgger vs RNN on a 10-cell T-maze,
# 2 seeds, 22.4k frames each (a REDUCED BUDGET, labelled as such in the report).
DEMO_DIR ?= demo_results
demo: $(SETUP)
	$(PY) -m metarl_agents.leaderboard run --envs MetaTMaze-v0 --agents SplAgger RNN --seeds 2 \
		--lrs 1e-3 --frames 22400 --eval-every 5600 --env-kwarg length=10 --override n_steps=100 \
		--workers 2 --db $(DEMO_DIR)/metarl_results.db
	$(PY) -m metarl_agents.leaderboard report --db $(DEMO_DIR)/metarl_results.db --out $(DEMO_DIR)/report

test: $(SETUP)
	$(PY) -m pytest -q -p no:cacheprovider

test-slow: $(SETUP)
	$(PY) -m pytest -q -m slow

bench: $(SETUP)
	$(PY) -m pytest benchmarks -q -o python_files='bench_*.py' --benchmark-columns=median,ops,rounds

lint: $(SETUP)
	$(PY) -m ruff check metarl_envs metarl_agents tests benchmarks
