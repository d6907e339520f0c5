"""Load generator and fail-over probe for `bench/coordinator.py` (not a test).

A closed-loop generator: N clients, each with its own keep-alive HTTP/1.1 connection and at
most one request outstanding, written on raw asyncio streams (no HTTP library) so that the
generator costs as little CPU as possible on a 2-core machine. It runs in its own process
(`run_load` is the multiprocessing target) and reports its own CPU use and, for the pids it
is told to watch, theirs, over the measurement window only (warm-up excluded).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import time
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Conn",
    "cpu_seconds",
    "cpu_window",
    "etcd_request",
    "http_once",
    "machine_busy_seconds",
    "paxline_request",
    "percentile",
    "probe_until_success",
    "run_load",
]

_CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    """user+system CPU seconds of a process (and of its reaped children: none here)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy (all cores, every process), from /proc/stat."""
    with open("/proc/stat", "rb") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    return (sum(values[:8]) - idle) / _CLK_TCK


def cpu_window(
    w0: dict[str, float | None],
    w1: dict[str, float | None],
    m0: float,
    m1: float,
    self_cpu: float | None,
    duration: float,
) -> dict[str, Any]:
    """CPU use over a window, in cores: each watched process, and everything else."""
    watched: dict[str, float | None] = {}
    for k in w0:
        a, b = w0.get(k), w1.get(k)
        watched[k] = None if a is None or b is None else (b - a) / duration
    machine = (m1 - m0) / duration
    others = machine - sum(v for v in watched.values() if v) - (self_cpu or 0.0)
    return {"watched_cpu": watched, "machine_cpu": machine, "other_cpu": max(0.0, others)}


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[k]


# --------------------------------------------------------------------------- raw HTTP
class HttpError(Exception):
    pass


class Conn:
    """One keep-alive HTTP/1.1 connection; one request at a time."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.head = b""  # the last answer's status line and headers, as received

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            await self.open()
        assert self.reader is not None and self.writer is not None
        self.writer.write(raw)
        head = self.head = await self.reader.readuntil(b"\r\n\r\n")
        try:
            status = int(head[9:12])
        except ValueError as exc:
            raise HttpError(f"bad status line {head[:40]!r}") from exc
        lower = head.lower()
        i = lower.find(b"\r\ncontent-length:")
        if i >= 0:
            j = lower.index(b"\r\n", i + 2)
            body = await self.reader.readexactly(int(lower[i + 17 : j]))
        elif b"transfer-encoding: chunked" in lower:
            parts = []
            while True:
                size_line = await self.reader.readuntil(b"\r\n")
                size = int(size_line.split(b";", 1)[0].strip(), 16)
                chunk = await self.reader.readexactly(size + 2)
                if size == 0:
                    break
                parts.append(chunk[:-2])
            body = b"".join(parts)
        else:
            body = b""
        if b"\r\nconnection: close" in lower:
            self.close()
        return status, body


def _post(host: str, port: int, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    lines += ["Content-Type: application/json", f"Content-Length: {len(body)}", "", ""]
    return "\r\n".join(lines).encode() + body


async def http_once(host: str, port: int, raw: bytes, timeout: float) -> tuple[int, bytes]:
    """One request on a fresh connection, for probes."""
    conn = Conn(host, port)
    try:
        return await asyncio.wait_for(conn.request(raw), timeout)
    finally:
        conn.close()


# ---------------------------------------------------------------------- request makers
def paxline_request(
    host: str,
    port: int,
    p: dict[str, Any],
    client: int,
    seq: int,
) -> bytes:
    """A `CommitCheckpoint` for client `client`: partition `partitions[client]`, session
    `(client_prefix + client, seq)`, offset strictly increasing per client."""
    part = p["partitions"][client % len(p["partitions"])]
    body = json.dumps(
        {
            "worker_id": p["worker_id"],
            "epoch": p["epochs"][str(part)],
            "offsets": [{"topic": p["topic"], "partition": part, "offset": p["offset_base"] + seq}],
        },
        separators=(",", ":"),
    ).encode()
    headers = {
        "Authorization": f"Bearer {p['token']}",
        "Paxline-Client-Id": f"{p['client_prefix']}{client}",
        "Paxline-Seq": str(seq),
    }
    return _post(host, port, f"/v1/jobs/{p['job']}/checkpoints", body, headers)


def etcd_request(host: str, port: int, p: dict[str, Any], client: int, seq: int) -> bytes:
    key = f"{p['key_prefix']}{client}".encode()
    value = str(p["offset_base"] + seq).encode()
    body = json.dumps(
        {"key": base64.b64encode(key).decode(), "value": base64.b64encode(value).decode()},
        separators=(",", ":"),
    ).encode()
    return _post(host, port, "/v3/kv/put", body, {})


def is_success(kind: str, status: int, body: bytes) -> bool:
    if kind == "paxline":
        # The commit result is a tagged struct: {"result":"CheckpointCommitted",...}
        return status == 200 and b"CheckpointCommitted" in body
    return status == 200 and b'"header"' in body


def make_request(
    kind: str, host: str, port: int, p: dict[str, Any], client: int, seq: int
) -> bytes:
    if kind == "paxline":
        return paxline_request(host, port, p, client, seq)
    return etcd_request(host, port, p, client, seq)


# --------------------------------------------------------------------------- the load
@dataclass
class _Window:
    start: float
    end: float


async def _client(
    kind: str,
    host: str,
    port: int,
    params: dict[str, Any],
    index: int,
    window: _Window,
    stop_at: float,
    lat: list[float],
    errors: dict[str, int],
) -> None:
    conn = Conn(host, port)
    seq = 0
    try:
        while True:
            now = time.perf_counter()
            if now >= stop_at:
                return
            seq += 1
            raw = make_request(kind, host, port, params, index, seq)
            t0 = time.perf_counter()
            try:
                status, body = await conn.request(raw)
            except (OSError, asyncio.IncompleteReadError, HttpError) as exc:
                conn.close()
                key = type(exc).__name__
                errors[key] = errors.get(key, 0) + 1
                await asyncio.sleep(0.01)
                continue
            t1 = time.perf_counter()
            if not is_success(kind, status, body):
                key = f"HTTP {status}: {body[:120].decode(errors='replace')}"
                errors[key] = errors.get(key, 0) + 1
                continue
            if window.start <= t1 < window.end:
                lat.append(t1 - t0)
    finally:
        conn.close()


async def _load(spec: dict[str, Any]) -> dict[str, Any]:
    kind = spec["kind"]
    host, port = spec["host"], spec["port"]
    n = spec["clients"]
    begin = time.perf_counter()
    window = _Window(begin + spec["warmup"], begin + spec["warmup"] + spec["duration"])
    lat: list[float] = []
    errors: dict[str, int] = {}
    watch = {name: int(pid) for name, pid in spec.get("watch_pids", {}).items()}

    async def sample_cpu() -> dict[str, Any]:
        await asyncio.sleep(max(0.0, window.start - time.perf_counter()))
        c0, w0 = time.process_time(), {k: cpu_seconds(p) for k, p in watch.items()}
        m0 = machine_busy_seconds()
        await asyncio.sleep(max(0.0, window.end - time.perf_counter()))
        c1, w1 = time.process_time(), {k: cpu_seconds(p) for k, p in watch.items()}
        m1 = machine_busy_seconds()
        own = (c1 - c0) / spec["duration"]
        return {"loadgen_cpu": own, **cpu_window(w0, w1, m0, m1, own, spec["duration"])}

    cpu_task = asyncio.create_task(sample_cpu())
    await asyncio.gather(
        *(
            _client(kind, host, port, spec["params"], i, window, window.end, lat, errors)
            for i in range(n)
        )
    )
    cpu = await cpu_task
    dur = spec["duration"]
    lat.sort()
    return {
        "clients": n,
        "duration": dur,
        "ops": len(lat),
        "ops_per_s": len(lat) / dur,
        "p50_ms": percentile(lat, 0.50) * 1e3,
        "p99_ms": percentile(lat, 0.99) * 1e3,
        "max_ms": (lat[-1] if lat else float("nan")) * 1e3,
        "errors": errors,
        **cpu,
    }


def run_load(spec: dict[str, Any], out: Any) -> None:
    """multiprocessing target: run the load described by `spec`, send the figures to `out`."""
    try:
        out.send(asyncio.run(_load(spec)))
    except BaseException as exc:  # report, never hang the parent
        out.send({"exception": f"{type(exc).__name__}: {exc}"})
        raise


# --------------------------------------------------------------------- fail-over probe
async def _probe(
    kind: str,
    targets: list[tuple[str, int]],
    params: dict[str, Any],
    t0: float,
    every: float,
    attempt_timeout: float,
    deadline: float,
) -> tuple[float, int]:
    """Start one independent attempt every `every` seconds, round-robin over all `targets`
    (the dead node included, as a client that does not know who died would); return
    (seconds since `t0` at which the first attempt succeeded, attempts made)."""
    done: asyncio.Future[float] = asyncio.get_running_loop().create_future()
    tasks: list[asyncio.Task[None]] = []

    async def attempt(i: int) -> None:
        host, port = targets[i % len(targets)]
        raw = make_request(kind, host, port, params, i, 1)
        try:
            status, body = await http_once(host, port, raw, attempt_timeout)
        except (OSError, asyncio.IncompleteReadError, HttpError, TimeoutError):
            return
        if is_success(kind, status, body) and not done.done():
            done.set_result(time.monotonic() - t0)

    i = 0
    try:
        while not done.done():
            if time.monotonic() > deadline:
                raise TimeoutError("no commit succeeded before the probe deadline")
            tasks.append(asyncio.create_task(attempt(i)))
            i += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(done), every)
        return done.result(), i
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def probe_until_success(
    kind: str,
    targets: list[tuple[str, int]],
    params: dict[str, Any],
    t0: float,
    every: float = 0.02,
    attempt_timeout: float = 3.0,
    limit: float = 30.0,
) -> tuple[float, int]:
    """Blocking wrapper of the probe (see `_probe`). `params` must give each attempt a
    distinct session: attempt i is client i with seq 1."""
    return asyncio.run(
        _probe(kind, targets, params, t0, every, attempt_timeout, time.monotonic() + limit)
    )
