"""Spawn to ready, against its floors, with a breakdown of where the time goes, and variants side by side.

A round: POST the spawn form (or GET /hub/spawn without a form), then poll /user/NAME/lab every
0.1 s until her own server serves it through the proxy; then stop the server. On a Docker stage
each round is followed, on the same VM, by the floors: the same image run as a bare ``jupyter lab``
(no hub, polled the same way, inside the VM) and a bare ``docker run --rm IMAGE true``.

The breakdown of a Docker spawn uses the VM's own records, on the same clock as this machine (a
test VM is a container): Docker's events (container created, started), the server's log (listening)
and the hub's journal (it saw the server answer).
"""

from __future__ import annotations

import json
import shlex
import subprocess
import time
from dataclasses import dataclass
from datetime import datetime

from tests.harness.hubclient import HubClient
from tests.harness.machine import ContainerVM, Machine
from tests.harness.stages import REPO
from tests.harness.users import stop_server

from .common import (
    Budget,
    logged_in,
    person,
    progress,
    repeat,
    restart_unit,
    stage_vm,
    summary,
    vm_script,
    write_result,
)

POLL = 0.1  # seconds between two looks at /user/NAME/lab
IMAGE = "local/lab:1"
FORM = {"image": "JupyterLab"}  # stage 05's spawn form: the small JupyterLab image


def served(client: HubClient, name: str) -> bool:
    """True when /user/NAME/lab is answered by the user's own server (not the hub's pending page)."""
    r = client.get(f"/user/{name}/lab", timeout=30)
    return r.status_code == 200 and r.url.split(client.base_url, 1)[-1].startswith(f"/user/{name}/")


def spawn_to_ready(
    client: HubClient, name: str, form: dict[str, str] | None, timeout: float = 180
) -> tuple[float, float]:
    """Ask for the server, wait until it serves /lab; (wall-clock start, seconds to ready)."""
    started = time.time()
    t0 = time.monotonic()
    if form is None:
        r = client.get("/hub/spawn", allow_redirects=False, timeout=timeout)
    else:
        r = client.post("/hub/spawn", data={**form, "_xsrf": client.xsrf()}, allow_redirects=False, timeout=timeout)
    if r.status_code >= 400:
        raise RuntimeError(f"spawn of {name} refused: {r.status_code} {r.text[:300]}")
    while not served(client, name):
        if time.monotonic() - t0 > timeout:
            raise RuntimeError(f"{name}'s server did not serve /user/{name}/lab within {timeout:.0f} s")
        time.sleep(POLL)
    return started, time.monotonic() - t0


def ensure_running(client: HubClient, name: str) -> None:
    """Start the user's server (stage 05's form: the small image) unless it already serves /lab."""
    if not served(client, name):
        spawn_to_ready(client, name, FORM)


def _docker_time(stamp: str) -> float:
    """Docker's RFC 3339 nanosecond stamp as seconds since the epoch."""
    day, frac = stamp.rstrip("Z").split(".") if "." in stamp else (stamp.rstrip("Z"), "0")
    return datetime.fromisoformat(day + "+00:00").timestamp() + float("0." + frac)


def breakdown(vm: Machine, name: str, started: float, total: float) -> dict[str, float]:
    """Where a Docker spawn's seconds went, from Docker's events, the server's log and the hub's journal."""
    container = f"jupyter-{name}"
    events = vm.output(f"docker events --since {started:.3f} --until {time.time():.3f} "
                       f"--filter container={container} --format '{{{{.Action}}}} {{{{.TimeNano}}}}'")  # fmt: skip
    at = {}
    for line in events.splitlines():
        action, nanos = line.split()
        at.setdefault(action, int(nanos) / 1e9)
    logs = vm.run(f"docker logs -t {container} 2>&1 | grep -m1 'is running at'", check=False).stdout.split()
    journal = vm.output(f"journalctl -u jupyterhub --since=@{int(started)} -o short-unix --no-pager "
                        f"| grep -m1 'User {name} took' || true")  # fmt: skip
    if "create" not in at or "start" not in at or not logs or not journal:
        return {}
    listening = _docker_time(logs[0])
    hub_saw = float(journal.split()[0])
    ready = started + total
    return {
        "hub until container created": round(at["create"] - started, 3),
        "container created until started": round(at["start"] - at["create"], 3),
        "server start (import, listen)": round(listening - at["start"], 3),
        "hub polls until it sees the server": round(hub_saw - listening, 3),
        "proxy route until served": round(ready - hub_saw, 3),
    }


def floor(vm: Machine, mode: str, image: str = IMAGE) -> dict[str, float]:
    """A floor measured inside the VM (scripts/bench/vm/floor.py): 'server' or 'container'."""
    return json.loads(vm.output(f"python3 - {mode} {shlex.quote(image)}", input=vm_script("floor.py"), timeout=300))


# The image as it was before this benchmark's change to stage 03's Dockerfile: rfc3987-syntax installed.
BEFORE_IMAGE = "local/lab:before-rfc3987"
WHEEL = "rfc3987-syntax==1.1.0"  # the version jupyter-events pulled in when the change was made
WHEELS = REPO / ".cache" / "bench" / "wheels"


def has_rfc3987_syntax(vm: Machine, image: str) -> bool:
    """True when the image's Python can import rfc3987_syntax."""
    probe = "import importlib.util, sys; sys.exit(importlib.util.find_spec('rfc3987_syntax') is None)"
    return vm.run(f"docker run --rm {image} python -c {shlex.quote(probe)}", check=False).returncode == 0


def build_before_image(vm: ContainerVM) -> None:
    """Build BEFORE_IMAGE in the VM: the book's image with rfc3987-syntax put back (its wheel from PyPI)."""
    WHEELS.mkdir(parents=True, exist_ok=True)
    subprocess.run([str(REPO / ".venv" / "bin" / "pip"), "download", "--quiet", "--no-deps", "--only-binary=:all:",
                    "--disable-pip-version-check", "--dest", str(WHEELS), WHEEL],
                   check=True, capture_output=True)  # fmt: skip
    wheel = next(WHEELS.glob("rfc3987_syntax-*.whl")).name
    (WHEELS / "Dockerfile").write_text(
        f"FROM {IMAGE}\nUSER root\nCOPY {wheel} /tmp/\n"
        f"RUN pip install --no-cache-dir --no-index --no-deps /tmp/{wheel} && rm /tmp/{wheel}\nUSER jovyan\n"
    )
    vm.copy_in(WHEELS, "/root/hhw-bench-before")
    vm.run(f"docker build --quiet --tag {BEFORE_IMAGE} /root/hhw-bench-before", timeout=300)


@dataclass(frozen=True)
class Variant:
    """A setting tried side by side with the book's: shell commands that apply and revert it, the unit to restart."""

    name: str
    apply: str
    revert: str
    unit: str


CONFIG = "/etc/jupyterhub/jupyterhub_config.py"
# Not in the book's files (yet): the spawner itself waits for the server's port, every 0.1 s, so
# the hub's first look (its waits grow exponentially, with jitter) finds the server up.
PORT_WAIT = """
# hhw bench: the spawner waits for the server's port itself
from dockerspawner import DockerSpawner
from jupyterhub.utils import can_connect, exponential_backoff


class PortWaitingSpawner(DockerSpawner):
    async def start(self):
        ip, port = await super().start()
        await exponential_backoff(lambda: can_connect(ip, port), "the server's port never opened",
                                  start_wait=0.1, scale_factor=1, max_wait=0.1, timeout=self.http_timeout)
        return ip, port


c.JupyterHub.spawner_class = PortWaitingSpawner
"""

# Stage 05's variants, each alternated with the book's own configuration on one VM.
VARIANTS = (
    Variant("Traefik's default route delay (providersThrottleDuration 2 s)",
            "sed -i 's/providersThrottleDuration = \"100ms\"/providersThrottleDuration = \"2s\"/' "
            "/etc/traefik/traefik.toml",
            "sed -i 's/providersThrottleDuration = \"2s\"/providersThrottleDuration = \"100ms\"/' "
            "/etc/traefik/traefik.toml",
            "traefik"),
    Variant("the image before the change (rfc3987-syntax installed)",
            f"docker tag {IMAGE} local/lab:book && docker tag {BEFORE_IMAGE} {IMAGE}",
            f"docker tag local/lab:book {IMAGE}",
            ""),
    Variant("a spawner that waits for the port (not in the book)",
            f"cp -p {CONFIG} {CONFIG}.bench-saved && cat >> {CONFIG} <<'EOF'\n{PORT_WAIT}\nEOF",
            f"mv {CONFIG}.bench-saved {CONFIG}",
            "jupyterhub"),
)  # fmt: skip
BOOK = "the book's stage 05"


def run_local(rounds: int, budget: Budget) -> dict[str, object]:
    """Stage 02: the user's server as a local process."""
    bench = "spawn-local"
    started_bench = time.monotonic()
    with stage_vm(2, bench) as (vm, hub):
        client, token = logged_in(hub, person(vm, "alice"))
        samples: list[float] = []

        def one(i: int) -> str:
            _, seconds = spawn_to_ready(client, "alice", None)
            samples.append(round(seconds, 3))
            stop_server(client, "alice", token, timeout=120)
            return f"spawn {seconds:.2f} s"

        repeat(bench, rounds, budget, one)
        data = {"stage": "02-configuration", "spawner": "local process", "poll_seconds": POLL,
                "samples": samples, "summary": summary(samples)}  # fmt: skip
        write_result(bench, data, started=started_bench, vm=vm)
    return data


def run_docker(rounds: int, budget: Budget) -> dict[str, object]:
    """Stage 05: DockerSpawner behind Traefik under systemd, its floors, its breakdown, and the variants."""
    bench = "spawn-docker"
    started_bench = time.monotonic()
    with stage_vm(5, bench, shared=True) as (vm, hub):
        client, token = logged_in(hub, person(vm, "alice"))
        configs = [BOOK, *(v.name for v in VARIANTS)]
        spawns: dict[str, list[float]] = {c: [] for c in configs}
        parts: dict[str, list[dict[str, float]]] = {c: [] for c in configs}
        build_before_image(vm)
        book_image_has_it = has_rfc3987_syntax(vm, IMAGE)
        floors: dict[str, list[float]] = {"bare server": [], "bare container": [], "bare server, image before": []}
        cpu: list[float] = []

        def spawn_once(config: str) -> float:
            started, seconds = spawn_to_ready(client, "alice", FORM)
            found = breakdown(vm, "alice", started, seconds)
            stop_server(client, "alice", token, timeout=120)
            spawns[config].append(round(seconds, 3))
            if found:
                parts[config].append(found)
            return seconds

        def one(i: int) -> str:
            said = [f"{BOOK} {spawn_once(BOOK):.2f} s"]
            server = floor(vm, "server")
            floors["bare server"].append(round(server["seconds"], 3))
            cpu.append(round(server["cpu_seconds"], 2))
            floors["bare container"].append(round(floor(vm, "container")["seconds"], 3))
            floors["bare server, image before"].append(round(floor(vm, "server", BEFORE_IMAGE)["seconds"], 3))
            said.append(f"bare server {server['seconds']:.2f} s ({server['cpu_seconds']:.1f} CPU s), "
                        f"bare container {floors['bare container'][-1]:.2f} s")  # fmt: skip
            for v in VARIANTS:
                vm.run(v.apply)
                if v.unit:
                    restart_unit(vm, hub, v.unit)
                try:
                    said.append(f"{v.name} {spawn_once(v.name):.2f} s")
                finally:
                    vm.run(v.revert)
                    if v.unit:
                        restart_unit(vm, hub, v.unit)
            return "; ".join(said)

        repeat(bench, rounds, budget, one)
        floor_p50 = summary(floors["bare server"]).get("p50")
        results = {}
        for c in configs:
            s = summary(spawns[c])
            keys = parts[c][0].keys() if parts[c] else ()
            results[c] = {
                "samples": spawns[c],
                "summary": s,
                "ratio_to_bare_server_p50": round(s["p50"] / floor_p50, 2) if s.get("p50") and floor_p50 else None,
                "breakdown_samples": parts[c],
                "breakdown_p50": {k: summary([p[k] for p in parts[c]])["p50"] for k in keys},
            }
        data = {
            "stage": "05-systemd",
            "spawner": "DockerSpawner",
            "image": IMAGE,
            "book_image_has_rfc3987_syntax": book_image_has_it,
            "before_image": f"{IMAGE} with {WHEEL} installed again",
            "poll_seconds": POLL,
            "configurations": results,
            "floors": {k: {"samples": v, "summary": summary(v)} for k, v in floors.items()},
            "bare_server_cpu_seconds": {"samples": cpu, "summary": summary(cpu)},
        }
        write_result(bench, data, started=started_bench, vm=vm)
        progress(bench, f"{BOOK}: p50 {results[BOOK]['summary'].get('p50')} s, "
                        f"{results[BOOK]['ratio_to_bare_server_p50']} x the bare server")  # fmt: skip
    return data
