"""Let ``pytest steps/05`` mean ``pytest steps/05-systemd``.

Loaded early through ``addopts = -p tests.steps_args`` (a conftest.py would be too late):
pytest refuses a path that does not exist before any conftest is read.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

SHORT = re.compile(r"^(?P<base>(?:.*/)?steps)/(?P<num>\d{1,2})(?P<rest>(?:/.*)?(?:::.*)?)$")


def expand(arg: str, cwd: Path) -> str:
    """``steps/5`` or ``steps/05`` -> ``steps/05-name`` when exactly one such directory exists."""
    m = SHORT.match(arg)
    if not m or (cwd / arg.split("::", 1)[0]).exists():
        return arg
    matches = sorted((cwd / m["base"]).glob(f"{int(m['num']):02d}-*"))
    if len(matches) != 1:
        return arg
    return f"{m['base']}/{matches[0].name}{m['rest']}"


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser: pytest.Parser, args: list[str]) -> None:
    cwd = Path.cwd()
    args[:] = [expand(a, cwd) for a in args]
