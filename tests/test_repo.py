"""Repo-level checks: `pytest steps/NN` works, code is ruff-clean, the README has two commands."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

from tests.harness.stages import REPO, all_stages
from tests.steps_args import expand

BIN = Path(sys.executable).parent


def test_short_stage_paths_expand():
    for stage in all_stages():
        assert expand(f"steps/{stage.number:02d}", REPO) == f"steps/{stage.name}"
        assert expand(f"steps/{stage.number}", REPO) == f"steps/{stage.name}"
        assert expand(f"steps/{stage.name}", REPO) == f"steps/{stage.name}"
    assert expand("steps/99", REPO) == "steps/99"  # pytest then says the path does not exist
    assert expand("steps", REPO) == "steps"


def test_pytest_steps_01_collects_only_stage_01():
    proc = subprocess.run([str(BIN / "pytest"), "steps/01", "--collect-only", "-q"],
                          cwd=REPO, capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    tests = [line for line in proc.stdout.splitlines() if "::" in line]
    assert tests and all(t.startswith("steps/01-install/") for t in tests), proc.stdout


def test_ruff_is_clean():
    for args in (["check", "."], ["format", "--check", "tests", "steps", "book", "conftest.py"]):
        proc = subprocess.run([str(BIN / "ruff"), *args], cwd=REPO, capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_readme_has_exactly_two_setup_commands():
    readme = (REPO / "README.md").read_text()
    block = re.search(r"## The two commands.*?```bash\n(.*?)```", readme, re.S)
    assert block, "README has no 'The two commands' block"
    commands = [line.split("#")[0].strip() for line in block.group(1).splitlines() if line.strip()]
    assert commands == ["make book", "make test"]


def test_ci_runs_the_readme_test_command():
    ci = (REPO / ".ci" / "run").read_text()
    assert "make test" in ci


def test_every_toml_file_of_the_steps_parses():
    """Traefik refuses a static or dynamic file that is not valid TOML (a table declared twice, say)."""
    for path in sorted((REPO / "steps").rglob("*.toml")):
        tomllib.loads(path.read_text())
