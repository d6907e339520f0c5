"""The per-job changelog switch (issue 16): on unless a job says ``Job(..., changelog=False)``,
refused at submit when it is not a bool, and carried in the spec the workers read
(``settings["changelog"]``), through the coordinator's own spec validation."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from coordinator.metadata import validate_spec
from coordinator.protocol import JobSpec
from pipeline.job import Job
from pipeline.spec import SpecError, build_spec


def counter(**kw: Any) -> Job:
    return Job("c", **kw).source("in", partitions=2, value="str").key_by(len).count().to_redis("v")


def test_a_job_has_a_changelog_unless_it_says_otherwise() -> None:
    assert counter().changelog is True
    assert build_spec(counter(), "jobs.py:c")["settings"]["changelog"] is True


@pytest.mark.parametrize("guarantee", ["at-least-once", "exactly-once"])
def test_changelog_false_reaches_the_spec_at_both_guarantees(guarantee: str) -> None:
    spec = build_spec(counter(changelog=False, guarantee=guarantee), "jobs.py:c")
    assert spec["settings"]["changelog"] is False
    assert validate_spec(msgspec.convert(spec, JobSpec)) is None


@pytest.mark.parametrize("bad", ["no", 0, 1, None, "false"])
def test_a_changelog_that_is_not_a_bool_is_refused_naming_the_field(bad: Any) -> None:
    with pytest.raises(SpecError, match=r"Job\(\): changelog must be True or False, got"):
        counter(changelog=bad)


def test_changelog_is_not_a_tunable_setting() -> None:
    """One way to say it: settings() refuses it as unknown rather than half-applying it."""
    with pytest.raises(SpecError, match="unknown setting 'changelog'"):
        counter().settings(changelog=False)
