"""Which Redis errors are "not now" (the partition stalls and is retaken) and which are bugs.

A redis-py exception that escapes as itself ends the worker as a bug; each row below is a
failure a real deployment sees (a restart, a failover, a Cluster primary killed and its
replica promoted, which answers the old slot owner's clients with MOVED)."""

from __future__ import annotations

import pytest
import redis
import redis.exceptions as rx

from pipeline.errors import StateUnavailable
from pipeline.state.redis import _unavailable


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (redis.ConnectionError("Error 111 connecting to 127.0.0.1:6379"), True),
        (redis.TimeoutError("Timeout reading from 127.0.0.1:6379"), True),
        (rx.ResponseError("READONLY You can't write against a read only replica."), True),
        (rx.ResponseError("LOADING Redis is loading the dataset in memory"), True),
        (rx.ClusterDownError("CLUSTERDOWN The cluster is down"), True),
        # redis-py strips the reply's first word: str(MovedError) is "5070 127.0.0.1:46145"
        # (found by make chaos: a worker exited on it after a Cluster failover)
        (rx.MovedError("5070 127.0.0.1:46145"), True),
        (rx.AskError("5070 127.0.0.1:46145"), True),
        (rx.TryAgainError("Multiple keys request during rehashing of slot"), True),
        (rx.SlotNotCoveredError("Slot 5070 is not covered by the cluster"), True),
        (rx.ResponseError("WRONGTYPE Operation against a key holding the wrong kind"), False),
        (rx.ResponseError("NOSCRIPT No matching script"), False),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Exception) else str(v),
)
def test_transient_redis_errors_become_state_unavailable(error: Exception, transient: bool) -> None:
    if transient:
        with pytest.raises(StateUnavailable), _unavailable():
            raise error
    else:
        with pytest.raises(type(error)), _unavailable():
            raise error
