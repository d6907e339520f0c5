"""PySyncObj (Raft) side of `bench/coordinator.py`: 3 node processes with PySyncObj's defaults.

PySyncObj is a library, not a service: a program replicates its own objects and calls their
`@replicated` methods in-process. So the load runs inside one node's process (the leader's,
which is PySyncObj's fast path; a follower would forward every command to it): a `ReplDict`
whose `set(key, value, callback=...)` is called with N commands in flight, each callback
issuing that client's next command. Defaults mean no journal file, so nothing is fsynced.
"""

from __future__ import annotations

import threading
import time
from typing import Any

__all__ = ["node_main"]


def _load(
    d: Any, n: int, warmup: float, duration: float, offset_base: int, watch: dict[str, int]
) -> dict[str, Any]:
    from _coordinator_loadgen import cpu_seconds, cpu_window, machine_busy_seconds, percentile

    begin = time.perf_counter()
    w_start, w_end = begin + warmup, begin + warmup + duration
    lat: list[float] = []
    errors: dict[str, int] = {}
    lock = threading.Lock()
    inflight = [0]
    drained = threading.Event()

    def issue(client: int, seq: int) -> None:
        t0 = time.perf_counter()

        def done(result: Any, error: Any) -> None:
            t1 = time.perf_counter()
            with lock:
                if error == 0:  # FAIL_REASON.SUCCESS
                    if w_start <= t1 < w_end:
                        lat.append(t1 - t0)
                else:
                    errors[f"fail_reason {error}"] = errors.get(f"fail_reason {error}", 0) + 1
            if t1 < w_end:
                issue(client, seq + 1)
            else:
                with lock:
                    inflight[0] -= 1
                    if inflight[0] == 0:
                        drained.set()

        d.set(f"c{client}", offset_base + seq, callback=done)

    inflight[0] = n
    for c in range(n):
        issue(c, 1)
    time.sleep(max(0.0, w_start - time.perf_counter()))
    w0 = {k: cpu_seconds(p) for k, p in watch.items()}
    m0 = machine_busy_seconds()
    time.sleep(max(0.0, w_end - time.perf_counter()))
    w1 = {k: cpu_seconds(p) for k, p in watch.items()}
    m1 = machine_busy_seconds()
    drained.wait(10.0)
    lat.sort()
    return {
        "clients": n,
        "duration": duration,
        "ops": len(lat),
        "ops_per_s": len(lat) / duration,
        "p50_ms": percentile(lat, 0.50) * 1e3,
        "p99_ms": percentile(lat, 0.99) * 1e3,
        "max_ms": (lat[-1] if lat else float("nan")) * 1e3,
        "errors": errors,
        # The load runs in the leader's own process: its CPU is in watched_cpu, not here.
        "loadgen_cpu": None,
        **cpu_window(w0, w1, m0, m1, None, duration),
    }


def _probe(d: Any, t0: float, every: float, limit: float) -> dict[str, Any]:
    """Start one `set` every `every` s until one succeeds; seconds from `t0` (monotonic)."""
    first: list[float] = []
    ok = threading.Event()

    def done(result: Any, error: Any) -> None:
        if error == 0 and not ok.is_set():
            first.append(time.monotonic() - t0)
            ok.set()

    attempts = 0
    deadline = time.monotonic() + limit
    while not ok.is_set():
        if time.monotonic() > deadline:
            return {"error": f"no set succeeded within {limit}s"}
        attempts += 1
        d.set("failover", attempts, callback=done)
        ok.wait(every)
    return {"seconds": first[0], "attempts": attempts}


def node_main(self_addr: str, partners: list[str], conn: Any) -> None:
    """multiprocessing target: one PySyncObj node answering commands from the parent."""
    from pysyncobj import SyncObj
    from pysyncobj.batteries import ReplDict

    d = ReplDict()
    obj = SyncObj(self_addr, partners, consumers=[d])  # PySyncObj's defaults
    try:
        while True:
            msg = conn.recv()
            op = msg[0]
            if op == "status":
                leader = obj._getLeader()
                conn.send(
                    {
                        "leader": obj._isLeader(),
                        "ready": obj.isReady(),
                        "leader_addr": None if leader is None else str(leader),
                        "commit_index": obj.raftCommitIndex,
                        "applied_index": obj.raftLastApplied,
                    }
                )
            elif op == "load":
                _, n, warmup, duration, offset_base, watch = msg
                conn.send(_load(d, n, warmup, duration, offset_base, watch))
            elif op == "probe":
                _, t0, every, limit = msg
                conn.send(_probe(d, t0, every, limit))
            elif op == "stop":
                conn.send({"stopped": True})
                return
    finally:
        obj.destroy()
