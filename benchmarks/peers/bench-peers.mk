# Fragment for the project Makefile (target `bench-peers`); the lead pastes it in.
# Each peer gets its own venv under .bench/ from benchmarks/peers/requirements-<peer>.txt;
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
