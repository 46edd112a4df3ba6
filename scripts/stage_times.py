"""Print how long each test module took (setup, call and teardown of its tests), from pytest's JUnit XML.

Used by run-tests.sh after each run: the cold and warm time of each stage, for the book's appendix.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from collections import defaultdict


def module_times(path: str) -> dict[str, tuple[int, float]]:
    """Test module (classname in the XML) -> (number of tests, seconds)."""
    totals: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
    for case in ET.parse(path).getroot().iter("testcase"):
        entry = totals[case.get("classname", "?")]
        entry[0] += 1
        entry[1] += float(case.get("time", 0))
    return {name: (int(n), secs) for name, (n, secs) in totals.items()}


def main(path: str, prefix: str) -> None:
    for name, (count, seconds) in module_times(path).items():
        print(f"{prefix} {name}: {count} tests, {seconds:.0f} s")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "")
