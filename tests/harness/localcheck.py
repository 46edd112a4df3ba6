"""Check a machine as a reader checks their own server: ``pytest steps/NN --target local``, run inside it.

The project's files go in as a reader unpacks its archive; the checks get a venv of their own
(requirements-check.txt), apart from the hub's /opt/jupyterhub; then pytest runs there, as root,
with the commands of the README. The outer test reads the inner run's JUnit report.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .machine import VM_INSTALL_ENV, ContainerVM, docker
from .results import record
from .stages import REPO, Stage

CHECK_DIR = "/root/hub-the-hard-way"  # where a reader unpacked the project
CHECK_VENV = "/opt/hhw-check"  # the checks' own venv, never the hub's
REPORT = "/tmp/hhw-check.xml"
# What a chapter's Verification says the checks give on a machine built by the book.
CHAPTER_SAYS = re.compile(
    r"--target local[^\n]*\n```\s+"
    + r"\s+".join("In a test VM that finished this stage by the book, that gave".split())
    + r"\s+`(?P<passed>\d+) passed, (?P<skipped>\d+) skipped`"
)
# The README's commands, after the project's files are in CHECK_DIR.
SETUP = f"python3 -m venv {CHECK_VENV} && {CHECK_VENV}/bin/pip install --quiet -r requirements-check.txt"


@dataclass
class Outcome:
    """One test of the inner run: its name (e.g. ``test_your_server[hub_answers]``), outcome and message."""

    name: str
    outcome: str  # passed, failed, error or skipped
    message: str = ""


@dataclass
class CheckRun:
    """What ``pytest steps/NN --target local`` reported inside the machine."""

    exit_code: int
    output: str
    outcomes: list[Outcome] = field(default_factory=list)

    def named(self, name: str) -> Outcome:
        found = [o for o in self.outcomes if o.name == name]
        assert found, f"no test {name} in the run:\n{self.output[-3000:]}"
        return found[0]

    def count(self, outcome: str) -> int:
        return sum(o.outcome == outcome for o in self.outcomes)

    def summary(self) -> str:
        return ", ".join(f"{self.count(k)} {k}" for k in ("passed", "failed", "error", "skipped") if self.count(k))


def project_files() -> list[str]:
    """The project's files as its archive holds them (tracked and new, never caches or builds)."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         cwd=REPO, check=True, capture_output=True).stdout  # fmt: skip
    return [p for p in out.decode().split("\0") if p and (REPO / p).is_file()]


def install_checks(vm: ContainerVM) -> None:
    """Unpack the project into the VM and make the checks' venv, as the README tells a reader."""
    vm.run(f"rm -rf {CHECK_DIR} && mkdir -p {CHECK_DIR}")
    files = "\0".join(project_files()).encode()
    tar = subprocess.Popen(["tar", "-C", str(REPO), "--null", "-T", "-", "-c"],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE)  # fmt: skip
    assert tar.stdin is not None
    tar.stdin.write(files)
    tar.stdin.close()
    docker("exec", "-i", vm.name, "tar", "-C", CHECK_DIR, "-x", stdin=tar.stdout)
    tar.wait()
    vm.trust_host_ca()
    if vm.run(f"test -x {CHECK_VENV}/bin/pytest", check=False).returncode != 0:
        vm.run(SETUP, cwd=CHECK_DIR, env=VM_INSTALL_ENV, timeout=600)


def run_checks(vm: ContainerVM, stage: Stage, *args: str, env: dict[str, str] | None = None,
               target: tuple[str, ...] = ("--target", "local")) -> CheckRun:  # fmt: skip
    """``pytest steps/NN --target local ARGS`` in the VM, as root, from the project's directory."""
    command = (f"{CHECK_VENV}/bin/pytest steps/{stage.number:02d} {shlex.join(target)} -p no:cacheprovider "
               f"--junitxml={REPORT} -o junit_family=xunit2 {shlex.join(args)}")  # fmt: skip
    proc = vm.run(f"rm -f {REPORT}; {command}", cwd=CHECK_DIR, env=env or {}, check=False, timeout=1200)
    run = CheckRun(proc.returncode, proc.stdout + proc.stderr)
    report = vm.run(f"cat {REPORT}", check=False).stdout
    if report:
        for case in ET.fromstring(report).iter("testcase"):
            outcome, message = "passed", ""
            for kind in ("failure", "error", "skipped"):
                found = case.find(kind)
                if found is not None:
                    outcome = "failed" if kind == "failure" else kind
                    message = found.get("message", "")
            run.outcomes.append(Outcome(case.get("name", ""), outcome, message))
    return run


def trust_in_system(vm: ContainerVM, pem: str, name: str = "hhw-test-root") -> None:
    """Add a CA to the VM's system store (on a test VM, Pebble's root plays a public CA's part)."""
    vm.run(f"cat > /usr/local/share/ca-certificates/{name}.crt && update-ca-certificates >/dev/null", input=pem)


def distrust_in_system(vm: ContainerVM, name: str = "hhw-test-root") -> None:
    vm.run(f"rm -f /usr/local/share/ca-certificates/{name}.crt && update-ca-certificates --fresh >/dev/null")


def test_target_local_passes_on_a_machine_built_by_the_book(request: pytest.FixtureRequest) -> None:
    """``pytest steps/NN --target local`` inside this stage's test VM, as a reader runs it on their server:
    every check that can run there passes (those that need a test VM skip, saying why)."""
    machine, stage = request.getfixturevalue("machine"), request.getfixturevalue("stage")
    if not isinstance(machine, ContainerVM):
        pytest.skip("runs the checks inside a test VM; on your own server, you are running them now")
    request.getfixturevalue("hub")
    env = {}
    if stage.login == "pam":
        person = request.getfixturevalue("people").first()
        env = {"HHW_USER": person.name, "HHW_PASSWORD": person.password}
    if stage.serves_https:
        trust_in_system(machine, Path(request.getfixturevalue("root_ca")).read_text())
    try:
        started = time.monotonic()
        install_checks(machine)
        installed = time.monotonic()
        run = run_checks(machine, stage, env=env)
        seconds = {"install": round(installed - started, 1), "run": round(time.monotonic() - installed, 1)}
    finally:
        if stage.serves_https:
            distrust_in_system(machine)
    record(f"target-local-{stage.number:02d}", {**{o.outcome: run.count(o.outcome) for o in run.outcomes}, **seconds})
    bad = [f"{o.name}: {o.message}" for o in run.outcomes if o.outcome in ("failed", "error")]
    assert not bad and run.exit_code == 0, f"{run.summary()}:\n" + "\n".join(bad) + "\n\n" + run.output[-4000:]
    assert run.count("passed") >= 3, f"too little ran: {run.summary()}\n{run.output[-3000:]}"
    said = CHAPTER_SAYS.search(stage.chapter.read_text())
    assert said, f"{stage.chapter.name}'s Verification does not say what --target local gives (now: {run.summary()})"
    assert (int(said["passed"]), int(said["skipped"])) == (run.count("passed"), run.count("skipped")), (
        f"{stage.chapter.name} says --target local gives {said['passed']} passed, {said['skipped']} skipped; "
        f"this run: {run.summary()}"
    )
    print(f"pytest steps/{stage.number:02d} --target local in the VM: {run.summary()}")
