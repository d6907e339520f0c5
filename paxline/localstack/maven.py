"""Jars from Maven Central for the JVM services the local stack starts (Kafka, HDFS, and the
ZooKeeper benchmark peer): fetched once by ``mvn dependency:copy-dependencies`` from a
throw-away POM into a cache outside the repository, and checked against SHA-256 pins.

Maven itself checks Central's SHA-1 files; the pins fix the exact bytes on top, the way
``uv.lock`` pins the Python packages. One helper so the three launchers share the locking
(two test sessions may fetch at once), the atomic rename of a complete directory, and the
error text, instead of three copies drifting apart.

Standard library only, like the other launchers (the scripts run it with the system Python).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

__all__ = ["JarFetchError", "cache_root", "fetch_jars", "parse_pins", "sha256", "verify"]


class JarFetchError(RuntimeError):
    """Jars could not be fetched or do not match their pins; the text says which."""


def cache_root() -> Path:
    """``$PAXLINE_CACHE``, else ``$XDG_CACHE_HOME/paxline``, else ``~/.cache/paxline``."""
    env = os.environ.get("PAXLINE_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "paxline"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def parse_pins(text: str) -> dict[str, str]:
    """``sha256sum`` output (``<hex>  <name>`` per line) as ``{name: hex}``."""
    pins: dict[str, str] = {}
    for line in text.splitlines():
        if line.strip():
            digest, name = line.split()
            pins[name.lstrip("*")] = digest
    return pins


def verify(libs: Path, pinned: Mapping[str, str], what: str) -> None:
    """Every pinned jar is present with its pinned bytes, and no other jar is."""
    found = {p.name for p in libs.glob("*.jar")}
    missing = sorted(set(pinned) - found)
    extra = sorted(found - set(pinned))
    if missing or extra:
        raise JarFetchError(f"{what} jars in {libs}: missing {missing}, unpinned {extra}")
    for name, want in pinned.items():
        got = sha256(libs / name)
        if got != want:
            raise JarFetchError(f"{libs / name}: SHA-256 {got}, pinned {want}")


def fetch_jars(
    libs: Path,
    pom: str,
    pinned: Mapping[str, str] | None,
    what: str,
    quiet: bool = False,
    required: str | None = None,
) -> Path:
    """Fetch the runtime-scope jars of ``pom`` into ``libs`` once; later calls return at once.

    ``libs`` appears only complete and verified (built in a temporary sibling, then renamed),
    so a fetch killed half-way leaves nothing a later start would trust. ``pinned=None`` is
    for a version the project has no pins for (a user's override): it is fetched with a
    warning, and only ``required`` (a jar name) is checked.
    """
    marker = libs / ".complete"
    if marker.exists():
        return libs
    if shutil.which("mvn") is None:
        raise JarFetchError(
            f"`mvn` (Apache Maven) is not on PATH, needed to fetch {what}; "
            "scripts/install-deps installs it"
        )
    libs.parent.mkdir(parents=True, exist_ok=True)
    with open(libs.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two test sessions may fetch at once
        if marker.exists():
            return libs
        if not quiet:
            print(f"fetching {what} from Maven Central ...", flush=True)
        t0 = time.monotonic()
        with tempfile.TemporaryDirectory(dir=libs.parent) as tmp:
            pom_file = Path(tmp) / "pom.xml"
            pom_file.write_text(pom)
            out = Path(tmp) / "libs"
            proc = subprocess.run(
                [
                    "mvn", "-B", "-q", "-f", str(pom_file),
                    "dependency:copy-dependencies",
                    f"-DoutputDirectory={out}", "-DincludeScope=runtime",
                ],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            if proc.returncode != 0:
                tail = (proc.stdout + proc.stderr)[-3000:]
                raise JarFetchError(f"mvn could not fetch {what}:\n{tail}")
            if pinned is not None:
                verify(out, pinned, what)
            else:
                print(
                    f"warning: {what} is not pinned by paxline; jars not hash-checked", flush=True
                )
            if required is not None and not (out / required).exists():
                raise JarFetchError(f"mvn finished but {required} is missing")
            shutil.rmtree(libs, ignore_errors=True)
            out.rename(libs)
        marker.write_text(what)
        if not quiet:
            n = len(list(libs.glob("*.jar")))
            print(f"fetched {n} jars in {time.monotonic() - t0:.1f}s", flush=True)
    return libs
