"""The drift run's rewrite: a stage's files with the newest releases instead of the pins.

``make test-latest`` (``scripts/latest``) builds stage images from a copy of each step directory
in which every pin of a Python or npm package is lifted:

    pip install jupyterhub==6.1.1        ->  pip install --upgrade jupyterhub
    npm install "configurable-http-proxy@$chp"  ->  npm install "configurable-http-proxy@latest"
    requirements*.txt: jupyterhub==6.1.1 ->  jupyterhub

Debian packages stay as they are (the release is the pin). Only the copy on the build VM is
rewritten, never the repository. A package named in the hold list keeps its pin (the runner holds a
package whose newest release cannot be installed at all, so the later stages can still be tried).
An ``install.sh`` line that installs unpinned packages says which ones when it fails, so the runner
knows whom to hold.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

ENV = "HHW_LATEST"  # set (to the run's date) by scripts/latest: build stage images with the newest releases
HOLD_ENV = "HHW_LATEST_HOLD"  # space-separated packages that keep their pins in this run
FAILED = "[hhw-latest] this command failed with the newest releases of:"
FAILED_EXIT = 97

_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]*"
PIP_LINE = re.compile(r"\bpip3? install\b")
PIP_PIN = re.compile(rf"(?<![\w.@/-])({_NAME})(\[[^\]\s]*\])?==([\w.+!-]+)")
NPM_LINE = re.compile(r"\bnpm (?:install|i)\b")
NPM_PIN = re.compile(rf"(?<![\w.-])((?:@{_NAME}/)?{_NAME})@(\$\{{?\w+\}}?|\d[\w.+-]*)")
REQUIREMENTS = re.compile(r"^requirements[\w.-]*\.txt$")


def enabled() -> bool:
    """True in a drift run (HHW_LATEST set)."""
    return bool(os.environ.get(ENV))


def run_stamp() -> str:
    return os.environ.get(ENV, "")


def holds() -> frozenset[str]:
    return frozenset(normalise(n) for n in os.environ.get(HOLD_ENV, "").split())


def normalise(name: str) -> str:
    """PyPI's comparison of names (jupyterhub_idle_culler == jupyterhub-idle-culler)."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class Pin:
    """One pinned package in a step file."""

    kind: str  # "pip" or "npm"
    name: str
    version: str  # the pinned version on this Debian release ("" when not found)
    file: str  # relative to the step directory

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "name": self.name, "pinned": self.version, "file": self.file}


def rewritable(path: Path) -> bool:
    """Files whose pins a drift run lifts: shell scripts, Dockerfiles, requirements files."""
    return path.suffix == ".sh" or path.name == "Dockerfile" or bool(REQUIREMENTS.match(path.name))


def _shell_value(text: str, var: str, release: str) -> str:
    """A version held in a shell variable: the ``case`` branch for this Debian release, else ``*)``, else
    the last plain assignment."""
    branches = dict(re.findall(rf"^\s*([\w*|]+)\)\s*{re.escape(var)}=([\w.+-]+)\s*;;", text, re.M))
    for key, value in branches.items():
        if release in key.split("|"):
            return value
    if "*" in branches:
        return branches["*"]
    plain = re.findall(rf"^\s*{re.escape(var)}=([\w.+-]+)\s*$", text, re.M)
    return plain[-1] if plain else ""


def pins_in(text: str, file: str, release: str) -> list[Pin]:
    """The pins in one step file's text."""
    found: list[Pin] = []
    requirements = bool(REQUIREMENTS.match(Path(file).name))
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            continue
        code = line
        if requirements or PIP_LINE.search(code):
            found += [Pin("pip", normalise(m.group(1)), m.group(3), file) for m in PIP_PIN.finditer(code)]
        if NPM_LINE.search(code):
            for m in NPM_PIN.finditer(code):
                version = m.group(2)
                if version.startswith("$"):
                    version = _shell_value(text, version.strip("${}"), release)
                found.append(Pin("npm", m.group(1), version, file))
    return found


def stage_pins(step_dir: Path, release: str) -> list[Pin]:
    """Every pin in a step directory's files (tests excepted), in file order."""
    pins: list[Pin] = []
    for path in sorted(step_dir.rglob("*")):
        rel = path.relative_to(step_dir).as_posix()
        if path.is_file() and rewritable(path) and not rel.startswith("test_"):
            pins += pins_in(path.read_text(), rel, release)
    return pins


def rewrite(text: str, file: str, hold: frozenset[str] = frozenset()) -> tuple[str, list[str]]:
    """The file's text with its pins lifted (except ``hold``), and the packages it lifted."""
    lifted: list[str] = []
    shell = file.endswith(".sh")
    requirements = bool(REQUIREMENTS.match(Path(file).name))
    out = []
    in_heredoc = None
    for line in text.splitlines(keepends=True):
        body, newline = (line[:-1], "\n") if line.endswith("\n") else (line, "")
        if in_heredoc:
            out.append(line)
            if body.strip() == in_heredoc:
                in_heredoc = None
            continue
        heredoc = re.search(r"<<-?\s*'?\"?(\w+)", body) if shell else None
        comment = body.lstrip().startswith("#")
        here: list[str] = []

        def lift_pip(m: re.Match[str], here: list[str] = here) -> str:
            if normalise(m.group(1)) in hold:
                return m.group(0)
            here.append(normalise(m.group(1)))
            return m.group(1) + (m.group(2) or "")

        def lift_npm(m: re.Match[str], here: list[str] = here) -> str:
            if m.group(1) in hold:
                return m.group(0)
            here.append(m.group(1))
            return f"{m.group(1)}@latest"

        if not comment and (requirements or PIP_LINE.search(body)):
            body = PIP_PIN.sub(lift_pip, body)
            if here and not requirements:
                body = re.sub(r"\b(pip3? install)\b", r"\1 --upgrade", body, count=1)
        if not comment and NPM_LINE.search(body):
            body = NPM_PIN.sub(lift_npm, body)
        if here and shell and not body.rstrip().endswith(("\\", "&&", "|")):
            names = " ".join(here)
            body += f' || {{ echo "{FAILED} {names}" >&2; exit {FAILED_EXIT}; }}'
        lifted += here
        out.append(body + newline)
        if heredoc:
            in_heredoc = heredoc.group(1)
    return "".join(out), lifted


def failed_packages(output: str) -> list[str]:
    """The packages an install.sh line named when it failed (see ``rewrite``)."""
    names: list[str] = []
    for line in output.splitlines():
        if line.startswith(FAILED):
            names += [n for n in line[len(FAILED) :].split() if n not in names]
    return names
