"""What every benchmark shares: test VMs and their clean-up, progress lines, statistics, machine facts, results."""

from __future__ import annotations

import json
import math
import os
import platform
import shlex
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.harness import releases
from tests.harness.fixtures import Hub, Person, set_password
from tests.harness.hubclient import HubClient
from tests.harness.images import boot_stage, ensure_stage_image
from tests.harness.machine import ContainerVM, Machine, remove_session_containers
from tests.harness.stages import REPO, Stage, all_stages
from tests.harness.users import login
from tests.harness.versions import PROBES

RESULTS = REPO / "book" / "bench"  # one JSON per benchmark; the book's performance page reads them
STARTED = time.monotonic()

# The versions each results file records (the probes of book/intro.md's versions table).
VERSION_PARTS = ("Debian", "Python", "JupyterHub", "JupyterLab", "DockerSpawner", "Docker Engine", "Traefik",
                 "jupyterhub-traefik-proxy", "configurable-http-proxy", "Node.js")  # fmt: skip


def progress(bench: str, message: str) -> None:
    """One line per round, with the time since ``make bench`` started."""
    print(f"[bench {time.monotonic() - STARTED:5.0f} s] {bench}: {message}", flush=True)


class Budget:
    """A benchmark's time limit: loops ask ``left()`` before each round and stop early when it runs out."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def over(self) -> bool:
        return self.left() <= 0


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100), linear between the two nearest samples (as numpy's default)."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary(values: list[float], digits: int = 3) -> dict[str, float | int]:
    """n, p50, p95, min and max of some samples."""
    if not values:
        return {"n": 0}
    p50, p95 = percentile(values, 50), percentile(values, 95)
    return {"n": len(values), "p50": round(p50, digits), "p95": round(p95, digits),
            "min": round(min(values), digits), "max": round(max(values), digits)}  # fmt: skip


def stage(number: int) -> Stage:
    return next(s for s in all_stages() if s.number == number)


def install_signal_handlers() -> None:
    """SIGTERM stops ``make bench`` like Ctrl-C does, so the ``finally`` blocks remove the VMs."""

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, stop)


def clean_up() -> None:
    """Remove every VM and volume this run started (the harness's own session clean-up)."""
    remove_shared()
    remove_session_containers()


_SHARED: dict[int, tuple[ContainerVM, Hub]] = {}  # stage -> a VM that several benchmarks use in turn


@contextmanager
def stage_vm(number: int, purpose: str, *, shared: bool = False) -> Iterator[tuple[ContainerVM, Hub]]:
    """A test VM booted from the saved image of stage ``number`` and its hub, answering; removed after.

    A ``shared`` VM is booted once and kept for the next benchmark that asks for one of the same stage
    (booting copies the stage's Docker data: up to a minute); ``remove_shared()`` removes it.
    """
    if shared and number in _SHARED:
        yield _SHARED[number]
        return
    s = stage(number)
    started = time.monotonic()
    vm = boot_stage(ensure_stage_image(s), purpose=f"bench-{purpose}")
    try:
        hub = Hub(vm, s, vm.loopback_url(8000))
        if (s.path / "start.sh").exists():
            hub.start()
        hub.wait_up()
        progress(purpose, f"stage {number:02d} VM {vm.name} up in {time.monotonic() - started:.0f} s")
    except BaseException:
        vm.remove()
        raise
    if shared:
        _SHARED[number] = (vm, hub)
        yield vm, hub
        return
    try:
        yield vm, hub
    finally:
        vm.remove()


def remove_shared() -> None:
    """Remove the VMs that benchmarks shared."""
    while _SHARED:
        vm, _ = _SHARED.popitem()[1]
        vm.remove()


def person(vm: Machine, name: str) -> Person:
    """A Linux account on the VM (made if missing) with a fresh password."""
    vm.run(f"id {name} >/dev/null 2>&1 || useradd --create-home {name}")
    return set_password(vm, name)


def logged_in(hub: Hub, who: Person) -> tuple[HubClient, str]:
    """A client logged in as ``who`` and an API token of theirs."""
    client = login(hub.client(), who.name, who.password)
    return client, client.create_token(who.name, note="benchmark")


def restart_unit(vm: Machine, hub: Hub, unit: str) -> None:
    """Restart a unit and wait until the hub's login page answers through the proxy again."""
    vm.run(f"systemctl restart {unit}")
    hub.wait_up()


def host_facts() -> dict[str, object]:
    """The machine that measured: cores, memory, kernel, its Debian, and how busy it was."""
    meminfo = Path("/proc/meminfo").read_text().split()
    memory_kib = int(meminfo[meminfo.index("MemTotal:") + 1])
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.machine())  # fmt: skip
    debian = Path("/etc/debian_version")
    return {
        "cores": os.cpu_count(),
        "cpu": model,
        "memory_gib": round(memory_kib / 2**20, 1),
        "kernel": platform.release(),
        "host_debian": debian.read_text().strip() if debian.exists() else None,
        "load_average_1min": round(os.getloadavg()[0], 2),
    }


def vm_facts(vm: Machine) -> dict[str, object]:
    """The test VM's Debian and the versions of the hub's parts it has (missing parts left out); one command."""
    script = "\n".join(f"printf '%s\\t%s\\n' {shlex.quote(part)} \"$( ({PROBES[part]}) 2>/dev/null | head -1)\""
                       for part in VERSION_PARTS)  # fmt: skip
    found = {}
    for line in vm.output(script, timeout=120).splitlines():
        part, _, value = line.partition("\t")
        if value.strip():
            found[part] = value.strip()
    return {"debian_release": releases.current(), "versions": found}


def write_result(name: str, data: dict[str, object], *, started: float, vm: Machine | None = None) -> Path:
    """Write book/bench/NAME.json: what was measured, on which machine, and when."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    record = {
        "benchmark": name,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seconds_taken": round(time.monotonic() - started, 1),
        "host": {**host_facts(), "load_average_1min_at_start": BUSY_AT_START},
        **(vm_facts(vm) if vm is not None else {}),
        **data,
    }
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(record, indent=1) + "\n")
    progress(name, f"written {path.relative_to(REPO)}")
    return path


BUSY_AT_START = round(os.getloadavg()[0], 2)


def repeat(bench: str, rounds: int, budget: Budget, one: Callable[[int], str]) -> int:
    """Call ``one(i)`` for up to ``rounds`` rounds within the budget, printing what each returns; rounds done."""
    done = 0
    for i in range(rounds):
        if budget.over():
            progress(bench, f"time budget ({budget.seconds:.0f} s) spent after {done} rounds")
            break
        progress(bench, f"round {i + 1}/{rounds}: {one(i)}")
        done += 1
    return done


def vm_script(name: str) -> str:
    """The text of a script in scripts/bench/vm/, to run with the VM's Python (``python3 - ARGS``)."""
    return (Path(__file__).parent / "vm" / name).read_text()
