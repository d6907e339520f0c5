# paxline developer entry points. `make test` is what CI runs (.ci/run).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
STATE  ?= .paxline
export PYTHON := $(abspath $(BIN)/python)

.PHONY: venv deps lint test test-fast chaos sim-long demo demo-stop clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON_BOOT) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[dev]' --config-settings editable_mode=compat
	rm -f $(VENV)/.installed-* && touch $@

PYTHON_BOOT ?= python3

venv: $(STAMP)

## System packages (Java, Maven, redis-server) and the Kafka jars from Maven Central.
deps: venv
	scripts/install-deps
	scripts/kafka fetch
	scripts/redis install

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## The whole suite: pure, simulator, integration and the short chaos variant (real Kafka, Redis).
test: deps lint
	$(BIN)/pytest -m "not bench" --durations=15

## Pure and simulator tests only (no Kafka, no Redis).
test-fast: venv
	$(BIN)/pytest -m "not integration and not e2e and not chaos and not bench"

## The long exactly-once chaos variant (200,000 records per scenario).
chaos: deps
	PAXLINE_CHAOS_RECORDS=200000 $(BIN)/pytest -m chaos --durations=10

sim-long: venv
	$(BIN)/python -m coordinator.sim --seeds 20000

## The demo: local stack (Kafka, Redis, 3 coordinators, 2 workers), word count, results.
demo: deps
	$(BIN)/paxline up
	$(BIN)/python scripts/demo.py

demo-stop:
	-$(BIN)/paxline down

clean: demo-stop
	rm -rf $(STATE) .pytest_cache .mypy_cache .ruff_cache
