"""Two-phase commit of a file sink's files, for one input partition (issue 18): a pure state
machine, events in, effects out; the caller does the file system I/O (fsspec) and feeds back.

Phase one: records go to a *temporary* file, named by the owner's epoch and the input offsets
it covers, under ``_tmp/``. A file is *closed* when it rolls (size or time bucket); only a
closed file may be covered by a checkpoint, so the sink bounds the offset the worker may
checkpoint (:meth:`FileCommits.committable`): records in an open file are never behind an
agreed offset.

Phase two: once the coordinators agree a checkpoint at offset ``A`` (:class:`Agreed`), every
closed file ending at or before ``A`` is *published*: renamed to its final name, which depends
only on the partition and the offset range ``[first, end)`` - so two owners (a zombie that
had its checkpoint agreed before being fenced, and the next owner finishing its leftovers)
publish to the same name, and a rename that finds the final file already there is done.

Every owner's files form one gap-free chain of offset ranges starting where the published
chain ended when it took over (0 at first): a range without output may be checkpointed
without a file (``committable(open_rows=False)``); the next file then covers it.

Takeover (:class:`TakeOver`) at the agreed offset ``A``, given what is on the file system:
a leftover temporary file ending at or before ``A`` is published (its checkpoint was agreed,
the rename never happened), or deleted if its final file exists already; one ending after
``A`` is deleted (its records are replayed from ``A`` and written again). Published files
never extend past an agreed offset, and the new owner resumes at ``A``, so the published
files' ranges never overlap: each record is in exactly one published file.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "Agreed",
    "Closed",
    "Delete",
    "Effect",
    "FileCommits",
    "Publish",
    "TakeOver",
    "TempFile",
    "final_name",
    "parse_final",
    "parse_temp",
    "temp_name",
]


@dataclass(frozen=True, slots=True, order=True)
class TempFile:
    """A temporary file: input offsets ``[first, end)`` of the partition, written at ``epoch``
    into time bucket ``bucket`` (a relative directory such as ``dt=2026-12-04/hour=13``)."""

    first: int
    end: int
    epoch: int
    bucket: str
    ext: str


def temp_name(prefix: str, f: TempFile) -> str:
    """``_tmp/{prefix}/{bucket}/e{epoch}-{first}-{end}.{ext}``; ``prefix`` names the job,
    topic and partition, so owners of other partitions never touch it."""
    return f"_tmp/{prefix}/{f.bucket}/e{f.epoch}-{f.first}-{f.end}.{f.ext}"


def final_name(prefix: str, f: TempFile) -> str:
    """``{bucket}/{prefix}-{first:020d}-{end:020d}.{ext}``: independent of the epoch."""
    return f"{f.bucket}/{prefix.replace('/', '-')}-{f.first:020d}-{f.end:020d}.{f.ext}"


def parse_final(prefix: str, path: str) -> tuple[int, int] | None:
    """The offset range of this prefix's final file ``path``, or None."""
    name = path.rpartition("/")[2]
    head = prefix.replace("/", "-") + "-"
    if not name.startswith(head):
        return None
    stem = name[len(head) :].partition(".")[0]
    first, _, end = stem.partition("-")
    if not (first.isdigit() and end.isdigit()):
        return None
    return int(first), int(end)


def parse_temp(prefix: str, path: str) -> TempFile | None:
    """The temporary file named ``path`` (relative to the sink's root), or None if ``path``
    is not one of this prefix's (a stray file is left alone)."""
    head = f"_tmp/{prefix}/"
    if not path.startswith(head):
        return None
    bucket, _, name = path[len(head) :].rpartition("/")
    stem, dot, ext = name.partition(".")
    parts = stem.split("-")
    if not dot or len(parts) != 3 or not parts[0].startswith("e"):
        return None
    try:
        epoch, first, end = int(parts[0][1:]), int(parts[1]), int(parts[2])
    except ValueError:
        return None
    if first >= end:
        return None
    return TempFile(first, end, epoch, bucket, ext)


@dataclass(frozen=True, slots=True)
class Closed:
    """The writer closed (rolled) a temporary file; its bytes are durable."""

    file: TempFile


@dataclass(frozen=True, slots=True)
class Agreed:
    """The coordinators agreed a checkpoint of this partition at ``offset``."""

    offset: int


@dataclass(frozen=True, slots=True)
class TakeOver:
    """This owner took the partition at ``agreed``; ``temps`` are the temporary files found
    under the prefix, ``published`` the offset ranges of its final files that exist."""

    agreed: int | None
    temps: tuple[TempFile, ...]
    published: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True, slots=True)
class Publish:
    """Rename ``temp`` to ``final`` (done, too, if ``final`` already exists)."""

    temp: str
    final: str


@dataclass(frozen=True, slots=True)
class Delete:
    temp: str


Effect = Publish | Delete


@dataclass
class FileCommits:
    """One partition's files between closing and publishing."""

    prefix: str
    closed: list[TempFile] = field(default_factory=list)  # closed, not yet published
    agreed: int | None = None
    #: end of the last closed file: the highest offset a checkpoint may cover
    closed_to: int | None = None

    def committable(self, position: int | None, open_rows: bool = True) -> int | None:
        """The offset the worker may checkpoint when it has processed up to ``position``:
        never past records that sit in a file still open (None: nothing yet). ``open_rows``
        False: no output of offsets before ``position`` waits in an open file, so the range
        may be checkpointed without a file (the next file still starts at ``closed_to``)."""
        if position is None:
            return None
        if not open_rows:
            return position
        if self.closed_to is None:
            return None
        return min(position, self.closed_to)

    def step(self, event: Closed | Agreed | TakeOver) -> list[Effect]:
        if isinstance(event, Closed):
            f = event.file
            if self.closed_to is not None and f.first != self.closed_to:
                raise ValueError(
                    f"{self.prefix}: file [{f.first}, {f.end}) does not follow the last closed "
                    f"file, which ended at {self.closed_to}"
                )
            self.closed.append(f)
            self.closed_to = f.end
            return []
        if isinstance(event, Agreed):
            if self.agreed is not None and event.offset < self.agreed:
                return []  # agreed offsets never go back; a late answer changes nothing
            self.agreed = event.offset
            due = [f for f in self.closed if f.end <= event.offset]
            self.closed = [f for f in self.closed if f.end > event.offset]
            return [Publish(temp_name(self.prefix, f), final_name(self.prefix, f)) for f in due]
        return self._take_over(event)

    def _take_over(self, event: TakeOver) -> list[Effect]:
        """Finish the chain of files the agreed offset covers, discard everything else.

        Published files form a chain of adjacent ranges. From its end, the next file to
        publish starts exactly there and ends at or before ``agreed``; among such files of
        several owners, the one of the highest epoch is the one whose checkpoint was agreed
        (each owner starts writing at the offset agreed when it took over, so a later owner's
        files never end at or before that offset unless it had them agreed). A zombie's file
        that overlaps the chain is never published: it is deleted."""
        self.closed = []
        self.agreed = event.agreed
        agreed = event.agreed
        done = set(event.published)
        # Every owner's files start where the published chain ends (0 before any), not at
        # the offset it resumes from: a range with no output (a filter, windows still open)
        # may be checkpointed without a file, and starting at the chain's end keeps the
        # chain gap-free, so "starts where the chain ends" still tells files apart.
        cur = max((end for _, end in event.published), default=0)
        candidates = [f for f in event.temps if agreed is not None and f.end <= agreed]
        chain: list[TempFile] = []
        while agreed is not None and cur < agreed:
            nxt = [f for f in candidates if f.first == cur]
            if not nxt:
                break  # nothing left to finish (or already published)
            best = max(nxt, key=lambda f: f.epoch)
            chain.append(best)
            cur = best.end
        self.closed_to = cur
        out: list[Effect] = []
        for f in sorted(event.temps):
            temp = temp_name(self.prefix, f)
            if f in chain and (f.first, f.end) not in done:
                out.append(Publish(temp, final_name(self.prefix, f)))
            else:
                out.append(Delete(temp))
        return out
