"""Measurements the tests record for the book and the closing notes (never asserted on time)."""

from __future__ import annotations

import json
import re

from . import releases
from .machine import Machine
from .stages import REPO

RESULTS = REPO / ".cache" / "results"


def record(name: str, data: dict) -> None:
    """Write .cache/results/NAME-dRELEASE.json and print it (pytest -s shows it; run-tests.sh lists it)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}-d{releases.current()}.json"
    path.write_text(json.dumps(data, indent=2) + "\n")
    print(path.stem, data)


def exposure(machine: Machine, unit: str) -> float:
    """The overall exposure ``systemd-analyze security`` gives a unit (0 = fenced in, 10 = open)."""
    out = machine.output(f"systemd-analyze security {unit} --no-pager")
    found = re.search(r"Overall exposure level for \S+: ([\d.]+)", out)
    assert found, f"no exposure level in: {out[-500:]}"
    return float(found.group(1))
