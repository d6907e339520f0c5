"""What "lag" means everywhere paxline shows it: records left to read, not offsets.

A Kafka offset is not always a record: every committed transaction leaves a commit marker,
which takes an offset and is never returned to a consumer (aborted records are skipped too
under read_committed). An exactly-once pipeline that has read everything therefore sits one
offset or more below the partition's end, and "end offset minus position" would never reach
zero (issue 14, item 5). The worker sees which offsets its consumer passed without a record
and reports an end without them; the CLI counts the records themselves
(`pipeline.kafka.committed_lag`). Pure: no I/O.
"""

from __future__ import annotations

__all__ = ["readable_end"]


def readable_end(kafka_end: int, read_to: int | None, fetched: int | None) -> int:
    """The end offset to measure a partition's lag against.

    `read_to` is the offset after the last record the worker took from the consumer;
    `fetched` is the consumer's position, the next offset it would return. When the consumer
    stands beyond `read_to`, the offsets in between held no records (markers, aborted
    records), so they are not lag.
    """
    if read_to is None or fetched is None or fetched <= read_to:
        return kafka_end
    return max(read_to, kafka_end - (fetched - read_to))
