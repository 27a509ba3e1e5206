# One venv for everything: make demo / make test / make up work from a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test test-slow lint typecheck unit demo up down status bench clean promtool

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

test: lint typecheck promtool
	$(BIN)/pytest

# Prometheus's promtool (rule checks and unit tests), from Debian's `prometheus` package into
# .local/tools/ when it is not on PATH; no Docker (devstack/promtool.py).
promtool: $(STAMP)
	@$(BIN)/python -m devstack.promtool

# The heavier variants `make test` leaves out (a 300 MiB copy killed at ~90 %, 50 MiB from a
# slow host): about a minute.
test-slow: $(STAMP)
	$(BIN)/pytest -m slow

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

clean:
	rm -rf $(VENV) .local .mypy_cache .ruff_cache .pytest_cache
