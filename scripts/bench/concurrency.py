"""Many users at once on one stage-05 VM: N people log in and start their servers at the same moment.

Per level N: how many servers became ready, p50/p95/last time to ready (from the common start,
login included), the hub's CPU seconds and peak memory (its systemd unit's accounting), the
servers' memory once up, and the messages of what failed. Each level is compared with the CPU
limit measured in the same run: N x (CPU seconds of one bare server start) / cores, the earliest
all N could be ready if starting servers were the only work.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from tests.harness.fixtures import Hub
from tests.harness.hubclient import HubClient
from tests.harness.machine import Machine
from tests.harness.users import login

from .common import Budget, logged_in, person, progress, stage_vm, summary, write_result
from .spawn import FORM, floor

LEVELS = (10, 25, 50)
POLL = 0.5  # each of N clients looks at its /lab twice a second (0.1 s would load the hub N times more)
TIMEOUT = 300  # seconds a user waits before counting as failed
CONFIG = "/etc/jupyterhub/jupyterhub_config.py"


def add_users(vm: Machine, hub: Hub, count: int) -> dict[str, str]:
    """Linux accounts u001..uNNN with passwords, allowed on the hub (a line appended to its config)."""
    names = [f"u{i:03d}" for i in range(1, count + 1)]
    passwords = {n: os.urandom(9).hex() for n in names}
    vm.run("for n in " + " ".join(names) + "; do id $n >/dev/null 2>&1 || useradd --create-home $n; done", timeout=300)
    vm.run("chpasswd", input="".join(f"{n}:{p}\n" for n, p in passwords.items()))
    vm.run(f"echo 'c.Authenticator.allowed_users |= {{f\"u{{i:03d}}\" for i in range(1, {count + 1})}}' >> {CONFIG}")
    vm.run("systemctl restart jupyterhub")
    hub.wait_up()
    return passwords


def unit_usage(vm: Machine) -> tuple[float, float]:
    """The hub process's CPU seconds so far (/proc/PID/stat) and its unit's memory now (MiB, systemd's accounting)."""
    out = vm.output("systemctl show jupyterhub -p MainPID -p MemoryCurrent")
    values = dict(line.split("=", 1) for line in out.splitlines())
    stat = vm.output(f"cat /proc/{values['MainPID']}/stat").rsplit(")", 1)[1].split()
    ticks = int(vm.output("getconf CLK_TCK"))
    cpu = sum(int(f) for f in stat[11:15]) / ticks  # utime stime cutime cstime
    mem = int(values["MemoryCurrent"]) / 2**20 if values["MemoryCurrent"].isdigit() else 0.0
    return cpu, mem


def servers_memory(vm: Machine) -> list[float]:
    """Memory (MiB) of each running user container, from ``docker stats``."""
    out = vm.output("docker stats --no-stream --format '{{.Name}} {{.MemUsage}}'", timeout=120)
    found = []
    units = {"KiB": 1 / 1024, "MiB": 1, "GiB": 1024, "B": 1 / 2**20}
    for line in out.splitlines():
        m = re.match(r"jupyter-u\d+ ([\d.]+)(KiB|MiB|GiB|B) ", line)
        if m:
            found.append(round(float(m.group(1)) * units[m.group(2)], 1))
    return found


def hub_message(page: str) -> str:
    """The message of the hub's error page (its first paragraph), user names blanked."""
    found = re.search(r"<p>\s*(.*?)\s*</p>", page, re.S)
    text = re.sub(r"<[^>]+>|\s+", " ", found.group(1) if found else page[:200]).strip()
    return re.sub(r"u\d{3}", "uNNN", text)[:200]


def one_user(base: str, name: str, password: str, start: threading.Event, t0: list[float]) -> dict[str, object]:
    """Wait for the common start, log in, ask for the server, wait until it serves /lab."""
    client = HubClient(base)
    start.wait()
    try:
        login(client, name, password)
        r = client.post("/hub/spawn", data={**FORM, "_xsrf": client.xsrf()}, allow_redirects=False, timeout=TIMEOUT)
        if r.status_code >= 400:
            return {"ok": False, "error": f"spawn refused: {r.status_code} {r.text[:200]}"}
        while True:
            r = client.get(f"/user/{name}/lab", timeout=30)
            if r.status_code == 200 and r.url.split(client.base_url, 1)[-1].startswith(f"/user/{name}/"):
                return {"ok": True, "seconds": round(time.monotonic() - t0[0], 3)}
            if r.status_code >= 500:  # the hub's page says the spawn failed: a browser stops here too
                return {"ok": False, "error": f"{r.status_code}: {hub_message(r.text)}"}
            if time.monotonic() - t0[0] > TIMEOUT:
                return {"ok": False, "error": f"not ready after {TIMEOUT} s"}
            time.sleep(POLL)
    except Exception as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}


def hub_errors(vm: Machine, since: float) -> list[str]:
    """The hub's warnings and errors since ``since``, user names blanked, most frequent first."""
    out = vm.run(f"journalctl -u jupyterhub --since=@{int(since)} --no-pager -o cat | grep -E '^\\[(W|E) '",
                 check=False).stdout  # fmt: skip
    found = Counter(re.sub(r"u\d{3}", "uNNN", re.sub(r"^\[\w [^]]*\] ", "", line))[:200] for line in out.splitlines())
    return [f"{n} x {msg}" for msg, n in found.most_common(8)]


def stop_all(vm: Machine, hub: Hub, admin: HubClient, token: str, names: list[str]) -> None:
    """Stop every server of u001..uNNN through the REST API (as an admin) and wait until none runs."""
    with ThreadPoolExecutor(10) as pool:
        list(pool.map(lambda n: admin.api("DELETE", f"/users/{n}/server", token), names))
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        running = vm.output("docker ps -q --filter name=jupyter-u | wc -l")
        if running == "0":
            return
        time.sleep(2)
    raise RuntimeError(f"{running} user containers still running 300 s after stopping them")


def run(levels: tuple[int, ...], budget: Budget) -> dict[str, object]:
    bench = "concurrency"
    started = time.monotonic()
    with stage_vm(5, bench) as (vm, hub):
        cores = int(vm.output("nproc"))
        passwords = add_users(vm, hub, max(levels))
        admin, token = logged_in(hub, person(vm, "alice"))
        bare = [floor(vm, "server")["cpu_seconds"] for _ in range(3)]
        bare_cpu = summary(bare)["p50"]
        progress(bench, f"one bare server start costs {bare_cpu:.2f} CPU seconds ({cores} cores)")
        results = []
        for n in levels:
            if budget.over():
                progress(bench, f"time budget ({budget.seconds:.0f} s) spent: N={n} left out")
                break
            names = list(passwords)[:n]
            cpu0, mem_peak = unit_usage(vm)[0], 0.0
            since = time.time()
            start, t0 = threading.Event(), [0.0]
            with ThreadPoolExecutor(n) as pool:
                futures = [pool.submit(one_user, hub.url, name, passwords[name], start, t0) for name in names]
                t0[0] = time.monotonic()
                start.set()
                said = time.monotonic()
                while not all(f.done() for f in futures):
                    mem_peak = max(mem_peak, unit_usage(vm)[1])
                    if time.monotonic() - said > 15:
                        progress(bench, f"N={n}: {sum(f.done() for f in futures)} of {n} done")
                        said = time.monotonic()
                    time.sleep(2)
                outcomes = [f.result() for f in futures]
            hub_cpu = unit_usage(vm)[0] - cpu0
            ok = [o["seconds"] for o in outcomes if o["ok"]]
            errors = Counter(str(o["error"]) for o in outcomes if not o["ok"])
            memory = servers_memory(vm)
            limit = n * bare_cpu / cores
            s = summary(ok)
            results.append({
                "users": n, "ready": len(ok), "failed": n - len(ok), "errors": dict(errors),
                "hub_errors": hub_errors(vm, since) if errors else [],
                "seconds_to_ready": {"samples": ok, "summary": s},
                "cpu_limit_seconds": round(limit, 2),
                "last_ready_over_cpu_limit": round(s["max"] / limit, 2) if ok else None,
                "hub_cpu_seconds": round(hub_cpu, 2), "hub_memory_peak_mib": round(mem_peak, 1),
                "server_memory_mib": {"samples": memory, "summary": summary(memory)},
            })  # fmt: skip
            progress(bench, f"N={n}: {len(ok)} ready, {n - len(ok)} failed; p50 {s.get('p50')} s, "
                            f"last {s.get('max')} s (CPU limit {limit:.1f} s); "
                            f"hub {hub_cpu:.1f} CPU s, {mem_peak:.0f} MiB")  # fmt: skip
            stop_all(vm, hub, admin, token, names)
        data = {
            "stage": "05-systemd",
            "poll_seconds": POLL,
            "timeout_seconds": TIMEOUT,
            "cores_in_vm": cores,
            "bare_server_cpu_seconds": {"samples": [round(b, 2) for b in bare], "summary": summary(bare)},
            "levels": results,
        }
        write_result(bench, data, started=started, vm=vm)
    return data
