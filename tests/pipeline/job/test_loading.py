"""Entrypoints resolve by file path (relative to cwd) or module path, with clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.job import Job
from pipeline.loading import JobLoadError, load_job

JOB_SRC = (
    "from pipeline.job import Job\n"
    "job = Job('tmp').source('in', partitions=1).to_kafka('out')\n"
    "not_a_job = 42\n"
)


def test_file_path_and_module_path_give_the_same_job() -> None:
    by_file = load_job("examples/wordcount.py:job")
    by_module = load_job("examples.wordcount:job")
    assert isinstance(by_file, Job) and by_file is by_module


def test_a_file_outside_any_package_loads_relative_to_cwd(tmp_path: Path) -> None:
    (tmp_path / "jobs").mkdir()
    (tmp_path / "jobs" / "my-job.py").write_text(JOB_SRC)
    job = load_job("jobs/my-job.py:job", cwd=tmp_path)
    assert job.name == "tmp"
    assert load_job("jobs/my-job.py:job", cwd=tmp_path) is job  # imported once


def test_absolute_file_paths_work(tmp_path: Path) -> None:
    path = tmp_path / "standalone.py"
    path.write_text(JOB_SRC)
    assert load_job(f"{path}:job").name == "tmp"


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("examples/wordcount.py", "must look like 'path.py:attr' or 'module:attr'"),
        ("examples/wordcount.py:", "must look like"),
        ("examples/wordcount.py:not-an-id", "must look like"),
        ("examples/nope.py:job", "job file not found: 'examples/nope.py'"),
        ("examples/wordcount.py:missing", "'examples/wordcount.py' has no attribute 'missing'"),
        ("examples.wordcount:missing", "'examples.wordcount' has no attribute 'missing'"),
        ("examples.wordcount:words", "is a function, not a paxline Job"),
        ("examples.nope:job", "cannot import module 'examples.nope': no module named"),
        ("no_such_pkg.mod:job", "no module named 'no_such_pkg'"),
    ],
)
def test_bad_entrypoints_fail_with_a_clear_error(ref: str, message: str) -> None:
    with pytest.raises(JobLoadError) as err:
        load_job(ref)
    assert message in str(err.value)


def test_errors_raised_while_importing_are_reported(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("raise RuntimeError('kaboom')\n")
    (tmp_path / "typed.py").write_text(JOB_SRC)
    with pytest.raises(JobLoadError, match=r"importing 'broken\.py' failed: RuntimeError: kaboom"):
        load_job("broken.py:job", cwd=tmp_path)
    with pytest.raises(JobLoadError, match="is a int, not a paxline Job"):
        load_job("typed.py:not_a_job", cwd=tmp_path)


def test_a_top_level_file_named_like_a_stdlib_module_is_not_shadowed(tmp_path: Path) -> None:
    (tmp_path / "json.py").write_text(JOB_SRC)
    assert load_job("json.py:job", cwd=tmp_path).name == "tmp"
