# paxline developer entry points. `make test` is what CI runs (.ci/run).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
UV     := scripts/uv
STATE  ?= .paxline
# `make demo` keeps its stack in the clone; `paxline up` records it as the user's last stack,
# so the CLI finds it from any directory afterwards.
export PAXLINE_HOME ?= $(abspath $(STATE))
export PYTHON := $(abspath $(BIN)/python)
# uv installs into $(VENV) from uv.lock only; it never downloads a Python of its own.
export UV_PROJECT_ENVIRONMENT := $(abspath $(VENV))

.PHONY: venv lock lock-check bench-venv deps deps-engine lint test test-serial test-fast compose-test chaos sim-long demo demo-stop clean

## The virtualenv with the runtime and the dev extra, exactly as uv.lock pins them (fast
## when nothing changed: uv checks and returns).
venv: lock-check
	$(UV) sync --locked --extra dev --quiet

## Fails with one clear line when pyproject.toml changed and uv.lock was not regenerated.
lock-check:
	@out=$$($(UV) lock --check 2>&1) || { echo "$$out" >&2; \
	  echo "error: uv.lock does not match pyproject.toml: run 'make lock' and commit uv.lock" >&2; \
	  exit 1; }

## Regenerate uv.lock on purpose (after changing dependencies in pyproject.toml).
lock:
	$(UV) lock

## The benchmark peers (quixstreams needs confluent-kafka < 2.13): their own venv, same lock.
bench-venv: lock-check
	UV_PROJECT_ENVIRONMENT=$(abspath .venv-bench) $(UV) sync --locked --extra bench --quiet

## System packages (Java, Maven, redis-server, ...: scripts/install-deps) and the Kafka jars.
deps: venv
	scripts/install-deps
	scripts/kafka fetch

## The container engine for the compose deployment where there is no Docker: podman, runc,
## netavark, iptables, debootstrap (scripts/container-engine, scripts/images).
deps-engine: deps
	scripts/install-deps --engine

## mypy's incremental cache lives next to the Kafka jars (~/.cache/paxline, or $PAXLINE_CACHE),
## not in the clone: a fresh clone (CI) checks in ~1 s instead of ~25 s. Safe to share between
## clones: mypy re-checks every module whose source hash (or whose dependencies' interface)
## differs from the cached one.
MYPY_CACHE_DIR ?= $(or $(PAXLINE_CACHE),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/paxline)/mypy

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	MYPY_CACHE_DIR=$(MYPY_CACHE_DIR) $(BIN)/mypy
	$(BIN)/lint-imports --no-cache

## The whole suite: pure, simulator, integration, the short chaos variant (real Kafka, Redis)
## and the compose deployment (images built locally; 5-6 min cold, 1.5-3 min with cached images).
## scripts/test-suite runs it as two pytest processes at once: the process-starting tests
## (integration, e2e, chaos, compose) and, beside them, the pure and simulator tests (their
## output printed at the end); it fails when either fails. `make test-serial` runs it as one.
test: deps-engine lint
	PYTEST=$(BIN)/pytest scripts/test-suite --durations=15

test-serial: deps-engine lint
	$(BIN)/pytest -m "not bench" --durations=15

## Pure and simulator tests only (no Kafka, no Redis).
test-fast: venv
	$(BIN)/pytest -m "not (integration or e2e or chaos or compose or bench)"

## The compose deployment end to end on its own (part of `make test`; README "Deploying with
## docker compose"): builds the local images (cached after the first run), starts podman's
## Docker API when no Docker engine answers, runs the README's commands, kills the leader and
## a worker, `down -v`.
compose-test: deps-engine
	$(BIN)/pytest -m compose -s --durations=5

## The long chaos variants (`test` runs the short ones): 200,000 records per scenario and the
## issue's outage lengths (PAXLINE_CHAOS_LONG=1: a broker down 30 s, Redis paused 20 s,
## coordinator quorum lost 10 s, five leader-broker kill rounds, 20 s proxy stalls/resets).
## `-s` shows each scenario's "RECOVERY ...: dependency back -> lag 0 in N s" line.
chaos: deps
	scripts/hdfs fetch
	PAXLINE_CHAOS_LONG=1 PAXLINE_CHAOS_RECORDS=200000 $(BIN)/pytest -m chaos -s --durations=10

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
