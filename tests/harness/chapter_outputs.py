"""The chapters' "You should see" blocks after an install.sh section, checked against what it printed.

A stage image keeps what each ``install.sh`` printed (``/var/log/hhw-install/NAME.log``).
Every line of such a block must appear in that log; ``...`` in a line stands for
anything (a time, an ID), and a line that is only ``...`` skips lines.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

from . import releases
from .images import INSTALL_LOGS
from .machine import ContainerVM, Machine
from .stages import Stage

INCLUDE = re.compile(r"^```\{literalinclude\}\s+(\S+)")
FENCE_TEXT = "```text"


@dataclass(frozen=True)
class Quoted:
    """One output block a chapter quotes, with the install.sh section it follows."""

    section: str
    lines: tuple[str, ...]


def install_outputs(stage: Stage, script: str = "install.sh") -> list[Quoted]:
    """The ```text blocks introduced by "You should see" that follow an include of this stage's ``script``."""
    lines = stage.chapter.read_text().splitlines()
    quoted: list[Quoted] = []
    section: str | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        include = INCLUDE.match(line)
        if include:
            section = None
            if include.group(1).endswith(f"{stage.name}/{script}"):
                for option in lines[i + 1 : i + 6]:
                    m = re.match(r':start-after: "# \[start:([\w-]+)\]"', option)
                    if m:
                        section = m.group(1)
        elif line.startswith("#"):
            section = None
        elif line.strip() == FENCE_TEXT and section:
            before = " ".join(lines[max(0, i - 3) : i])
            end = lines.index("```", i + 1)
            if "You should see" in before:
                quoted.append(Quoted(section, tuple(lines[i + 1 : end])))
            i = end
        i += 1
    return quoted


def line_pattern(line: str) -> re.Pattern[str]:
    """A regex for one quoted line: ``...`` matches anything, runs of spaces any whitespace."""
    parts = [re.escape(p.strip()) for p in line.strip().split("...")]
    return re.compile(r".*".join(re.sub(r"(\\ )+", r"\\s+", p) for p in parts))


def check(machine: Machine, stage: Stage, script: str = "install.sh") -> int:
    """Assert every quoted line is in what ``script`` printed on this machine; return how many were checked.

    A cluster stage's scripts (install-controller.sh, install-node.sh) are kept as NAME-SCRIPT.log.

    Skipped where there is no such log (your own machine) and on Debian 12 (the chapters quote Debian 13).
    """
    if not isinstance(machine, ContainerVM):
        pytest.skip("what install.sh printed is kept on test VMs only")
    if releases.current() != "13":
        pytest.skip("the chapters quote Debian 13's output")
    # Cluster.run_script names every log NAME-SCRIPT.log, install.sh's too; a single machine's is NAME.log.
    log_name = f"{stage.name}.log" if script == "install.sh" and not stage.is_cluster else f"{stage.name}-{script}.log"
    log = machine.output(f"cat {INSTALL_LOGS}/{log_name}")
    log_lines = log.splitlines()
    missing = []
    checked = 0
    for block in install_outputs(stage, script):
        for line in block.lines:
            if not line.strip() or line.strip() == "...":
                continue
            checked += 1
            pattern = line_pattern(line)
            if not any(pattern.search(found) for found in log_lines):
                missing.append(f"[{block.section}] {line.strip()}")
    assert not missing, (
        f"{stage.chapter.name} quotes output that {stage.name}/{script} did not print "
        f"(see {INSTALL_LOGS}/{log_name} on the VM):\n" + "\n".join(missing)
    )
    return checked
