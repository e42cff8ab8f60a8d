# One command each: `make demo` (set up + main job), `make test` (set up + tests).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Tests and benchmarks read the shared MovieLens copies when they are beside the project.
export RECFIT_DATA_DIR ?= $(abspath $(wildcard ../shared/datasets))

.PHONY: demo test test-fast lint bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/recfit demo

test: $(VENV)/.installed
	$(PY) -m pytest -n 2 -q

test-fast: $(VENV)/.installed
	$(PY) -m pytest -n 2 -q -m "not slow"

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/mypy

bench: $(VENV)/.installed
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
