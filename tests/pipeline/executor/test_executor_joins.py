"""Stream-table joins (issue 18): the table feeder forwards rows into the joining stage's
partition, and the join equals a plain-Python dict lookup over the merged partition, left and
inner, with updates and deletes, however the partition is cut into batches."""

from __future__ import annotations

from typing import Any

import msgspec
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.executor import InRecord, compile_job
from pipeline.executor.joins import TABLE_HEADER
from pipeline.executor.provenance import SRC_HEADER, dedup
from pipeline.job import Job
from pipeline.spec import SpecError, build_spec
from tests.pipeline.executor.memory_state import MemoryState


def join_job(how: str = "left", fn: Any = None) -> Job:
    return (
        Job("j")
        .source("orders", partitions=2, value="json")
        .key_by(lambda o: o["customer"])
        .join_table("customers", partitions=3, how=how, fn=fn)
        .to_kafka("out")
    )


def test_the_table_is_a_stage_of_its_own_feeding_the_joining_stage() -> None:
    plan = compile_job(join_job())
    assert [(s.topics, s.output, s.output_topic, s.feeds) for s in plan.stages] == [
        (("orders",), "repartition", "paxline.j.repartition.1", None),
        (("paxline.j.repartition.1",), "kafka", "out", None),
        (("customers",), "repartition", "paxline.j.repartition.1", 1),
    ]
    assert plan.stages[1].stateful and not plan.stages[2].stateful
    spec = build_spec(join_job(), "x:job")
    assert spec["sources"][2] == {"topic": "customers", "partitions": 3}
    assert spec["settings"]["topic_stage"]["customers"] == 2
    assert spec["settings"]["stages"][2]["output"] == {
        "kind": "repartition", "topic": "paxline.j.repartition.1", "operator": "join_table#2"
    }  # fmt: skip


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (
            lambda: Job("j").source("o", partitions=1).join_table("t", partitions=1),
            "join_table#1 must directly follow a key_by()",
        ),
        (
            lambda: (
                Job("j")
                .source("o", partitions=1)
                .key_by(str)
                .map(str)
                .join_table("t", partitions=1)
            ),
            "join_table#3 must directly follow a key_by()",
        ),
        (
            lambda: Job("j").source("o", partitions=1).key_by(str).join_table("o", partitions=1),
            "topic 'o' is already the job's source",
        ),
        (
            lambda: (
                Job("j").source("o", partitions=1).key_by(str).join_table("t", partitions=1).count()
            ),
            "count#3 follows join_table#2 without a key_by() in between",
        ),
        (
            lambda: (
                Job("j")
                .source("o", partitions=1)
                .key_by(str)
                .join_table("t", partitions=1, how="outer")
            ),
            "how must be 'left' or 'inner'",
        ),
        (
            lambda: (
                Job("j")
                .source("o", partitions=1)
                .key_by(str)
                .join_table("bad topic!", partitions=1)
            ),
            "join_table#2: topic must be a Kafka topic name",
        ),
    ],
)
def test_bad_joins_are_refused_naming_the_problem(build: Any, message: str) -> None:
    with pytest.raises(SpecError) as err:
        job = build()
        build_spec(job.to_kafka("out"), "x:job")
    assert message in str(err.value)


def table_records(rows: list[tuple[str, Any]]) -> list[InRecord]:
    return [
        InRecord("customers", 0, i, k.encode(), None if v is None else orjson.dumps(v), 5)
        for i, (k, v) in enumerate(rows)
    ]


def test_rows_are_forwarded_keyed_with_provenance_apart_from_the_stream() -> None:
    plan = compile_job(join_job())
    res = plan.process(2, table_records([("c1", {"name": "Ann"}), ("c2", None)]), MemoryState())
    assert [(o.topic, o.key, msgspec.msgpack.decode(o.value)) for o in res.outputs] == [
        ("paxline.j.repartition.1", b"c1", [5, {"name": "Ann"}]),
        ("paxline.j.repartition.1", b"c2", [5, None]),
    ]
    assert res.outputs[0].headers[0] == (TABLE_HEADER, b"")
    assert dict(res.outputs[0].headers)[SRC_HEADER] == b"-1:0:0"  # upstream -1 - partition
    bad = plan.process(2, [InRecord("customers", 0, 0, None, b"{}", 0)], MemoryState())
    assert bad.outputs == [] and "has no key" in bad.dead_letters[0].error


Event = tuple[str, str, int | None]  # ("row" | "rec", key, value)
EVENTS = st.lists(
    st.tuples(st.sampled_from(["row", "rec"]), st.sampled_from("abc"),
              st.one_of(st.none(), st.integers(0, 9))),
    max_size=40,
)  # fmt: skip


def merged_partition(events: list[Event]) -> list[InRecord]:
    """The joining stage's partition: table rows (as the feeder writes them) and stream
    records (as key_by writes them), interleaved."""
    out = []
    for i, (kind, key, v) in enumerate(events):
        if kind == "row":
            headers: tuple[tuple[str, bytes], ...] = (
                (TABLE_HEADER, b""), (SRC_HEADER, b"-1:%d:0" % i)
            )  # fmt: skip
            out.append(InRecord("r", 0, i, key.encode(), msgspec.msgpack.encode([7, v]), 0,
                                headers))  # fmt: skip
        else:
            order = {"customer": key, "n": i}
            out.append(InRecord("r", 0, i, key.encode(), msgspec.msgpack.encode([7, order]), 0,
                                ((SRC_HEADER, b"0:%d:0" % i),)))  # fmt: skip
    return out


def reference(events: list[Event], how: str) -> list[Any]:
    table: dict[str, int] = {}
    out = []
    for i, (kind, key, v) in enumerate(events):
        if kind == "row":
            if v is None:
                table.pop(key, None)
            else:
                table[key] = v
        elif key in table or how == "left":
            out.append({"value": {"customer": key, "n": i}, "table": table.get(key)})
    return out


@settings(max_examples=60, deadline=None)
@given(events=EVENTS, batch=st.integers(1, 15), how=st.sampled_from(["left", "inner"]))
def test_the_join_equals_a_dict_lookup_at_any_batch_cut(
    events: list[Event], batch: int, how: str
) -> None:
    plan = compile_job(join_job(how))
    state = MemoryState()
    recs = merged_partition(events)
    got = []
    for lo in range(0, len(recs), batch):
        fresh, hw = dedup(recs[lo : lo + batch], state)
        res = plan.process(1, fresh, state)
        res.state_writes.update(hw)
        state.apply(res)
        got += [orjson.loads(o.value) for o in res.outputs]
    assert got == reference(events, how)
    # Replaying everything (a redelivery under at-least-once) joins nothing twice.
    fresh, _ = dedup(recs, state)
    assert fresh == []


def test_a_join_function_and_what_follows_it() -> None:
    job = (
        Job("j")
        .source("orders", partitions=1, value="json")
        .key_by(lambda o: o["customer"])
        .join_table("customers", partitions=1, how="inner",
                    fn=lambda o, c: {**o, "name": c["name"]})
        .filter(lambda o: o["n"] != 2)
        .map(lambda o: f"{o['name']}:{o['n']}")
        .to_kafka("out", value="str")
    )  # fmt: skip
    events: list[Any] = [("row", "a", None), ("rec", "a", None), ("rec", "a", None)]
    recs = merged_partition(events)
    recs[0] = InRecord("r", 0, 0, b"a", msgspec.msgpack.encode([7, {"name": "Ann"}]), 0,
                       ((TABLE_HEADER, b""),))  # fmt: skip
    res = compile_job(job).process(1, recs, MemoryState())
    assert [o.value for o in res.outputs] == [b"Ann:1"]


# ---------------------------------------------------------------------------------------
# Windowed stream-stream join
# ---------------------------------------------------------------------------------------


def stream_job(within: float, grace: float) -> Job:
    return (
        Job("s")
        .source("clicks", partitions=1, value="json")
        .key_by(lambda c: c["user"])
        .join_stream("views", partitions=1, within=within, grace=grace,
                     key=lambda v: v["user"], timestamp=lambda e: e["ts"])
        .to_kafka("out")
    )  # fmt: skip


Side = tuple[str, str, int]  # ("l" | "r", key, event time)
SIDES = st.lists(
    st.tuples(st.sampled_from("lr"), st.sampled_from("ab"), st.integers(0, 3000)), max_size=40
)


def stream_partition(events: list[Side]) -> list[InRecord]:
    out = []
    for i, (side, key, t) in enumerate(events):
        value = {"user": key, "ts": t, "i": i}
        if side == "r":
            headers: tuple[tuple[str, bytes], ...] = (
                ("paxline.join", b""), (SRC_HEADER, b"-1:%d:0" % i)
            )  # fmt: skip
        else:
            headers = ((SRC_HEADER, b"0:%d:0" % i),)
        out.append(InRecord("r", 0, i, key.encode(), msgspec.msgpack.encode([t, value]), 0,
                            headers))  # fmt: skip
    return out


def stream_reference(events: list[Side], within: int, grace: int) -> tuple[list[Any], int]:
    wm: int | None = None
    bufs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    out, late = [], 0
    for i, (side, key, t) in enumerate(events):
        if wm is not None and t < wm - within - grace:
            late += 1
            continue
        value = {"user": key, "ts": t, "i": i}
        for other in bufs.get(("r" if side == "l" else "l", key), []):
            if abs(other["ts"] - t) <= within:
                left, right = (value, other) if side == "l" else (other, value)
                out.append({"value": left, "table": right})
        bufs.setdefault((side, key), []).append(value)
        wm = t if wm is None else max(wm, t)
    return out, late


@settings(max_examples=80, deadline=None)
@given(events=SIDES, batch=st.integers(1, 15), within=st.integers(0, 400),
       grace=st.integers(0, 300))  # fmt: skip
def test_the_stream_join_equals_all_pairs_within_the_window(
    events: list[Side], batch: int, within: int, grace: int
) -> None:
    plan = compile_job(stream_job(within / 1000, grace / 1000))
    state = MemoryState()
    recs = stream_partition(events)
    got, late = [], 0
    for lo in range(0, len(recs), batch):
        res = plan.process(1, recs[lo : lo + batch], state)
        assert not res.dead_letters
        state.apply(res)
        late += res.late_dropped
        got += [orjson.loads(o.value) for o in res.outputs]
    assert (got, late) == stream_reference(events, within, grace)
    # A key whose records are all out of reach of any record to come is dropped.
    final = max((t for _, _, t in events), default=0)
    latest: dict[str, int] = {}
    for k, v in state.data.items():
        if k.startswith(("s1:jl:", "s1:jr:")):
            newest = max(t for t, _ in msgspec.msgpack.decode(v))
            latest[k[6:]] = max(latest.get(k[6:], newest), newest)
    assert all(t >= final - 2 * within - grace for t in latest.values()), latest


def test_the_other_stream_is_keyed_and_stamped_by_its_feeder() -> None:
    plan = compile_job(stream_job(1, 0))
    view = InRecord("views", 0, 4, None, orjson.dumps({"user": "u", "ts": 77}), 0)
    [out] = plan.process(2, [view], MemoryState()).outputs
    assert (out.key, msgspec.msgpack.decode(out.value)) == (b"u", [77, {"user": "u", "ts": 77}])
    assert out.headers[0] == ("paxline.join", b"")
