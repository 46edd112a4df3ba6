"""Which Debian release the test VMs run: 13 (trixie) by default, 12 (bookworm) still proven."""

from __future__ import annotations

import os

RELEASES = {"12": "bookworm", "13": "trixie"}
DEFAULT = "13"
ENV = "HHW_DEBIAN"  # set by `pytest --debian N` (and by `make test DEBIAN=N`); subprocesses inherit it


def current() -> str:
    """The Debian release number of this run's test VMs ("12" or "13")."""
    release = os.environ.get(ENV, DEFAULT)
    if release not in RELEASES:
        raise ValueError(f"{ENV}={release!r}: the tests know Debian {' and '.join(sorted(RELEASES))}")
    return release


def codename(release: str | None = None) -> str:
    """bookworm or trixie."""
    return RELEASES[release or current()]


def base_image(release: str | None = None) -> str:
    """The image of a fresh VM of that release (scripts/build-base-images.sh makes it)."""
    return f"hhw/vm:{codename(release)}"


def slim_image(release: str | None = None) -> str:
    """The image a reader's Dockerfile pulls (FROM debian:CODENAME-slim), made locally."""
    return f"debian:{codename(release)}-slim"
