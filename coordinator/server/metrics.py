"""Prometheus metrics of a coordinator node, read off the runtime at scrape time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from coordinator.server.runtime import NodeRuntime

__all__ = ["render_metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0)


class _RuntimeCollector(Collector):
    def __init__(self, rt: NodeRuntime) -> None:
        self.rt = rt

    def collect(self) -> Iterator[Metric]:
        rt, n = self.rt, self.rt.node
        role = GaugeMetricFamily(
            "paxline_coordinator_role", "1 for the current role", labels=["role"]
        )
        for r in ("follower", "candidate", "leader"):
            role.add_metric([r], 1.0 if n.role.value == r else 0.0)
        yield role
        ballot = n.ballot or n.acceptor.promised
        yield GaugeMetricFamily(
            "paxline_coordinator_ballot_round", "ballot round", value=ballot.round
        )
        yield GaugeMetricFamily(
            "paxline_coordinator_commit_index", "commit index", value=n.commit_index
        )
        yield GaugeMetricFamily(
            "paxline_coordinator_applied_index", "applied index", value=n.applied
        )
        yield CounterMetricFamily(
            "paxline_coordinator_proposals", "proposals", value=rt.proposals_total
        )
        yield CounterMetricFamily(
            "paxline_coordinator_reads", "linearizable reads", value=rt.reads_total
        )
        dropped = CounterMetricFamily(
            "paxline_coordinator_peer_frames_dropped", "peer frames dropped", labels=["reason"]
        )
        for reason, count in sorted(rt.transport.dropped.items()):
            dropped.add_metric([reason], count)
        yield dropped
        yield CounterMetricFamily(
            "paxline_coordinator_ticks_dropped",
            "Paxos ticks not counted because the event loop woke late (starved or blocked)",
            value=rt.ticks.dropped,
        )
        samples = rt.fsync_seconds
        buckets = [(str(b), float(sum(1 for s in samples if s <= b))) for b in _BUCKETS]
        buckets.append(("+Inf", float(len(samples))))
        yield HistogramMetricFamily(
            "paxline_coordinator_fsync_seconds",
            "durable-write latency (recent window)",
            buckets=buckets,
            sum_value=sum(samples),
        )


def render_metrics(rt: NodeRuntime) -> tuple[bytes, str]:
    registry = CollectorRegistry()
    registry.register(_RuntimeCollector(rt))
    return generate_latest(registry), CONTENT_TYPE
