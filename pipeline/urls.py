"""Showing a URL in an error message without its password: bad-configuration errors end up in
terminals, CI logs and a worker's one CRITICAL line (docs/architecture.md, sec. 6)."""

from __future__ import annotations

from urllib.parse import urlsplit

__all__ = ["shown"]


def shown(url: str) -> str:
    """`repr(url)` with the password replaced by `***` (user and host kept, so the reader
    still sees which URL is meant); a URL that does not parse is shown as `<unparsable URL>`."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "<unparsable URL>"
    if password is None:
        return repr(url)
    user, _, host = parts.netloc.rpartition("@")
    name = user.split(":", 1)[0]
    return repr(parts._replace(netloc=f"{name}:***@{host}").geturl())
