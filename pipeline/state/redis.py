"""Redis state store: one hash per partition, the applied offset beside it, and the job's
materialised view, all updated by one Lua script so a crash never leaves half a batch.

Keys, single Redis and Sentinel (`{job}`: the hash tag, one slot per job):
- `paxline:{job}:state:{topic}:{partition}`    hash of partition-local state
- `paxline:{job}:applied:{topic}:{partition}`  next offset not yet applied
- `paxline:{job}:view:{view}`                  hash: the materialised view users read
Redis Cluster (`redis+cluster://`): the tag is `{job:topic:partition}` instead, so that
partitions spread over the shards while each script still touches one slot; the view is then
one hash per partition, `paxline:{job:topic:partition}:view:{view}`, and readers merge them
(`RedisStores.read_view`). docs/architecture.md, sec. 4, "Redis deployments".
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.commands.core import Script
from redis.retry import Retry
from redis.sentinel import Sentinel

from pipeline.errors import StateUnavailable
from pipeline.state.base import StateKey
from pipeline.state.url import RedisTarget, parse_redis_url

__all__ = ["EpochRedisStore", "RedisStore", "RedisStores", "ReplicasBehind", "StaleEpoch",
           "StateWiped", "view_key"]  # fmt: skip

# A stopped or paused Redis must turn into an error the worker can stall on, not a call that
# blocks forever (a SIGSTOPped server keeps its TCP connections open). A batch script takes
# milliseconds, so 5 s is generous; connecting is quick or impossible.
SOCKET_TIMEOUT = 5.0
CONNECT_TIMEOUT = 2.0
# Replies that mean "not now" rather than "wrong": a replica, a server loading its AOF, a
# master without replicas, a failed background save, a busy script, a moving cluster slot.
_TRANSIENT_REPLIES = ("READONLY", "LOADING", "MASTERDOWN", "MISCONF", "BUSY", "TRYAGAIN",
                      "CLUSTERDOWN", "NOREPLICAS")  # fmt: skip


@contextlib.contextmanager
def _unavailable() -> Iterator[None]:
    """Translate Redis' transient failures into `StateUnavailable` (the worker stalls the
    partition and takes it over again); any other Redis error is a bug and propagates."""
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise StateUnavailable(f"Redis unreachable: {exc}") from exc
    except redis.exceptions.ClusterError as exc:  # no reachable node or slot owner
        raise StateUnavailable(f"Redis Cluster not serving: {exc}") from exc
    except (
        redis.exceptions.AskError,  # and MovedError: a slot moved (failover, resharding);
        redis.exceptions.TryAgainError,  # redis-py strips the reply's first word, so these
        redis.exceptions.SlotNotCoveredError,  # never match _TRANSIENT_REPLIES by text
    ) as exc:
        raise StateUnavailable(f"Redis Cluster slot moving: {type(exc).__name__} {exc}") from exc
    except redis.ResponseError as exc:
        if str(exc).split(" ", 1)[0].upper() in _TRANSIENT_REPLIES:
            raise StateUnavailable(f"Redis not serving: {exc}") from exc
        raise


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


def _pack(writes: Mapping[str, bytes | None], view_writes: Mapping[str, bytes | None]) -> list[Any]:
    """Script arguments: the four counts (state sets, state deletes, view sets, view deletes),
    then the items in that order."""
    sets = [(k, v) for k, v in writes.items() if v is not None]
    dels = [k for k, v in writes.items() if v is None]
    vsets = [(k, v) for k, v in view_writes.items() if v is not None]
    vdels = [k for k, v in view_writes.items() if v is None]
    args: list[Any] = [len(sets), len(dels), len(vsets), len(vdels)]
    for k, v in sets:
        args += (k, v)
    args += dels
    for k, v in vsets:
        args += (k, v)
    args += vdels
    return args


# The one client type stores take: a Redis (single or Sentinel-managed) or a cluster client.
Client = redis.Redis | RedisCluster


def view_key(job: str, view: str) -> str:
    return f"paxline:{{{job}}}:view:{view}"


def key_prefix(key: StateKey, per_partition: bool) -> str:
    """The hash-tagged prefix of a partition's keys: `{job}` (single Redis, Sentinel) or
    `{job:topic:partition}` (Redis Cluster: one slot per partition)."""
    if per_partition:
        return f"paxline:{{{key.job}:{key.topic}:{key.partition}}}"
    return f"paxline:{{{key.job}}}"


class ReplicasBehind(StateUnavailable):
    """`WAIT` came back with fewer replica acknowledgements than configured: the write is on
    the primary but a failover now could lose it. Transient: the batch is not counted as
    applied (exactly-once rolls it back on the takeover that follows; at-least-once redoes
    it), the partition stalls until the replicas catch up (docs/architecture.md, sec. 4)."""

    reason = "Redis replicas behind"


class RedisStore:
    def __init__(
        self,
        client: Client,
        key: StateKey,
        view: str = "",
        wait: tuple[int, int] = (0, 0),
        per_partition: bool = False,
    ) -> None:
        """`wait`: (replicas, timeout ms) every write script must be acknowledged by before
        it counts; (0, _) does not wait. `per_partition`: Redis Cluster key layout."""
        self.client = client
        self.key = key
        self._wait_replicas, self._wait_ms = wait
        self._prefix = prefix = key_prefix(key, per_partition)
        self._state = f"{prefix}:state:{key.topic}:{key.partition}"
        self._applied = f"{prefix}:applied:{key.topic}:{key.partition}"
        self._view = f"{prefix}:view:{view or '_'}"
        self._script = client.register_script(_APPLY)

    def _write(self, script: Script, keys: list[str], args: list[Any]) -> Any:
        """Run a write script; with replica acknowledgement configured, the script and a
        `WAIT` go in one pipeline, because WAIT only waits for the writes of its own
        connection (a pool could hand each command another one)."""
        with _unavailable():
            if self._wait_replicas <= 0:
                return script(keys=keys, args=args)
            pipe = self.client.pipeline(transaction=False)
            script(keys=keys, args=args, client=pipe)
            pipe.wait(self._wait_replicas, self._wait_ms)
            result, acked = pipe.execute()
        if int(acked) < self._wait_replicas:
            raise ReplicasBehind(
                f"{acked} of {self._wait_replicas} replicas acknowledged within {self._wait_ms} ms"
            )
        return result

    def get_many(self, keys: list[str]) -> dict[str, bytes | None]:
        if not keys:
            return {}
        with _unavailable():
            values: list[Any] = self.client.hmget(self._state, keys)
        return dict(zip(keys, values, strict=True))

    def applied_offset(self) -> int | None:
        with _unavailable():
            raw = self.client.get(self._applied)
        return None if raw is None else int(raw)

    def apply(
        self,
        writes: Mapping[str, bytes | None],
        view_writes: Mapping[str, bytes | None],
        end_offset: int,
    ) -> bool:
        args = [end_offset, *_pack(writes, view_writes)]
        done = self._write(self._script, [self._state, self._applied, self._view], args)
        return bool(done)


# ------------------------------------------------------------------------ exactly-once
# The epoch key fences writers: only the current owner's epoch may write. The undo hash holds,
# for the last applied batch only, the previous value of every key it touched ("1" + value, or
# "0" for a key that did not exist) and the previous applied offset, so that a batch whose
# Kafka transaction never committed can be rolled back on takeover.
#
# The takeover key counts takeovers. A worker takes a partition over again at the SAME epoch
# after a transient fault (docs/architecture.md, sec. 6), and a script it sent before the
# fault may still be queued in Redis (a paused server, a lost reply): without the count, that
# late script would pass the epoch check and apply a batch after the new takeover has
# reconciled. With it, every script of an earlier takeover is refused ('fenced').
# KEYS: epoch, takeover count. ARGV: epoch. Returns the new takeover count.
_TAKEOVER = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local epoch = tonumber(ARGV[1])
if epoch < current then
  return {'fenced', current}
end
redis.call('SET', KEYS[1], epoch)
return {'ok', redis.call('INCR', KEYS[2])}
"""

# KEYS: state, applied, view, epoch, undo, takeover count.
# ARGV: epoch, takeover, end, n_sets, n_dels, n_vsets, n_vdels, items
_APPLY_EOS = """
local raw = redis.call('GET', KEYS[4])
if not raw then
  return {'lost', 0}
end
local current = tonumber(raw)
if current ~= tonumber(ARGV[1]) or redis.call('GET', KEYS[6]) ~= ARGV[2] then
  return {'fenced', current}
end
local prev = redis.call('GET', KEYS[2])
local end_offset = tonumber(ARGV[3])
if prev and end_offset <= tonumber(prev) then
  return {'replay', tonumber(prev)}
end
redis.call('DEL', KEYS[5])
redis.call('HSET', KEYS[5], '\\0applied', prev or '')
local function remember(hash, tag, key)
  local old = redis.call('HGET', hash, key)
  if old then
    redis.call('HSETNX', KEYS[5], tag .. key, '1' .. old)
  else
    redis.call('HSETNX', KEYS[5], tag .. key, '0')
  end
end
local i = 8
for _ = 1, tonumber(ARGV[4]) do
  remember(KEYS[1], 's:', ARGV[i]); redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]); i = i + 2
end
for _ = 1, tonumber(ARGV[5]) do
  remember(KEYS[1], 's:', ARGV[i]); redis.call('HDEL', KEYS[1], ARGV[i]); i = i + 1
end
for _ = 1, tonumber(ARGV[6]) do
  remember(KEYS[3], 'v:', ARGV[i]); redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1]); i = i + 2
end
for _ = 1, tonumber(ARGV[7]) do
  remember(KEYS[3], 'v:', ARGV[i]); redis.call('HDEL', KEYS[3], ARGV[i]); i = i + 1
end
redis.call('SET', KEYS[2], end_offset)
return {'ok', end_offset}
"""

# KEYS: state, applied, view, epoch, undo, takeover count. ARGV: epoch, takeover
_ROLLBACK = """
local current = tonumber(redis.call('GET', KEYS[4]) or '0')
if current ~= tonumber(ARGV[1]) or redis.call('GET', KEYS[6]) ~= ARGV[2] then
  return {'fenced', current}
end
if redis.call('EXISTS', KEYS[5]) == 0 then
  return {'none', 0}
end
local entries = redis.call('HGETALL', KEYS[5])
for j = 1, #entries, 2 do
  local field, old = entries[j], entries[j + 1]
  if field == '\\0applied' then
    if old == '' then redis.call('DEL', KEYS[2]) else redis.call('SET', KEYS[2], old) end
  else
    local hash = KEYS[1]
    if string.sub(field, 1, 2) == 'v:' then hash = KEYS[3] end
    local key = string.sub(field, 3)
    if string.sub(old, 1, 1) == '1' then
      redis.call('HSET', hash, key, string.sub(old, 2))
    else
      redis.call('HDEL', hash, key)
    end
  end
end
redis.call('DEL', KEYS[5])
return {'ok', 0}
"""


# A restore from the changelog (pipeline.restore), in chunks. KEYS: state, applied, view, epoch,
# undo, takeover count. ARGV: epoch, takeover, clear (1: first chunk), applied ('' : not the
# last chunk), n_sets, n_dels, n_vsets, n_vdels, items. The first chunk clears the
# partition's state, applied offset and undo images; only the last sets the applied offset,
# so a restore cut short leaves Redis behind Kafka and the next takeover restores again.
_RESTORE = """
local current = tonumber(redis.call('GET', KEYS[4]) or '0')
if current ~= tonumber(ARGV[1]) or redis.call('GET', KEYS[6]) ~= ARGV[2] then
  return {'fenced', current}
end
if ARGV[3] == '1' then
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[5])
end
local i = 9
for _ = 1, tonumber(ARGV[5]) do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]); i = i + 2
end
for _ = 1, tonumber(ARGV[6]) do
  redis.call('HDEL', KEYS[1], ARGV[i]); i = i + 1
end
for _ = 1, tonumber(ARGV[7]) do
  redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1]); i = i + 2
end
for _ = 1, tonumber(ARGV[8]) do
  redis.call('HDEL', KEYS[3], ARGV[i]); i = i + 1
end
if ARGV[4] ~= '' then
  redis.call('SET', KEYS[2], ARGV[4])
end
return {'ok', 0}
"""

RESTORE_CHUNK = 5000  # keys per script call: a restore never blocks Redis for long


class StateWiped(StateUnavailable):
    """Redis lost the partition's keys (its epoch is gone: FLUSHALL, a restart without data
    files, a failover to an empty replica). Transient: the takeover that follows restores
    the state from the changelog (pipeline.restore)."""

    reason = "Redis lost state"


class StaleEpoch(Exception):
    """A newer owner (or a newer takeover by this worker) has taken the partition over; this
    writer must stop at once."""

    def __init__(self, current: int) -> None:
        super().__init__(f"partition was taken over again (epoch now {current})")
        self.current = current


class EpochRedisStore(RedisStore):
    """The exactly-once store: every write is checked against the owner's epoch and keeps
    undo images of the last batch (docs/architecture.md, sec. 4, step a)."""

    def __init__(
        self,
        client: Client,
        key: StateKey,
        epoch: int,
        view: str = "",
        wait: tuple[int, int] = (0, 0),
        per_partition: bool = False,
    ) -> None:
        super().__init__(client, key, view, wait, per_partition)
        prefix = self._prefix
        self.epoch = epoch
        self._epoch_key = f"{prefix}:epoch:{key.topic}:{key.partition}"
        self._undo = f"{prefix}:undo:{key.topic}:{key.partition}"
        self._takeovers = f"{prefix}:takeover:{key.topic}:{key.partition}"
        self.takeover = 0  # which takeover this store writes for (set by `take_over`)
        self._takeover = client.register_script(_TAKEOVER)
        self._apply_eos = client.register_script(_APPLY_EOS)
        self._rollback = client.register_script(_ROLLBACK)
        self._restore = client.register_script(_RESTORE)

    @property
    def _keys(self) -> list[str]:
        return [self._state, self._applied, self._view, self._epoch_key, self._undo,
                self._takeovers]  # fmt: skip

    def take_over(self) -> None:
        """Record our epoch and count this takeover, so that every older writer - an older
        epoch, or an earlier takeover at this epoch - is refused from now on."""
        status, value = self._write(self._takeover, [self._epoch_key, self._takeovers],
                                    [self.epoch])  # fmt: skip
        if status == b"fenced":
            raise StaleEpoch(int(value))
        self.takeover = int(value)

    def get_many(self, keys: list[str]) -> dict[str, bytes | None]:
        """Read state and, in the same MULTI, check that Redis still has this partition's
        epoch: a read from a Redis that lost everything (FLUSHALL, restarted without its data
        files) would compute from empty state, and at-least-once flushes the changelog records
        of such a batch before its state write could notice (issue 16)."""
        if not keys:
            return {}
        with _unavailable():
            pipe = self.client.pipeline(transaction=True)
            pipe.hmget(self._state, keys)
            pipe.get(self._epoch_key)
            values, epoch = pipe.execute()
        if epoch is None:
            raise StateWiped(f"{self._epoch_key} is gone")
        return dict(zip(keys, values, strict=True))

    def undo_base(self) -> tuple[bool, int | None]:
        """(an undo record exists, the applied offset it would restore)."""
        with _unavailable():
            raw = self.client.hget(self._undo, "\0applied")
        if raw is None:
            return False, None
        return True, int(raw) if raw else None

    def rollback(self) -> None:
        status, current = self._write(self._rollback, self._keys, [self.epoch, self.takeover])
        if status == b"fenced":
            raise StaleEpoch(int(current))

    def restore(
        self,
        state: Mapping[str, bytes | None],
        view: Mapping[str, bytes | None],
        applied: int | None,
        chunk: int = RESTORE_CHUNK,
    ) -> None:
        """Replace the partition's state by `state` (None values skipped: deleted keys), write
        `view` into the job's view (None: delete), then set the applied offset, epoch-checked
        like `apply`. In chunks of `chunk` keys; the applied offset only with the last."""
        items = [(k, v) for k, v in state.items() if v is not None]
        vitems = list(view.items())
        total = len(items) + len(vitems)
        first, done = True, 0
        while first or done < total:
            part = items[done : done + chunk]
            vpart = vitems[max(0, done - len(items)) : max(0, done + chunk - len(items))]
            done += chunk
            last = done >= total
            args = [self.epoch, self.takeover, "1" if first else "0",
                    "" if not last or applied is None else applied,
                    *_pack(dict(part), dict(vpart))]  # fmt: skip
            first = False
            status, current = self._write(self._restore, self._keys, args)
            if status == b"fenced":
                raise StaleEpoch(int(current))

    def apply(
        self,
        writes: Mapping[str, bytes | None],
        view_writes: Mapping[str, bytes | None],
        end_offset: int,
    ) -> bool:
        args = [self.epoch, self.takeover, end_offset, *_pack(writes, view_writes)]
        status, current = self._write(self._apply_eos, self._keys, args)
        if status == b"lost":
            raise StateWiped(f"{self._epoch_key} is gone")
        if status == b"fenced":
            raise StaleEpoch(int(current))
        return bool(status == b"ok")


class RedisStores:
    """A worker's one Redis connection pool and the partition stores made on it.

    The worker and the exactly-once takeover hold this instead of a `redis.Redis`, so that
    this package stays the only one that imports redis (docs/architecture.md, layers).
    `url`: a single Redis or a Sentinel-watched primary, optionally with replica
    acknowledgement (`pipeline.state.url`); a malformed URL raises `RedisUrlError`."""

    def __init__(self, url: str) -> None:
        self.target: RedisTarget = parse_redis_url(url)
        t = self.target
        # No client-side retries: a script retried after a lost reply is exactly the late
        # write the takeover count refuses; the worker's own retry is a whole takeover.
        options: dict[str, Any] = {
            "socket_timeout": SOCKET_TIMEOUT,
            "socket_connect_timeout": CONNECT_TIMEOUT,
            "retry": Retry(NoBackoff(), 0),
        }
        if t.is_cluster:
            # Follows MOVED/ASK itself and refreshes the slot map after a node fails; a
            # failed command is not retried (same reason as above): the worker re-takes over.
            self._client: Client = RedisCluster(
                startup_nodes=[ClusterNode(h, p) for h, p in t.cluster],  # type: ignore[no-untyped-call]
                password=t.password,
                require_full_coverage=False,
                **options,
            )
        elif t.is_sentinel:
            # The sentinel-managed pool asks the sentinels for the primary on every new
            # connection and drops a connection that finds its server demoted (READONLY),
            # so after a failover the next takeover writes to the promoted replica.
            sentinel = Sentinel(
                list(t.sentinels),
                sentinel_kwargs={"socket_timeout": CONNECT_TIMEOUT,
                                 "socket_connect_timeout": CONNECT_TIMEOUT},
            )  # fmt: skip
            self._client = sentinel.master_for(t.master, db=t.db, password=t.password, **options)
        else:
            self._client = redis.Redis.from_url(t.url, **options)
        self._wait = (t.wait_replicas, t.wait_timeout_ms)

    def epoch_store(self, key: StateKey, epoch: int, view: str = "") -> EpochRedisStore:
        return EpochRedisStore(self._client, key, epoch, view, self._wait, self.target.is_cluster)

    def read_state(self, key: StateKey) -> dict[bytes, bytes]:
        """A partition's whole state hash, whatever the deployment's key layout (checks and
        tools; the worker reads only the keys a batch needs)."""
        store = RedisStore(self._client, key, per_partition=self.target.is_cluster)
        with _unavailable():
            return dict(self._client.hgetall(store._state))  # type: ignore[arg-type]

    def read_view(self, job: str, view: str) -> dict[bytes, bytes]:
        """A job's materialised view: one hash, or on a cluster the union of the
        partitions' hashes (a key is written by exactly one partition)."""
        with _unavailable():
            if not self.target.is_cluster:
                return dict(self._client.hgetall(view_key(job, view)))  # type: ignore[arg-type]
            merged: dict[bytes, bytes] = {}
            for name in self._client.scan_iter(match=f"paxline:{{{job}:*}}:view:{view}"):
                merged.update(self._client.hgetall(name))  # type: ignore[arg-type]
            return merged

    def close(self) -> None:
        self._client.close()
