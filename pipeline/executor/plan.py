"""A compiled job: what a worker holds to route an assigned topic to a stage and run batches.

Compiling validates the job and splits it into stages with :func:`pipeline.spec.stages_of`,
the function that also builds the spec the coordinator stores, so the stages a worker runs
and the topics it was assigned agree.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.executor.joins import TableFeeder
from pipeline.executor.records import BatchResult, InRecord, PlanError, StateAccess
from pipeline.executor.stage import StageRunner
from pipeline.job import Job, Window
from pipeline.spec import StagePlan, label, stages_of

__all__ = ["Plan", "Stage", "compile_job"]


@dataclass(frozen=True, slots=True)
class Stage:
    """Public description of one stage (what a worker needs to route an assigned topic)."""

    index: int
    topics: tuple[str, ...]
    partitions: int
    operators: tuple[str, ...]
    output: str  # "repartition" | "kafka" | "redis" | "files" | "rabbitmq"
    output_topic: str | None  # repartition or Kafka sink topic; None for Redis
    stateful: bool
    #: a window's idle timeout in ms (executor/ticks.py); None: no idle timer
    idle_timeout_ms: int | None = None
    #: a table feeder (executor/joins.py): the stage whose repartition topic it feeds
    feeds: int | None = None


def _describe(plan: StagePlan, runner: StageRunner | TableFeeder) -> Stage:
    return Stage(
        plan.index,
        (plan.topic,),
        plan.partitions,
        tuple(label(i, op) for i, op in plan.operators),
        runner.output.kind,
        None if runner.output.kind in ("files", "rabbitmq") else runner.output.topic,
        runner.update is not None,
        next(
            (op.idle_timeout_ms for _, op in plan.operators if isinstance(op, Window)),
            None,
        ),
        plan.feeds,
    )


class Plan:
    """A compiled job: one batch function per stage, routed by input topic."""

    __slots__ = ("_by_topic", "_runners", "dead_letter_topic", "guarantee", "job_name", "stages")

    def __init__(self, job: Job) -> None:
        plans = stages_of(job)
        self.job_name = job.name
        self.guarantee = job.guarantee
        self.dead_letter_topic = job.dlq_topic
        self._runners: list[StageRunner | TableFeeder] = [
            StageRunner(job, p) if p.feeds is None else TableFeeder(job, p) for p in plans
        ]
        self.stages: list[Stage] = [
            _describe(p, r) for p, r in zip(plans, self._runners, strict=True)
        ]
        self._by_topic = {s.topics[0]: s.index for s in self.stages}

    def stage_for_topic(self, topic: str) -> int:
        """The stage that consumes ``topic`` (a source or a repartition topic)."""
        try:
            return self._by_topic[topic]
        except KeyError:
            known = ", ".join(sorted(self._by_topic))
            raise PlanError(
                f"job {self.job_name!r} does not read {topic!r} (reads {known})"
            ) from None

    def process(self, stage: int, records: list[InRecord], state: StateAccess) -> BatchResult:
        """Run one batch of ONE partition's records (in offset order) through ``stage``."""
        if not 0 <= stage < len(self._runners):
            raise PlanError(
                f"job {self.job_name!r} has stages 0..{len(self._runners) - 1}, not {stage}"
            )
        return self._runners[stage].process(records, state)


def compile_job(job: Job) -> Plan:
    """Validate ``job`` (raising :class:`~pipeline.spec.SpecError`) and compile it."""
    return Plan(job)
