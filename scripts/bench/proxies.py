"""CHP against Traefik on one stage-05 VM and one user server, paired round by round.

Traefik is the book's (stage 05: systemd, file provider, access log). configurable-http-proxy
(already on the VM from stage 01) runs beside it as a transient unit on 127.0.0.1:8010, with one
route: /user/alice/ to alice's container, as the hub would add it. The load comes from inside the
VM (scripts/bench/vm/proxyload.py), so the SSH tunnel that the other benchmarks go through adds
nothing here.
"""

from __future__ import annotations

import json
import secrets
import shlex
import time

from .common import Budget, logged_in, person, repeat, stage_vm, summary, vm_script, write_result
from .spawn import ensure_running

PROXIES = {"traefik": "http://127.0.0.1:8000", "chp": "http://127.0.0.1:8010"}
CHP_API = "http://127.0.0.1:8011"
CONCURRENCY = (1, 10, 50)
REQUESTS = 200  # per proxy, concurrency level and round
WS_MESSAGES = 50  # kernel_info round trips per proxy and round
ROUTE_ROUNDS = 6  # rounds that also time a new route
HUB_PYTHON = "/opt/jupyterhub/bin/python"


def start_chp(vm, target: str) -> str:
    """Start configurable-http-proxy on the VM with one route, /user/alice -> ``target``; its API token."""
    token = secrets.token_hex(16)
    vm.run("systemctl stop hhw-bench-chp 2>/dev/null; systemctl reset-failed hhw-bench-chp 2>/dev/null; true")
    vm.run(f"systemd-run --unit=hhw-bench-chp --setenv=CONFIGPROXY_AUTH_TOKEN={token} configurable-http-proxy "
           "--ip 127.0.0.1 --port 8010 --api-ip 127.0.0.1 --api-port 8011 --log-level warn")  # fmt: skip
    add = (
        "import json, time, urllib.request\n"
        "for i in range(100):\n"
        "    try:\n"
        f"        r = urllib.request.Request('{CHP_API}/api/routes/user/alice', method='POST',\n"
        f"            data=json.dumps({{'target': '{target}'}}).encode(),\n"
        f"            headers={{'Authorization': 'token {token}'}})\n"
        "        urllib.request.urlopen(r, timeout=5); break\n"
        "    except OSError:\n"
        "        time.sleep(0.2)\n"
        "else:\n"
        "    raise SystemExit('configurable-http-proxy did not answer')\n"
    )
    vm.run("python3 -", input=add)
    return token


def ratios(a: list[float], b: list[float]) -> dict[str, object]:
    """b / a round by round, summarised; ``differs`` only when every round's ratio lies on one side of 1."""
    found = [round(y / x, 3) for x, y in zip(a, b, strict=False) if x > 0]
    return {"samples": found, "summary": summary(found),
            "differs": bool(found) and (min(found) > 1 or max(found) < 1)}  # fmt: skip


def run(rounds: int, budget: Budget) -> dict[str, object]:
    bench = "proxies"
    started = time.monotonic()
    with stage_vm(5, bench, shared=True) as (vm, hub):
        client, token = logged_in(hub, person(vm, "alice"))
        ensure_running(client, "alice")
        ip = vm.output("docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' jupyter-alice")
        chp_token = start_chp(vm, f"http://{ip}:8888")
        r = client.request("POST", "/user/alice/api/kernels", json={}, headers={"Authorization": f"token {token}"})
        r.raise_for_status()
        kernel = r.json()["id"]
        samples: dict[str, dict[str, list[float]]] = {p: {} for p in PROXIES}

        def one(i: int) -> str:
            order = list(PROXIES) if i % 2 == 0 else list(PROXIES)[::-1]
            settings = {"proxies": PROXIES, "order": order, "chp_api": CHP_API, "chp_token": chp_token,
                        "user": "alice", "token": token, "kernel": kernel, "round": i, "requests": REQUESTS,
                        "concurrency": list(CONCURRENCY), "ws_messages": WS_MESSAGES, "new_route": i < ROUTE_ROUNDS,
                        "routes_dir": "/var/lib/jupyterhub-proxy"}  # fmt: skip
            out = json.loads(vm.output(f"{HUB_PYTHON} - {shlex.quote(json.dumps(settings))}",
                                       input=vm_script("proxyload.py"), timeout=600))  # fmt: skip
            for p, found in out.items():
                for key, value in found.items():
                    samples[p].setdefault(key, []).append(value)
            return ", ".join(f"{k} traefik {out['traefik'][k]:.1f} / chp {out['chp'][k]:.1f}" for k in out["traefik"])

        repeat(bench, rounds, budget, one)
        vm.run("systemctl stop hhw-bench-chp", check=False)
        measurements = sorted(samples["traefik"])
        data = {
            "stage": "05-systemd",
            "unit": "milliseconds; each sample is one round's median",
            "requests_per_round": REQUESTS,
            "websocket_messages_per_round": WS_MESSAGES,
            "proxies": {p: {k: {"samples": v, "summary": summary(v)} for k, v in samples[p].items()} for p in PROXIES},
            "chp_over_traefik": {k: ratios(samples["traefik"][k], samples["chp"].get(k, [])) for k in measurements},
        }
        write_result(bench, data, started=started, vm=vm)
    return data
