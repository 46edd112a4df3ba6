"""The page "Check your own server" matches the checks, and a reader can install them as it says."""

from __future__ import annotations

import re

import pytest

from tests.harness import fixtures  # noqa: F401  (registers the sections its sentences point at)
from tests.harness.doctor import SECTIONS
from tests.harness.localcheck import SETUP
from tests.harness.server_checks import CHECKS
from tests.harness.stages import REPO

PAGE = REPO / "book" / "check-your-server.md"


def pins(path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.-]+)==(\S+)", line)
        if m:
            found[m.group(1).lower()] = m.group(2)
    return found


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.name)
def test_every_check_is_on_the_page(check):
    assert f"| `{check.name}` |" in PAGE.read_text(), f"{PAGE.name} has no row for {check.name}"


@pytest.mark.parametrize("section", sorted(SECTIONS, key=str), ids=str)
def test_every_section_a_check_points_at_exists(section):
    assert section.exists(), f"no heading '{section.title}' in chapter {section.chapter}"


def test_the_readme_and_the_page_give_the_commands_the_proof_runs():
    """The proof (test_target_local_passes_on_a_machine_built_by_the_book) runs SETUP: the same commands."""
    for text in ((REPO / "README.md").read_text(), PAGE.read_text()):
        for command in SETUP.split(" && "):
            assert command.replace("--quiet ", "") in text


def test_the_checks_pins_are_those_of_requirements_txt():
    check, full = pins(REPO / "requirements-check.txt"), pins(REPO / "requirements.txt")
    assert {"pytest", "requests", "websocket-client"} <= check.keys()
    assert {k: full.get(k) for k in check} == check
