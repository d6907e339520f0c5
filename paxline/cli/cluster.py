"""`paxline cluster add-node / remove-node / replace-node`: change the coordinator membership
at runtime (chosen through Paxos, in effect alpha slots later; docs/architecture.md, 2,
"Reconfiguration"). Each command waits until the change is in effect on the leader and
prints one line; errors are one line too: exit 2 for bad input, 1 if the cluster refused or
did not answer."""

from __future__ import annotations

import os
import time
from typing import Any

import typer

__all__ = ["parse_member", "register"]

_WAIT = 60.0
_TIMEOUT = typer.Option(20.0, help="Seconds to get the change chosen before giving up.")


def parse_member(text: str) -> tuple[int, str]:
    """`ID=HOST:PORT` (the new node's peer listener) -> (id, "host:port")."""
    ident, sep, addr = text.partition("=")
    host, colon, port = addr.rpartition(":")
    if not sep or not ident.isdigit() or int(ident) < 1:
        raise ValueError(f"expected ID=HOST:PORT with ID >= 1, got {text!r}")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected ID=HOST:PORT (the node's peer address), got {text!r}")
    return int(ident), addr


def _node_id(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"expected a node id (a positive integer), got {text!r}")
    return int(text)


def _fail(message: str, code: int) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


# The same options as `paxline cluster status` (paxline/cli/main.py), which imports this
# module: defined here, not imported from there, so that no import cycle forms.
_ENDPOINTS = typer.Option(
    "http://127.0.0.1:8701,http://127.0.0.1:8702,http://127.0.0.1:8703",
    "--coordinators",
    envvar="PAXLINE_COORDINATORS",
    help="Comma-separated coordinator API URLs.",
)
_TLS_CA = typer.Option(
    "",
    "--tls-ca",
    envvar="PAXLINE_TLS_CA",
    help="CA file to verify HTTPS coordinators with (default: the system's trust store).",
)


def register(cluster_app: typer.Typer) -> None:
    def run_change(
        coordinators: str, tls_ca: str, timeout: float, change: str, call: Any,
        expect: set[int], gone: set[int],
    ) -> None:  # fmt: skip
        from coordinator.client import (
            CoordinatorClient,
            CoordinatorUnavailable,
            RequestRejected,
        )

        endpoints = [e.strip().rstrip("/") for e in coordinators.split(",") if e.strip()]
        if not endpoints:
            raise _fail("--coordinators is empty", 2)
        token = os.environ.get("PAXLINE_API_TOKEN", "")
        if not token:
            raise _fail("PAXLINE_API_TOKEN must be set (membership changes are mutations)", 2)
        with CoordinatorClient(
            endpoints, token=token, ca=tls_ca or None, timeout=timeout
        ) as client:
            try:
                answer = call(client)
            except RequestRejected as exc:
                code = 2 if exc.status in (400, 401) else 1
                raise _fail(f"{change} refused: {exc.body.get('error', exc.body)}", code) from None
            except CoordinatorUnavailable as exc:
                raise _fail(f"{change} not confirmed: {exc}", 1) from None
            eff = answer.get("effective_slot")
            if answer.get("detail") != "chosen":  # idempotent: already so, nothing changed
                typer.echo(f"{change}: {answer.get('detail')}; members "
                           f"{','.join(map(str, answer.get('members') or ()))}")  # fmt: skip
                return
            deadline = time.monotonic() + _WAIT
            while True:
                # In effect once some node that has applied the effective slot (the leader
                # first) shows the new members and nothing pending.
                for endpoint in endpoints:
                    try:
                        view = client.node_status(endpoint, timeout=2.0)
                    except Exception:
                        continue
                    m = view.get("membership") or {}
                    members = set(m.get("members") or ())
                    applied = int(view.get("applied_index") or 0)
                    if (
                        expect <= members
                        and not gone & members
                        and (eff is None or applied + 1 >= int(eff))
                    ):
                        typer.echo(
                            f"{change}: in effect at slot {eff or applied}; members "
                            f"{','.join(map(str, sorted(members)))}"
                        )
                        return
                if time.monotonic() > deadline:
                    raise _fail(
                        f"{change} was chosen (effective at slot {eff}) but no node shows it "
                        f"in effect after {_WAIT:.0f} s; check `paxline cluster status`",
                        1,
                    )
                time.sleep(0.1)  # polling the nodes' views, not synchronisation

    @cluster_app.command("add-node")
    def add_node(
        member: str = typer.Argument(..., help="ID=HOST:PORT: the new node's id and peer address."),
        api: str = typer.Option("", help="The new node's API URL (optional)."),
        coordinators: str = _ENDPOINTS,
        tls_ca: str = _TLS_CA,
        timeout: float = _TIMEOUT,
    ) -> None:
        """Add a coordinator node (start it first with `coordinator run --join`). Waits until
        the change is in effect. Add a node only while every member runs."""
        try:
            node_id, peer = parse_member(member)
        except ValueError as exc:
            raise _fail(str(exc), 2) from None
        run_change(coordinators, tls_ca, timeout, f"add node {node_id}",
                   lambda c: c.add_member(node_id, peer, api or None),
                   {node_id}, set())  # fmt: skip

    @cluster_app.command("remove-node")
    def remove_node(
        node: str = typer.Argument(..., help="The id of the member to remove."),
        coordinators: str = _ENDPOINTS,
        tls_ca: str = _TLS_CA,
        timeout: float = _TIMEOUT,
    ) -> None:
        """Remove a coordinator node. Waits until the change is in effect; stop the node
        only after that."""
        try:
            node_id = _node_id(node)
        except ValueError as exc:
            raise _fail(str(exc), 2) from None
        run_change(coordinators, tls_ca, timeout, f"remove node {node_id}",
                   lambda c: c.remove_member(node_id), set(), {node_id})  # fmt: skip

    @cluster_app.command("replace-node")
    def replace_node(
        old: str = typer.Argument(..., help="The id of the member to replace (a dead node)."),
        new: str = typer.Argument(..., help="NEW_ID=HOST:PORT of the replacement."),
        api: str = typer.Option("", help="The new node's API URL (optional)."),
        coordinators: str = _ENDPOINTS,
        tls_ca: str = _TLS_CA,
        timeout: float = _TIMEOUT,
    ) -> None:
        """Swap member OLD for a new node (a new id, e.g. on an empty disk, started with
        `coordinator run --join`) in one change, keeping the cluster's size."""
        try:
            old_id = _node_id(old)
            new_id, peer = parse_member(new)
        except ValueError as exc:
            raise _fail(str(exc), 2) from None
        if old_id == new_id:
            raise _fail("the replacement needs a new id (ids are never reused)", 2)
        run_change(coordinators, tls_ca, timeout, f"replace node {old_id} by {new_id}",
                   lambda c: c.add_member(new_id, peer, api or None, replace=old_id),
                   {new_id}, {old_id})  # fmt: skip
