# One command each: `make demo` (set up + main job), `make test` (set up + tests).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Tests and benchmarks read the shared MovieLens copies when they are beside the project.
export RECFIT_DATA_DIR ?= $(abspath $(wildcard ../shared/datasets))

.PHONY: demo test test-fast lint bench browser clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/recfit demo

# Browser tests drive Debian's chromium + chromedriver (installed here when missing and root).
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { [ "$$(id -u)" = 0 ] && apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq chromium chromium-driver >/dev/null; } || \
	  echo "chromium/chromedriver not installed: browser tests will be skipped"

test: $(VENV)/.installed browser
	$(PY) -m pytest -n 2 -q

test-fast: $(VENV)/.installed
	$(PY) -m pytest -n 2 -q -m "not slow"

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

bench: $(VENV)/.installed
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# Peer comparison (`make bench-peers`). Each peer gets its own venv under .bench/ from benchmarks/peers/requirements-<peer>.txt;
# a peer that fails to install is reported by the driver as "not run" with its log's tail.
# PEERS_ARGS passes options to the driver, e.g. `make bench-peers PEERS_ARGS=--quick`.
BENCH := .bench
PEERS := fastai surprise implicit keras
PEERS_ARGS ?=

.PHONY: bench-peers

$(BENCH)/%/.installed: benchmarks/peers/requirements-%.txt
	@mkdir -p $(BENCH)
	@rm -f $@
	@echo "bench-peers: installing $* into $(BENCH)/$* (log: $(BENCH)/$*.log)"
	@( $(PYTHON) -m venv $(BENCH)/$* \
	   && $(BENCH)/$*/bin/python -m pip install -q --upgrade pip \
	   && $(BENCH)/$*/bin/python -m pip install -r $< ) > $(BENCH)/$*.log 2>&1 \
	   && touch $@ \
	   || echo "bench-peers: $* did not install (see $(BENCH)/$*.log); its runs will be listed as not run"

bench-peers: $(VENV)/.installed $(foreach p,$(PEERS),$(BENCH)/$(p)/.installed)
	$(PY) benchmarks/peers/run.py $(PEERS_ARGS)
