"""Whether this process can reach a file sink URL's file system at all: fsspec knows the
protocol and its package (s3fs, gcsfs, adlfs, ...) is installed. Asked at submit, so that a
job naming ``s3://`` without s3fs fails there with fsspec's own advice ("Install s3fs to
access S3") instead of stalling on every worker; and by the workers, whose stall then says
the same."""

from __future__ import annotations

__all__ = ["url_problem"]


def url_problem(url: str) -> str | None:
    """None if fsspec can load the file system of ``url`` here, else what is missing."""
    import fsspec  # only for a job with a file sink: submitting other jobs never pays for it

    protocol = fsspec.core.split_protocol(url)[0] or "file"
    try:
        fsspec.get_filesystem_class(protocol)
    except ImportError as exc:
        return f"{protocol}:// needs a package that is not installed here: {exc}"
    except ValueError as exc:
        return f"{protocol}:// is not a file system fsspec knows: {exc}"
    return None
