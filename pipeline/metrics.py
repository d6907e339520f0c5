"""Prometheus metrics of a worker process (served by `paxline worker run --metrics-port`)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

__all__ = ["WorkerMetrics"]

_LATENCY = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class WorkerMetrics:
    """One registry per worker, so tests can create several workers in one process."""

    def __init__(self, worker_id: str) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        labels = ["job"]
        self.records_in = Counter("paxline_worker_records_in", "records consumed", labels,
                                  registry=r)  # fmt: skip
        self.records_out = Counter("paxline_worker_records_out", "records produced", labels,
                                   registry=r)  # fmt: skip
        self.dead_letters = Counter("paxline_worker_dead_letters", "records dead-lettered",
                                    labels, registry=r)  # fmt: skip
        self.late_dropped = Counter("paxline_worker_late_dropped",
                                    "records too late for their window", labels,
                                    registry=r)  # fmt: skip
        self.fenced = Counter("paxline_worker_fencing_events", "partitions lost to fencing",
                              labels, registry=r)  # fmt: skip
        self.batch_seconds = Histogram("paxline_worker_batch_seconds",
                                       "poll-process-commit round", buckets=_LATENCY,
                                       registry=r)  # fmt: skip
        self.checkpoint_seconds = Histogram("paxline_worker_checkpoint_seconds",
                                            "checkpoint commit through Paxos", buckets=_LATENCY,
                                            registry=r)  # fmt: skip
        self.lag = Gauge("paxline_worker_partition_lag", "end offset - next offset to process",
                         ["job", "topic", "partition"], registry=r)  # fmt: skip
        self.stalled = Gauge("paxline_worker_stalled_partitions",
                             "partitions assigned but stalled on a dependency, by reason",
                             ["job", "reason"], registry=r)  # fmt: skip
        self.faults = Counter("paxline_worker_transient_faults",
                              "transient faults that stalled a partition, by reason", ["reason"],
                              registry=r)  # fmt: skip
        self.restoring = Gauge("paxline_worker_restoring_partitions",
                               "partitions restoring their state from the changelog", labels,
                               registry=r)  # fmt: skip
        self.restores = Counter("paxline_worker_restores",
                                "state restores from the changelog (Redis was behind)", labels,
                                registry=r)  # fmt: skip
        self.state_lost = Counter("paxline_worker_state_lost",
                                  "takeovers that found Redis state lost and had no changelog to "
                                  "restore it (Job(changelog=False))", labels,
                                  registry=r)  # fmt: skip
        self.restore_records = Counter("paxline_worker_restore_records",
                                       "changelog records read by restores", labels,
                                       registry=r)  # fmt: skip
        self.owned = Gauge("paxline_worker_owned_partitions", "partitions owned", registry=r)
        info = Gauge("paxline_worker_info", "worker identity", ["worker_id"], registry=r)
        info.labels(worker_id).set(1)

    def serve(self, port: int, host: str = "0.0.0.0") -> None:
        start_http_server(port, addr=host, registry=self.registry)
