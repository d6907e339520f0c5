"""The dashboard: a static page (no build step) that every coordinator serves at `/`."""

from importlib.resources import files

__all__ = ["index_html", "static_dir"]


def static_dir() -> str:
    return str(files(__name__) / "static")


def index_html() -> str:
    return (files(__name__) / "static" / "index.html").read_text(encoding="utf-8")
