# Two entry points a person needs: `make demo` (set up + the main job) and `make test` (set up + tests).
PYTHON ?= python3
PIP := $(PYTHON) -m pip
# The CPU build of torch; pinned here (not in pyproject) so that setup never pulls CUDA wheels.
TORCH_PIN := torch==2.13.0

.PHONY: install demo test test-slow bench lint

install:
	$(PIP) install -q $(TORCH_PIN)
	$(PIP) install -q -e ".[dev]"

demo: install
	$(PYTHON) -m metarl_agents.demo

test: install
	$(PYTHON) -m pytest -q -p no:cacheprovider

test-slow: install
	$(PYTHON) -m pytest -q -m slow

bench: install
	$(PYTHON) -m pytest benchmarks -q -o python_files='bench_*.py' --benchmark-columns=median,ops,rounds

lint:
	$(PYTHON) -m ruff check metarl_envs metarl_agents tests benchmarks
