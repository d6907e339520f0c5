"""Python client of the coordinator API, used by workers and the CLI.

It hides leader changes: any node accepts a request (followers forward to the leader, and
name it in a `Paxline-Leader` header: the client then goes to the leader directly), and
when a node is down or no leader is elected yet the client moves on to the next node until
its deadline. Mutations carry a stable session `(client_id, seq)`: a retry after a timeout
re-sends the same seq, so the cluster applies the command at most once and answers the retry
with the first result (a retry that reaches the leader while the first attempt is still
pending waits on that same proposal).

One session allows one outstanding mutation, so concurrent callers of one client (a worker's
main loop committing checkpoints while its takeover threads commit theirs) each borrow a
session of their own from a small pool instead of queueing behind one lock: a caller never
waits out another caller's deadline, e.g. a checkpoint commit retrying for 10 s while no
coordinator leader exists (issue 13: lag 0 came 11 s after a 5 s quorum loss). Each attempt
is short at first (`attempt_timeout`, doubling per round up to `request_timeout`), so a node
that accepts connections but does not answer (partitioned, frozen, busy restarting) costs
about a second before the next node is tried, and a call returns soon after a leader
exists again. A retry is safe whenever it happens: it carries the same seq.

Over HTTPS (coordinators started with `--tls-cert/--tls-key/--tls-ca`) the client verifies
each node's certificate against `ca`, the CA file that signed them (the system's trust store
when none is given), and its name against the endpoint's host. A node it cannot verify is not
retried as if it were down: once every endpoint has failed verification the client raises
`CoordinatorTLSError` at once, naming the reason, because waiting will not fix a CA.
"""

from __future__ import annotations

import contextlib
import ssl
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import msgspec

from coordinator._httpx import httpx
from coordinator.commands import CheckpointBatchApplied, CheckpointGroup, Result
from coordinator.errors import CoordinatorError
from coordinator.protocol import (
    HeartbeatReply,
    JobInfo,
    PartitionOffsets,
    Progress,
    WorkerInfo,
)

__all__ = [
    "CoordinatorClient",
    "CoordinatorTLSError",
    "CoordinatorUnavailable",
    "RequestRejected",
    "ssl_reason",
    "verify_context",
]

_RETRYABLE_STATUS = {502, 503, 504}


class CoordinatorUnavailable(CoordinatorError):
    """No node answered successfully before the deadline."""


class CoordinatorTLSError(CoordinatorUnavailable):
    """No coordinator's certificate could be verified (or the CA file cannot be used).

    A kind of `CoordinatorUnavailable`, so that callers that stall and retry while the
    coordinators are unreachable (the worker's heartbeat) do the same here and recover when
    the certificates are fixed; the CLI turns it into one line and exit 2."""


class RequestRejected(CoordinatorError):
    """The cluster answered with a 4xx: the request is wrong, or a command's result is an
    error value (fenced, unknown job, ...). `body` holds the JSON answer."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        self.status = status
        self.body = body
        self.result = str(body.get("result", ""))
        self.field = body.get("field")
        super().__init__(f"HTTP {status}: {body.get('error', body)}")


class _Session:
    """A `(client_id, seq)` session: at most one mutation outstanding on it at a time."""

    __slots__ = ("client_id", "seq")

    def __init__(self, client_id: str) -> None:
        self.client_id = client_id
        self.seq = 0


class CoordinatorClient:
    def __init__(
        self,
        endpoints: list[str],
        token: str | None = None,
        timeout: float = 10.0,
        client_id: str | None = None,
        request_timeout: float = 3.0,
        ca: str | Path | None = None,
        attempt_timeout: float = 1.0,
    ) -> None:
        """`timeout`: a call's whole budget; `request_timeout`: the longest single attempt,
        reached by doubling from `attempt_timeout` after each round over every node in which
        an attempt timed out. `ca`: the CA file to verify HTTPS coordinators with
        (`PAXLINE_TLS_CA`)."""
        if not endpoints:
            raise ValueError("at least one coordinator endpoint is required")
        self.endpoints = [e.rstrip("/") for e in endpoints]
        self.token = token
        self.timeout = timeout
        self.client_id = client_id or f"client-{uuid.uuid4().hex}"
        # Free sessions; the first keeps `client_id` itself, later ones (made only when
        # callers overlap) add a suffix. The cluster keeps one small entry per session id.
        self._free = [_Session(self.client_id)]
        self._sessions_made = 1
        self._pool_lock = threading.Lock()
        self._preferred = 0
        self._request_timeout = request_timeout
        self._attempt_timeout = min(attempt_timeout, request_timeout)
        self.ca = str(ca) if ca else None
        self._http = httpx.Client(timeout=request_timeout, verify=verify_context(self.ca))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> CoordinatorClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------------- transport
    def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        mutation: bool = False,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        if not mutation:
            return self._attempts(method, path, body, None, timeout)
        session = self._borrow()
        try:
            session.seq += 1
            return self._attempts(method, path, body, session, timeout)
        finally:
            with self._pool_lock:
                self._free.append(session)

    def _borrow(self) -> _Session:
        with self._pool_lock:
            if self._free:
                return self._free.pop()
            self._sessions_made += 1
            return _Session(f"{self.client_id}-{self._sessions_made}")

    def _attempts(
        self, method: str, path: str, body: Any, session: _Session | None, timeout: float | None
    ) -> dict[str, Any]:
        deadline = time.monotonic() + (timeout or self.timeout)
        headers: dict[str, str] = {}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if session is not None:
            headers["Paxline-Client-Id"] = session.client_id
            headers["Paxline-Seq"] = str(session.seq)
        last_error = "no attempt made"
        attempt = 0
        unverified: set[str] = set()
        attempt_timeout = self._attempt_timeout
        timed_out = False  # in this round over the nodes
        while True:
            endpoint = self.endpoints[(self._preferred + attempt) % len(self.endpoints)]
            # No attempt outlives the deadline: a caller's budget (the CLI's --timeout) holds
            # even when a node accepts connections but never answers.
            left = max(0.05, deadline - time.monotonic())
            try:
                resp = self._http.request(
                    method, endpoint + path, json=body, headers=headers,
                    timeout=min(attempt_timeout, left),
                )  # fmt: skip
            except httpx.HTTPError as exc:
                timed_out |= isinstance(exc, httpx.TimeoutException)
                last_error = f"{endpoint}: {self._describe(endpoint, exc)}"
                if _verify_failure(exc) is not None:
                    unverified.add(endpoint)
                    if unverified == set(self.endpoints):
                        raise CoordinatorTLSError(last_error + self._ca_hint()) from None
            else:
                if resp.status_code not in _RETRYABLE_STATUS:
                    self._preferred = (self._preferred + attempt) % len(self.endpoints)
                    self._follow_leader(resp)
                    data = _json_or_text(resp)
                    if resp.status_code >= 400:
                        raise RequestRejected(resp.status_code, data)
                    return data if isinstance(data, dict) else {"value": data}
                last_error = f"{endpoint}: HTTP {resp.status_code} {resp.text[:200]}"
            attempt += 1
            if time.monotonic() >= deadline:
                raise CoordinatorUnavailable(
                    f"{method} {path} failed on every coordinator until the deadline "
                    f"({timeout or self.timeout:.1f}s); last error: {last_error}"
                )
            if attempt % len(self.endpoints) == 0:  # back off after a full round
                if timed_out:  # maybe slow rather than gone: allow longer attempts
                    attempt_timeout = min(attempt_timeout * 2, self._request_timeout)
                    timed_out = False
                time.sleep(max(0.0, min(0.05 * attempt, 0.25, deadline - time.monotonic())))

    @property
    def preferred_endpoint(self) -> str:
        """The node the next call tries first: the last one that answered, or the leader it
        named when it forwarded the call."""
        return self.endpoints[self._preferred]

    def _follow_leader(self, resp: httpx.Response) -> None:
        """A follower that forwarded the call names the leader (`Paxline-Leader`); go to it
        directly next time if it is one of our endpoints (same URL), so that each call is
        one HTTP exchange instead of two."""
        leader = resp.headers.get("paxline-leader")
        if leader:
            with contextlib.suppress(ValueError):
                self._preferred = self.endpoints.index(leader.rstrip("/"))

    # ------------------------------------------------------------------------- commands
    # Every answer is decoded into the structs of `coordinator.protocol` (reads) or
    # `coordinator.commands` (results of mutations), so callers never index into JSON.
    def submit_job(self, spec: Mapping[str, Any]) -> Result:
        return _result(self._call("POST", "/v1/jobs", dict(spec), mutation=True))

    def cancel_job(self, name: str) -> Result:
        return _result(self._call("DELETE", f"/v1/jobs/{name}", mutation=True))

    def pause_job(self, name: str) -> Result:
        return _result(self._call("POST", f"/v1/jobs/{name}/pause", mutation=True))

    def resume_job(self, name: str) -> Result:
        return _result(self._call("POST", f"/v1/jobs/{name}/resume", mutation=True))

    def reset_offsets(self, job: str, offsets: Mapping[tuple[str, int], int]) -> Result:
        body = {"offsets": _offset_list(offsets)}
        return _result(self._call("POST", f"/v1/jobs/{job}/offsets:reset", body, mutation=True))

    def commit_checkpoint(
        self, job: str, worker_id: str, epoch: int, offsets: Mapping[tuple[str, int], int]
    ) -> Result:
        body = {"worker_id": worker_id, "epoch": epoch, "offsets": _offset_list(offsets)}
        return _result(self._call("POST", f"/v1/jobs/{job}/checkpoints", body, mutation=True))

    def commit_checkpoint_batch(
        self, worker_id: str, groups: Sequence[CheckpointGroup]
    ) -> CheckpointBatchApplied:
        """All of a worker's (job, epoch) groups in one request and one Paxos command, each
        group committed or fenced on its own (`results[i]` is group i's outcome). A retry is
        as safe as for a single commit: the same session seq, applied at most once. Raises
        `RequestRejected` only for a malformed batch (400, nothing applied)."""
        body = {
            "groups": [
                {"job": g.job, "epoch": g.epoch, "offsets": _offset_list(g.offsets)} for g in groups
            ]
        }
        path = f"/v1/workers/{worker_id}/checkpoints"
        result = _result(self._call("POST", path, body, mutation=True))
        if not isinstance(result, CheckpointBatchApplied):
            raise RequestRejected(200, {"error": f"unexpected answer {result!r}"})
        return result

    def heartbeat(
        self, worker_id: str, capacity: int = 1024, progress: list[Progress] | None = None
    ) -> HeartbeatReply:
        """Keep the session alive and fetch the assignment; `progress` lets the coordinators
        show lag."""
        body: dict[str, Any] = {"capacity": capacity}
        if progress:
            body["progress"] = msgspec.to_builtins(progress)
        reply = self._call("POST", f"/v1/workers/{worker_id}/heartbeat", body, mutation=True)
        return msgspec.convert(reply, HeartbeatReply)

    def deregister(self, worker_id: str) -> Result:
        return _result(self._call("DELETE", f"/v1/workers/{worker_id}", mutation=True))

    def add_member(
        self, node_id: int, peer: str, api: str | None = None, replace: int | None = None
    ) -> dict[str, Any]:
        """Add coordinator `node_id` (peer listener `peer`, HOST:PORT), or swap member
        `replace` for it. Answers once chosen: `effective_slot`, `in_effect`, `members`."""
        body: dict[str, Any] = {"id": node_id, "peer": peer}
        if api is not None:
            body["api"] = api
        if replace is not None:
            body["replace"] = replace
        return self._call("POST", "/v1/cluster/members", body, mutation=True)

    def remove_member(self, node_id: int) -> dict[str, Any]:
        return self._call("DELETE", f"/v1/cluster/members/{node_id}", mutation=True)

    # ---------------------------------------------------------------------------- reads
    def jobs(self) -> list[JobInfo]:
        return msgspec.convert(self._call("GET", "/v1/jobs")["jobs"], list[JobInfo])

    def job(self, name: str) -> JobInfo:
        return msgspec.convert(self._call("GET", f"/v1/jobs/{name}"), JobInfo)

    def offsets(self, job: str) -> list[PartitionOffsets]:
        parts = self._call("GET", f"/v1/jobs/{job}/offsets")["partitions"]
        return msgspec.convert(parts, list[PartitionOffsets])

    def workers(self) -> list[WorkerInfo]:
        return msgspec.convert(self._call("GET", "/v1/workers")["workers"], list[WorkerInfo])

    def node_status(self, endpoint: str, timeout: float = 2.0) -> dict[str, Any]:
        """One node's own view (not forwarded), for `paxline cluster status`: free-form, it
        grows with what a node can tell about itself."""
        try:
            resp = self._http.get(endpoint.rstrip("/") + "/v1/cluster", timeout=timeout)
        except httpx.HTTPError as exc:
            if _verify_failure(exc) is not None:
                raise CoordinatorTLSError(
                    f"{endpoint}: {self._describe(endpoint, exc)}{self._ca_hint()}"
                ) from None
            raise
        resp.raise_for_status()
        data = resp.json()
        return data if isinstance(data, dict) else {}

    def _describe(self, endpoint: str, exc: httpx.HTTPError) -> str:
        reason = _tls_failure(exc)
        if reason is not None:
            return reason
        if isinstance(exc, httpx.RemoteProtocolError) and endpoint.startswith("http://"):
            # What a plain-HTTP client sees from a node that serves HTTPS.
            return f"{type(exc).__name__} (does the node serve HTTPS? use https:// URLs)"
        return type(exc).__name__

    def _ca_hint(self) -> str:
        where = f"CA file {self.ca}" if self.ca else "the system's trust store (no CA file given)"
        return f"; checked against {where}: set PAXLINE_TLS_CA to the CA that signed them"


def verify_context(ca: str | None) -> ssl.SSLContext | bool:
    """What httpx verifies servers with: the CA file when given, else its default (the
    system's trust store). A CA file that cannot be used is a `CoordinatorTLSError` here,
    at construction, rather than a failed request later."""
    if not ca:
        return True
    try:
        return ssl.create_default_context(cafile=ca)
    except FileNotFoundError:
        raise CoordinatorTLSError(f"CA file {ca}: no such file") from None
    except OSError as exc:  # ssl.SSLError is one: no certificate in the file
        reason = ssl_reason(exc) if isinstance(exc, ssl.SSLError) else exc.strerror
        raise CoordinatorTLSError(f"CA file {ca}: cannot use it ({reason})") from None


def ssl_reason(exc: BaseException) -> str:
    """OpenSSL's reason without the `[SSL: X] ... (_ssl.c:1234)` wrapping, for one-line
    errors and log lines: "certificate verify failed: self-signed certificate in
    certificate chain", "wrong version number"."""
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        return f"certificate verify failed: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason).lower().replace("_", " ")
    return str(exc) or type(exc).__name__


def _causes(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in seen:
        seen.append(cur)
        cur = cur.__cause__ or cur.__context__
    return seen


def _verify_failure(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate verification error under httpx's wrapping, if that is what failed."""
    for e in _causes(exc):
        if isinstance(e, ssl.SSLCertVerificationError):
            return e
    return None


def _tls_failure(exc: BaseException) -> str | None:
    """A one-line reason when a request failed in its TLS handshake."""
    for e in _causes(exc):
        if isinstance(e, ssl.SSLError):
            return ssl_reason(e)
    return None


def _json_or_text(resp: httpx.Response) -> Any:
    """The JSON answer; a body that is not JSON (a 404 from a coordinator too old to have
    the route, a proxy's error page) becomes `{"error": <text>}` rather than an exception
    the caller would not expect."""
    if not resp.content:
        return {}
    try:
        return resp.json()
    except ValueError:
        return {"error": resp.text[:200]}


def _result(body: dict[str, Any]) -> Result:
    """A command's result from its JSON answer (the `type` tag selects the struct)."""
    return cast(Result, msgspec.convert(body, Result))


def _offset_list(offsets: Mapping[tuple[str, int], int]) -> list[dict[str, Any]]:
    return [{"topic": t, "partition": p, "offset": o} for (t, p), o in sorted(offsets.items())]
