"""A tiny key-value `StateMachine` for the simulator: small enough to model exactly in the
linearizability checker, rich enough (put, append, cas, get) that lost, duplicated or reordered
writes all change what a later read returns."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["KVMachine", "kv_step", "read_query", "write_command"]


def write_command(op: str, key: str, arg: str, expect: str | None = None) -> bytes:
    return json.dumps({"op": op, "k": key, "v": arg, "e": expect}, separators=(",", ":")).encode()


def read_query(key: str) -> bytes:
    return key.encode()


def kv_step(value: str, op: str, arg: str, expect: str | None) -> tuple[str, str]:
    """Pure transition on one key's value: returns (new value, result). Shared by the machine
    and the checker so both agree on the semantics by construction."""
    if op == "put":
        return arg, "ok"
    if op == "append":
        new = value + arg
        return new, new
    if op == "cas":
        if value == (expect or ""):
            return arg, "true"
        return value, "false"
    return value, value  # get


class KVMachine:
    __slots__ = ("data",)

    def __init__(self) -> None:
        self.data: dict[str, str] = {}

    def apply(self, command: bytes) -> bytes:
        obj: dict[str, Any] = json.loads(command)
        key = str(obj["k"])
        new, result = kv_step(self.data.get(key, ""), str(obj["op"]), str(obj["v"]), obj["e"])
        self.data[key] = new
        return result.encode()

    def query(self, query: bytes) -> bytes:
        return self.data.get(query.decode(), "").encode()

    def snapshot(self) -> bytes:
        return json.dumps(self.data, sort_keys=True, separators=(",", ":")).encode()

    def restore(self, data: bytes) -> None:
        self.data = {str(k): str(v) for k, v in json.loads(data).items()}
