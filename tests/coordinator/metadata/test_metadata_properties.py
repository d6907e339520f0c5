"""Invariants of the metadata machine over random command histories (hypothesis).

Each history is generated step by step against a live machine, so that commits are often
made by the real owner at the real epoch (and otherwise by stale or wrong workers), which
exercises both the accepted and the fenced paths.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from coordinator.commands import (
    CancelJob,
    CheckpointCommitted,
    Command,
    CommandDecodeError,
    CommitCheckpoint,
    DeregisterWorker,
    ExpireWorker,
    OffsetsReset,
    PauseJob,
    RegisterWorker,
    ResetOffsets,
    Result,
    ResumeJob,
    SubmitJob,
    UpdatePartitions,
    WorkerDeregistered,
    WorkerExpired,
    WorkerRegistered,
    decode_command,
    decode_result,
    encode_command,
)
from coordinator.metadata import MetadataMachine
from coordinator.protocol import JobSpec, SourceSpec

JOBS = ["j1", "j2", "j3"]
TOPICS = ["t", "u"]
WORKERS = ["w1", "w2", "w3", "w4"]
UNLIMITED = 1_000
TP = tuple[str, int]


@dataclass(frozen=True)
class JobView:
    submitted_at: int
    paused: bool
    parts: dict[TP, tuple[str | None, int, int | None]]  # owner, epoch, offset


@dataclass(frozen=True)
class View:
    jobs: dict[str, JobView]
    workers: dict[str, int]  # capacity


def observe(m: MetadataMachine) -> View:
    jobs = {}
    for info in m.jobs():
        name = info.spec.name
        parts = {
            (p.topic, p.partition): (p.owner, p.epoch, p.offset) for p in m.offsets(name) or []
        }
        jobs[name] = JobView(info.submitted_at, info.paused, parts)
    return View(jobs, {w.worker_id: w.capacity for w in m.workers()})


# ---- history generation ------------------------------------------------------------------


def spec_st(name: str) -> st.SearchStrategy[JobSpec]:
    sources = st.lists(
        st.tuples(st.sampled_from(TOPICS), st.integers(1, 6)),
        min_size=1,
        max_size=2,
        unique_by=lambda s: s[0],
    )
    return sources.map(
        lambda srcs: JobSpec(
            name=name,
            entrypoint="app:job",
            sources=tuple(SourceSpec(t, n) for t, n in srcs),
            sink={"kind": "kafka", "topic": f"{name}-out"},
        )
    )


def command_st(data: st.DataObject, m: MetadataMachine, tight: bool) -> bytes:
    capacity = st.integers(0, 4) if tight else st.just(UNLIMITED)
    if not m.jobs() or not m.workers():
        # Get a cluster going first, or most commands just fail.
        kind = "submit" if not m.jobs() else "register"
        kind = data.draw(st.sampled_from([kind, kind, kind, "garbage"]))
    else:
        kind = data.draw(
            st.sampled_from(
                [
                    "submit",
                    "cancel",
                    "pause",
                    "resume",
                    "grow",
                    "register",
                    "deregister",
                    "expire",
                    "commit",
                    "commit",
                    "commit",
                    "reset",
                    "garbage",
                ]
            )
        )
    existing = [j.spec.name for j in m.jobs()]
    job = data.draw(st.sampled_from(existing * 3 + JOBS))  # mostly a job that exists
    worker = data.draw(st.sampled_from(WORKERS))
    cmd: Command
    if kind == "submit":
        cmd = SubmitJob(data.draw(spec_st(job)))
    elif kind == "cancel":
        cmd = CancelJob(job)
    elif kind == "pause":
        cmd = PauseJob(job)
    elif kind == "resume":
        cmd = ResumeJob(job)
    elif kind == "grow":
        cmd = UpdatePartitions(
            job, data.draw(st.sampled_from(TOPICS)), data.draw(st.integers(1, 8))
        )
    elif kind == "register":
        cmd = RegisterWorker(worker, data.draw(capacity))
    elif kind == "deregister":
        cmd = DeregisterWorker(worker)
    elif kind == "expire":
        info = m.worker(worker)
        guard = data.draw(st.sampled_from([None, info.registered_at if info else 0, 1]))
        cmd = ExpireWorker(worker, registered_at=guard)
    elif kind in ("commit", "reset"):
        statuses = m.offsets(job) or []
        owned = [p for p in statuses if p.owner is not None]
        if owned and data.draw(st.integers(0, 3)) > 0:
            # Mostly a plausible commit: several partitions of one owner at one epoch.
            first = data.draw(st.sampled_from(owned))
            statuses = [p for p in owned if (p.owner, p.epoch) == (first.owner, first.epoch)]
        chosen = (
            data.draw(st.lists(st.sampled_from(statuses), min_size=1, max_size=3))
            if statuses
            else []
        )
        offsets = {
            (p.topic, p.partition): max(0, (p.offset or 0) + data.draw(st.integers(-2, 6)))
            for p in chosen
        }
        if not offsets:  # no such job: make a command that must fail
            offsets = {("t", data.draw(st.integers(0, 9))): 1}
        if kind == "reset":
            cmd = ResetOffsets(job, offsets)
        else:
            owner = chosen[0].owner if chosen else None
            epoch = chosen[0].epoch if chosen else 0
            who = data.draw(st.sampled_from([owner or worker, owner or worker, worker]))
            epoch += data.draw(st.sampled_from([0, 0, 0, -1, 1]))
            cmd = CommitCheckpoint(job, who, epoch, offsets)
    else:
        return data.draw(st.binary(max_size=8))
    return encode_command(cmd)


# ---- invariants --------------------------------------------------------------------------


def check_balance(view: View) -> None:
    """Per job, in name order with what earlier jobs left of each worker's capacity."""
    remaining = dict(view.workers)
    for name in sorted(view.jobs):
        job = view.jobs[name]
        counts = dict.fromkeys(remaining, 0)
        for owner, _, _ in job.parts.values():
            if owner is not None:
                assert owner in remaining, f"{name}: owner {owner} is not a live worker"
                counts[owner] += 1
        if job.paused:
            assert sum(counts.values()) == 0, f"{name} is paused but owns partitions"
            continue
        assert sum(counts.values()) == min(len(job.parts), sum(remaining.values()))
        for a in counts:
            assert counts[a] <= remaining[a], f"{name}: {a} over capacity"
            for b in counts:
                assert counts[a] <= counts[b] + 1 or counts[b] == remaining[b], (
                    f"{name}: {a} has {counts[a]}, {b} has {counts[b]}"
                )
        for w, n in counts.items():
            remaining[w] -= n


def same_incarnation(before: View, after: View) -> list[str]:
    return [
        j
        for j in before.jobs
        if j in after.jobs and before.jobs[j].submitted_at == after.jobs[j].submitted_at
    ]


def check_step(
    before: View, after: View, cmd: Command | None, result: Result, slot: int, tight: bool
) -> None:
    check_balance(after)
    if type(result).__name__ in ERROR_RESULTS:
        assert after == before, f"{result} changed state"
        return
    for name in same_incarnation(before, after):
        old, new = before.jobs[name].parts, after.jobs[name].parts
        for tp in old.keys() & new.keys():
            (o_owner, o_epoch, o_off), (n_owner, n_epoch, n_off) = old[tp], new[tp]
            # Epochs only grow, and change exactly when the owner does, to this slot.
            assert n_epoch >= o_epoch
            assert (n_owner != o_owner) == (n_epoch != o_epoch), (name, tp, old[tp], new[tp])
            if n_epoch != o_epoch:
                assert n_epoch == slot
                assert type(result).__name__ in MEMBERSHIP_RESULTS, f"{result} moved {tp}"
            # Offsets move only through an accepted commit or a reset of a paused job.
            if n_off != o_off:
                if isinstance(result, CheckpointCommitted):
                    assert isinstance(cmd, CommitCheckpoint)
                    assert o_owner == cmd.worker_id and o_epoch == cmd.epoch, "fencing broken"
                    assert o_off is None or (n_off is not None and n_off >= o_off)
                else:
                    assert isinstance(result, OffsetsReset), f"offset moved by {result}"
                    assert before.jobs[name].paused
        if not tight:
            check_sticky(before, after, name, result)


def check_sticky(before: View, after: View, name: str, result: Result) -> None:
    old, new = before.jobs[name].parts, after.jobs[name].parts
    if before.jobs[name].paused or after.jobs[name].paused or old.keys() != new.keys():
        return
    moved = [tp for tp in old if old[tp][0] != new[tp][0]]
    if isinstance(result, WorkerRegistered) and result.worker_id not in before.workers:
        assert all(new[tp][0] == result.worker_id for tp in moved), "join moved others"
    elif isinstance(result, WorkerDeregistered | WorkerExpired):
        assert all(old[tp][0] == result.worker_id for tp in moved), "leave moved others"
    elif before.workers == after.workers:
        assert not moved, f"{result} moved partitions of {name}"


MEMBERSHIP_RESULTS = {
    "JobSubmitted",
    "JobCancelled",
    "JobPaused",
    "JobResumed",
    "PartitionsUpdated",
    "WorkerRegistered",
    "WorkerDeregistered",
    "WorkerExpired",
}
ERROR_RESULTS = {
    "UnknownJob",
    "JobExists",
    "JobNotPaused",
    "UnknownWorker",
    "StaleExpiry",
    "UnknownTopic",
    "UnknownPartition",
    "PartitionsShrink",
    "Fenced",
    "OffsetRegression",
    "InvalidCommand",
}


def decode_or_none(data: bytes) -> Command | None:
    try:
        return decode_command(data)
    except CommandDecodeError:
        return None


# ---- the properties ----------------------------------------------------------------------


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), tight=st.booleans(), length=st.integers(1, 60))
def test_random_histories_keep_every_invariant(
    data: st.DataObject, tight: bool, length: int
) -> None:
    m = MetadataMachine()
    history: list[tuple[bytes, int]] = []
    results: list[bytes] = []
    slot = 0
    for _ in range(length):
        command = command_st(data, m, tight)
        slot += data.draw(st.integers(1, 3))
        before = observe(m)
        out = m.apply(command, slot)
        result = decode_result(out)
        event(type(result).__name__)
        check_step(before, observe(m), decode_or_none(command), result, slot, tight)
        history.append((command, slot))
        results.append(out)

    # Determinism: another replica applying the same bytes ends byte-identical.
    replica = MetadataMachine()
    assert [replica.apply(c, s) for c, s in history] == results
    assert replica.snapshot() == m.snapshot()

    # Snapshot anywhere, restore, apply the rest: same results, same final state.
    cut = data.draw(st.integers(0, len(history)))
    prefix = MetadataMachine()
    for c, s in history[:cut]:
        prefix.apply(c, s)
    restored = MetadataMachine()
    restored.restore(prefix.snapshot())
    assert [restored.apply(c, s) for c, s in history[cut:]] == results[cut:]
    assert restored.snapshot() == m.snapshot()


@settings(max_examples=100, deadline=None)
@given(data=st.data(), length=st.integers(1, 25))
def test_typed_and_byte_apis_agree(data: st.DataObject, length: int) -> None:
    by_bytes, typed = MetadataMachine(), MetadataMachine()
    for slot in range(1, length + 1):
        command = command_st(data, by_bytes, tight=False)
        cmd = decode_or_none(command)
        out = decode_result(by_bytes.apply(command, slot))
        if cmd is not None:
            assert typed.apply_command(cmd, slot) == out
        else:
            typed.apply(command, slot)
    assert typed.snapshot() == by_bytes.snapshot()


def test_snapshot_bytes_do_not_depend_on_insertion_order() -> None:
    """Workers and jobs created in a different order but ending equal snapshot equally."""
    one, two = MetadataMachine(), MetadataMachine()
    for m, names in ((one, ["a", "b"]), (two, ["b", "a"])):
        for w in names:
            m.apply_command(RegisterWorker(w, 1), 1)
    assert msgspec.msgpack.decode(one.snapshot()) == msgspec.msgpack.decode(two.snapshot())
    assert one.snapshot() == two.snapshot()
