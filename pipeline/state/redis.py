"""Redis state store: one hash per partition, the applied offset beside it, and the job's
materialised view, all updated by one Lua script so a crash never leaves half a batch.

Keys (`{job}` in braces keeps one job's keys in one Redis Cluster slot):
- `paxline:{job}:state:{topic}:{partition}`    hash of partition-local state
- `paxline:{job}:applied:{topic}:{partition}`  next offset not yet applied
- `paxline:{job}:view:{view}`                  hash: the materialised view users read
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import redis

from pipeline.state.base import StateKey

__all__ = ["RedisStore", "view_key"]

# KEYS: state hash, applied key, view hash.
# ARGV: end_offset, n_state_sets, n_state_dels, n_view_sets, n_view_dels, then the items.
_APPLY = """
local applied = tonumber(redis.call('GET', KEYS[2]) or '-1')
local end_offset = tonumber(ARGV[1])
if end_offset <= applied then
  return 0
end
local i = 6
local n = tonumber(ARGV[2])
for _ = 1, n do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]); i = i + 2
end
n = tonumber(ARGV[3])
for _ = 1, n do
  redis.call('HDEL', KEYS[1], ARGV[i]); i = i + 1
end
n = tonumber(ARGV[4])
for _ = 1, n do
  redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1]); i = i + 2
end
n = tonumber(ARGV[5])
for _ = 1, n do
  redis.call('HDEL', KEYS[3], ARGV[i]); i = i + 1
end
redis.call('SET', KEYS[2], end_offset)
return 1
"""


def view_key(job: str, view: str) -> str:
    return f"paxline:{{{job}}}:view:{view}"


class RedisStore:
    def __init__(self, client: redis.Redis, key: StateKey, view: str = "") -> None:
        self.client = client
        self.key = key
        prefix = f"paxline:{{{key.job}}}"
        self._state = f"{prefix}:state:{key.topic}:{key.partition}"
        self._applied = f"{prefix}:applied:{key.topic}:{key.partition}"
        self._view = view_key(key.job, view or "_")
        self._script = client.register_script(_APPLY)

    def get_many(self, keys: list[str]) -> dict[str, bytes | None]:
        if not keys:
            return {}
        values: list[Any] = self.client.hmget(self._state, keys)
        return dict(zip(keys, values, strict=True))

    def applied_offset(self) -> int | None:
        raw = self.client.get(self._applied)
        return None if raw is None else int(raw)

    def apply(
        self,
        writes: Mapping[str, bytes | None],
        view_writes: Mapping[str, bytes | None],
        end_offset: int,
    ) -> bool:
        sets = [(k, v) for k, v in writes.items() if v is not None]
        dels = [k for k, v in writes.items() if v is None]
        vsets = [(k, v) for k, v in view_writes.items() if v is not None]
        vdels = [k for k, v in view_writes.items() if v is None]
        args: list[Any] = [end_offset, len(sets), len(dels), len(vsets), len(vdels)]
        for k, v in sets:
            args += (k, v)
        args += dels
        for k, v in vsets:
            args += (k, v)
        args += vdels
        done = self._script(keys=[self._state, self._applied, self._view], args=args)
        return bool(done)
