# Two entry points (see README): `make report` and `make test`. Both create .venv with the pinned
# dependencies of requirements.lock first (once; again when the lock or pyproject changes). `make test`
# runs `make lint` first (what CI runs, .ci/run), then installs headless Chromium and poppler-utils for
# the browser tests when they are missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
REPORT_DIR ?= marrow-report
PYTEST_ARGS ?=
# Two pytest workers, whole files each (a file's shared fits stay in one process): the suite's
# single-threaded phases (imports, compiles, loaders) overlap; about half the time on 2 cores.
PYTEST_WORKERS ?= 2

.PHONY: install report lint test bench clean

install: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

report: $(STAMP)
	$(BIN)/marrow report --out $(REPORT_DIR) --force

# ruff (lint and format, [tool.ruff]), mypy on the core packages ([tool.mypy] files), and the layers
# contract of import-linter ([tool.importlinter], docs/architecture.md); the tools are in the lock.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	PYTHONPATH=. $(BIN)/lint-imports

test: $(STAMP) lint
	bash tests/browser_check.sh
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) $(REPORT_DIR)
