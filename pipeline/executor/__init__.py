"""PURE executor: compiles a job's operator graph into one batch function per stage.

The worker owns all I/O; this package only turns ``(records of one partition, state)`` into
``BatchResult`` (outputs, dead letters, state and view writes). Keeping it pure is what makes
exactly-once work: replaying the same input from the same state must give byte-identical
results, so there is no clock, no randomness and no iteration over unordered collections.

Modules, in dependency order (each imports only those above it):

* ``records`` — the types exchanged with the worker: InRecord, OutRecord, DeadLetter,
  StateAccess, BatchResult, and the executor's errors
* ``provenance`` — the repartition provenance header, and the de-duplication it allows
* ``columns`` — column-wise loops that resume after a failing element (the hot path)
* ``batch`` — per-batch scratch: failed records, outputs, views
* ``state_cache`` — a batch's view of state, with the undo journal
* ``stateless`` — map, filter, flat_map
* ``encoding`` — decoding a stage's input, encoding its output (repartition, Kafka, Redis)
* ``stateful`` — keyed aggregation, and the record-by-record loop with rollback
* ``windows`` — tumbling and hopping windows, watermark and lateness
* ``stage`` — one stage assembled from the above
* ``plan`` — Plan and compile_job: a job's stages, routed by topic
"""

from __future__ import annotations

from pipeline.executor.plan import Plan, Stage, compile_job
from pipeline.executor.records import (
    BatchResult,
    DeadLetter,
    InRecord,
    OutRecord,
    PlanError,
    StateAccess,
    StateAccessError,
)

__all__ = [
    "BatchResult",
    "DeadLetter",
    "InRecord",
    "OutRecord",
    "Plan",
    "PlanError",
    "Stage",
    "StateAccess",
    "StateAccessError",
    "compile_job",
]
