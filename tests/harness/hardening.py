"""How fenced in the stages' services are: ``systemd-analyze security`` of every unit the steps install."""

from __future__ import annotations

import re

from .machine import Machine
from .results import exposure

# Every unit a stage's install.sh puts in /etc/systemd/system (stage 03: the firewall; 05: the proxy and the hub).
STAGE_UNITS = ("hub-firewall", "traefik", "jupyterhub")
OPEN = re.compile(r"^✗ (\S+)\s+.*?\s([\d.]+)$")


def installed_units(machine: Machine) -> list[str]:
    """The stage units present on the machine, in install order."""
    files = " ".join(f"{u}.service" for u in STAGE_UNITS)
    present = machine.output(f"cd /etc/systemd/system && ls {files} 2>/dev/null", check=False)
    return [u for u in STAGE_UNITS if f"{u}.service" in present.split()]


def open_settings(machine: Machine, unit: str) -> dict[str, float]:
    """The settings ``systemd-analyze security`` counts against the unit, with their weight."""
    out = machine.output(f"systemd-analyze security {unit}.service --no-pager")
    found = {}
    for line in out.splitlines():
        m = OPEN.match(line.strip())
        if m:
            found[m.group(1)] = float(m.group(2))
    return found


def audit(machine: Machine) -> dict[str, dict]:
    """For each stage unit: its overall exposure and what still counts against it."""
    return {u: {"exposure": exposure(machine, f"{u}.service"), "open": open_settings(machine, u)}
            for u in installed_units(machine)}  # fmt: skip
