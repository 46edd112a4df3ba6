"""The hub restarting behind its own proxy (stage 05): does a running user server notice?

A round: alice's server is running; requests to it (GET /user/alice/api/status with her token,
through Traefik, every 50 ms) go on while ``systemctl restart jupyterhub`` runs; the hub is back
when its login page answers 200 again. Counted: requests sent, failed (and how), seconds until
the hub was back.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import requests

from tests.harness.hubclient import HubClient

from .common import Budget, logged_in, person, repeat, stage_vm, summary, write_result
from .spawn import ensure_running

INTERVAL = 0.05
AFTER = 2.0  # seconds of requests after the hub is back


def hammer(client: HubClient, token: str, stop: threading.Event, outcomes: Counter) -> None:
    """GET alice's server every INTERVAL until ``stop``; count each outcome (200, 502, ConnectionError...)."""
    while not stop.is_set():
        try:
            r = client.request("GET", "/user/alice/api/status", headers={"Authorization": f"token {token}"},
                               allow_redirects=False, timeout=10)  # fmt: skip
            outcomes[str(r.status_code)] += 1
        except requests.RequestException as exc:
            outcomes[type(exc).__name__] += 1
        time.sleep(INTERVAL)


def hub_back(client: HubClient, timeout: float = 120) -> float:
    """Seconds until /hub/login answers 200 (polled every 0.1 s)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            if client.get("/hub/login", timeout=5).status_code == 200:
                return time.monotonic() - t0
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the hub did not answer /hub/login within {timeout:.0f} s of its restart")


def run(rounds: int, budget: Budget) -> dict[str, object]:
    bench = "hub-restart"
    started = time.monotonic()
    with stage_vm(5, bench, shared=True) as (vm, hub):
        client, token = logged_in(hub, person(vm, "alice"))
        ensure_running(client, "alice")
        back: list[float] = []
        sent: list[int] = []
        failed: list[int] = []
        how: Counter = Counter()

        def one(i: int) -> str:
            outcomes: Counter = Counter()
            stop = threading.Event()
            worker = threading.Thread(target=hammer, args=(hub.client(), token, stop, outcomes), daemon=True)
            worker.start()
            time.sleep(1)
            t0 = time.monotonic()
            vm.run("systemctl restart jupyterhub")  # returns once the old hub has stopped and the new one started
            hub_back(hub.client())
            seconds = time.monotonic() - t0
            back.append(round(seconds, 3))
            time.sleep(AFTER)
            stop.set()
            worker.join(15)
            bad = sum(n for k, n in outcomes.items() if k != "200")
            sent.append(sum(outcomes.values()))
            failed.append(bad)
            how.update({k: n for k, n in outcomes.items() if k != "200"})
            return f"hub back in {seconds:.2f} s; {sent[-1]} requests to alice's server, {bad} failed"

        repeat(bench, rounds, budget, one)
        data = {
            "stage": "05-systemd",
            "request_interval_seconds": INTERVAL,
            "hub_back_seconds": {"samples": back, "summary": summary(back)},
            "requests_sent": sent,
            "requests_failed": failed,
            "failures_by_kind": dict(how),
        }
        write_result(bench, data, started=started, vm=vm)
    return data
