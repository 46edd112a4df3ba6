"""The versions the book's intro lists, per Debian release, checked against the machine under test."""

from __future__ import annotations

import re

from .machine import Machine
from .stages import REPO

INTRO = REPO / "book" / "intro.md"

# How to ask the machine for each part's version (the intro's "Part" column).
PROBES = {
    "Debian": "cat /etc/debian_version",
    "systemd": "systemctl --version | awk 'NR==1 {print $2}'",
    "Python": "python3 -c 'import platform; print(platform.python_version())'",
    "Node.js": "node --version | sed 's/^v//'",
    "configurable-http-proxy": "configurable-http-proxy --version",
    "JupyterHub": "/opt/jupyterhub/bin/jupyterhub --version",
    "JupyterLab": "/opt/jupyterhub/bin/jupyter-lab --version",
    "Docker Engine": "docker version --format '{{.Server.Version}}'",
    "DockerSpawner": "/opt/jupyterhub/bin/python -c 'import dockerspawner; print(dockerspawner.__version__)'",
    "Traefik": "/opt/jupyterhub/bin/traefik version | awk '/^Version:/ {print $2}'",
    "jupyterhub-traefik-proxy": "/opt/jupyterhub/bin/pip show jupyterhub-traefik-proxy | awk '/^Version:/ {print $2}'",
    "oauthenticator": "/opt/jupyterhub/bin/python -c 'import oauthenticator; print(oauthenticator.__version__)'",
}


def book_versions() -> dict[str, dict[str, str]]:
    """{"13": {"Python": "3.13.5", ...}, "12": {...}} from the intro's versions table."""
    lines = [line for line in INTRO.read_text().splitlines() if line.startswith("| ")]
    header = next(line for line in lines if line.startswith("| Part |"))
    releases = [re.search(r"Debian (\d+)", cell).group(1) for cell in header.strip("| ").split(" | ")[1:]]
    table: dict[str, dict[str, str]] = {r: {} for r in releases}
    for line in lines[lines.index(header) + 2 :]:
        cells = [c.strip().strip("`") for c in line.strip("| ").split(" | ")]
        if cells[0] not in PROBES:
            continue
        for release, cell in zip(releases, cells[1:], strict=True):
            table[release][cells[0]] = cell.split()[0]
    return table


def machine_release(machine: Machine) -> str:
    """The Debian release of the machine ("12", "13")."""
    return machine.output(". /etc/os-release && echo $VERSION_ID")


def check(machine: Machine, parts: tuple[str, ...]) -> dict[str, str]:
    """Compare the machine's version of each part with the book's; return what was found.

    Equal, or the book names the start of it (Debian "13" matches 13.2).
    """
    release = machine_release(machine)
    book = book_versions().get(release)
    assert book is not None, f"book/intro.md has no versions column for Debian {release}"
    found = {part: machine.output(PROBES[part]) for part in parts}
    wrong = {
        part: f"book says {book.get(part)!r}, machine has {value!r}"
        for part, value in found.items()
        if not (value == book.get(part) or value.startswith(f"{book.get(part)}."))
    }
    assert not wrong, f"book/intro.md's versions table is out of date for Debian {release}: {wrong}"
    return found
