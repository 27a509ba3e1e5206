# One venv for everything: make demo / make test / make up work from a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test test-slow lint typecheck unit demo up down status bench chaos soak clean chromium promtool

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy .

test: lint typecheck chromium promtool
	$(BIN)/pytest

# Prometheus's promtool (rule checks and unit tests), from Debian's `prometheus` package into
# .local/tools/ when it is not on PATH; no Docker (devstack/promtool.py).
promtool: $(STAMP)
	@$(BIN)/python -m devstack.promtool

# The heavier variants `make test` leaves out (a 300 MiB copy killed at ~90 %, 50 MiB from a
# slow host, 50 concurrent POSTs against a budget, a worker killed mid-reservation): about a minute.
test-slow: $(STAMP)
	$(BIN)/pytest -m slow

# The ops page's browser test drives Debian's Chromium through playwright (`playwright install`
# downloads browsers, which CI cannot): install it when missing and we may (root), else say how.
CHROMIUM ?= /usr/bin/chromium
chromium:
	@test -x $(CHROMIUM) || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "$(CHROMIUM) is missing: the ops page's browser test needs it (sudo apt-get install chromium)" >&2; \
	    exit 1; \
	  fi; }

demo: $(STAMP)
	$(BIN)/python -m devstack demo

up: $(STAMP)
	$(BIN)/python -m devstack up

down: $(STAMP)
	$(BIN)/python -m devstack down

status: $(STAMP)
	$(BIN)/python -m devstack status

bench: $(STAMP)
	$(BIN)/python -m bench

# Issue 15's reliability table on real servers of its own (free ports, own state): workers
# SIGKILLed, the store down, Temporal restarted, callback and provider chaos, expired links, API
# restarts. One line of counts per scenario; exits 1 if anything was lost. About 7 minutes.
chaos: $(STAMP)
	$(BIN)/python -m chaos

# 10,000 generations waiting on the provider at once on one worker, then delivered: worker RSS,
# sticky cache, Temporal CPU and SQLite size, per 1,000 (bench/soak.py). Its own servers and
# state; not part of `make test`. Scale it down with e.g. SOAK_ARGS="--generations 2000 --batch 500".
SOAK_ARGS ?=
soak: $(STAMP)
	$(BIN)/python -m bench.soak $(SOAK_ARGS)

clean:
	rm -rf $(VENV) .local .mypy_cache .ruff_cache .pytest_cache
