"""A Redis Lua round trip of the shape the exactly-once state store uses: check a fencing
epoch, apply a change and advance the applied offset atomically, refuse an older epoch."""

from __future__ import annotations

import uuid

import pytest
import redis

from paxline.localstack.redis import RedisServer

pytestmark = pytest.mark.integration

APPLY = """
local epoch = tonumber(redis.call('GET', KEYS[1]) or '-1')
if tonumber(ARGV[1]) < epoch then
  return {'fenced', epoch}
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('HINCRBY', KEYS[2], ARGV[3], 1)
redis.call('SET', KEYS[3], ARGV[2])
return {'ok', tonumber(ARGV[2])}
"""


def test_lua_script_applies_atomically_and_refuses_a_stale_epoch(redis_server: RedisServer) -> None:
    client = redis.Redis.from_url(redis_server.url)
    script = client.register_script(APPLY)
    ns = uuid.uuid4().hex[:8]
    keys = [f"{ns}:epoch", f"{ns}:counts", f"{ns}:applied"]

    assert script(keys=keys, args=[5, 100, "word"]) == [b"ok", 100]
    assert script(keys=keys, args=[6, 101, "word"]) == [b"ok", 101]
    assert script(keys=keys, args=[5, 102, "word"]) == [b"fenced", 6]

    assert client.hget(keys[1], "word") == b"2"
    assert client.get(keys[2]) == b"101"
    assert client.config_get("appendonly") == {"appendonly": "yes"}
