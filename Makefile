# Two entry points a person needs: `make demo` (set up + the main job) and `make test` (set up + tests).
PYTHON ?= python3
PIP := $(PYTHON) -m pip
# The CPU build of torch; pinned here (not in pyproject) so that setup never pulls CUDA wheels.
TORCH_PIN := torch==2.13.0

.PHONY: install demo test test-slow bench lint

install:
	$(PIP) install -q $(TORCH_PIN)
	$(PIP) install -q -e ".[dev,zoo]"

# The main job, small enough for a few minutes on 2 cores: SplAgger vs RNN on a 10-cell T-maze,
# 2 seeds, 22.4k frames each (a REDUCED BUDGET, labelled as such in the report).
DEMO_DIR ?= demo_results
demo: install
	$(PYTHON) -m metarl_agents.leaderboard run --envs MetaTMaze-v0 --agents SplAgger RNN --seeds 2 \
		--lrs 1e-3 --frames 22400 --eval-every 5600 --env-kwarg length=10 --override n_steps=100 \
		--workers 2 --db $(DEMO_DIR)/metarl_results.db
	$(PYTHON) -m metarl_agents.leaderboard report --db $(DEMO_DIR)/metarl_results.db --out $(DEMO_DIR)/report

test: install
	$(PYTHON) -m pytest -q -p no:cacheprovider

test-slow: install
	$(PYTHON) -m pytest -q -m slow

bench: install
	$(PYTHON) -m pytest benchmarks -q -o python_files='bench_*.py' --benchmark-columns=median,ops,rounds

lint:
	$(PYTHON) -m ruff check metarl_envs metarl_agents tests benchmarks
