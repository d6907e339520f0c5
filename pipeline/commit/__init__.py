"""The per-partition commit protocols as pure state machines (docs/architecture.md, sec. 4).

`protocol` holds the order of the steps that make a batch durable (produce, flush, apply
state, transaction, checkpoint) for each guarantee; `takeover` holds the reconciliation a new
owner makes from what is durable. Both take events and return effects; the worker
(`pipeline/worker.py`, `pipeline/eos.py`) runs the effects against Kafka, Redis and the
coordinators. Nothing here does I/O, reads a clock or draws randomness (import-linter
contract "Pure cores ..." in pyproject.toml).
"""
