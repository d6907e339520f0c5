"""Partition-local keyed state: an interface with an in-memory and a Redis implementation.

Every store is scoped to one (job, topic, partition) and remembers the offset up to which it
has applied input, so a record replayed after a crash never updates state twice.
"""

from pipeline.state.base import PartitionStore, StateKey
from pipeline.state.memory import MemoryStore
from pipeline.state.redis import RedisStore, RedisStores

__all__ = ["MemoryStore", "PartitionStore", "RedisStore", "RedisStores", "StateKey"]
