"""Stage 10: services: the idle culler, the hub's metrics in Prometheus, tokens for scripts with one job each.

People log in through the OpenID Connect provider of stage 09 (tests/harness/oidc.py).
"""

from __future__ import annotations

import html
import json
import math
import shlex
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

import pytest

from tests.harness import browser
from tests.harness.chapter_outputs import check as check_chapter_outputs
from tests.harness.hubclient import HubClient
from tests.harness.localcheck import test_target_local_passes_on_a_machine_built_by_the_book  # noqa: F401
from tests.harness.machine import ContainerVM, Machine
from tests.harness.ports import listeners
from tests.harness.results import record
from tests.harness.secrets_audit import assert_no_leaks, remember_secret, secret_file_problems
from tests.harness.server_checks import test_your_server  # noqa: F401  (the checks of your own server)
from tests.harness.users import container, read_text, server_state, volume_exists, write_text
from tests.harness.waits import wait_for

FORM = {"image": "JupyterLab", "size": "small"}
SECRETS = "/etc/jupyterhub/secrets"
PROMETHEUS_TOKEN = "/etc/prometheus/jupyterhub_token"
PROMETHEUS = "http://127.0.0.1:9090"

# The scopes of each role (jupyterhub_config.py), as the chapter lists them.
ROLES = {
    "idle-culler": {"list:users", "read:users:activity", "read:servers", "delete:servers"},
    "prometheus": {"read:metrics"},
    "monitoring": {"list:users", "read:users:activity", "read:servers"},
    "server-stopper": {"delete:servers!group=physics", "read:servers!group=physics"},
}

# ... and what the hub makes of them: each token's scopes, with those the scopes contain (read:servers
# contains read:users:name; a filter carries over).
EXPANDED = {
    "idle-culler": ROLES["idle-culler"] | {"read:users:name"},
    "prometheus": ROLES["prometheus"],
    "monitoring": ROLES["monitoring"] | {"read:users:name"},
    "server-stopper": ROLES["server-stopper"] | {"read:users:name!group=physics"},
}

# What the hub answers, quoted in the chapter and the troubleshooting page.
NO_METRICS = "Access to metrics requires scope 'read:metrics'"
NOT_ADMIN_USERS = "Action is not authorized with current scopes; requires any of [admin:users]"
NOT_DELETE = "Action is not authorized with current scopes; requires any of [delete:servers]"
NOT_START = "Action is not authorized with current scopes; requires any of [start:servers]"
STOPPER_REFUSED = "hub-stop-server: 404 No access to resources or resources not found"
STALE_COPY = "server returned HTTP status 403 Forbidden"

# The queries the chapter shows, each checked against the running Prometheus.
QUERIES = {
    "hub up": 'up{job="jupyterhub"}',
    "running servers": "jupyterhub_running_servers",
    "spawn time, 90th percentile, last hour": (
        "histogram_quantile(0.9, sum by (le) "
        '(rate(jupyterhub_server_spawn_duration_seconds_bucket{status="success"}[1h])))'
    ),
    "spawns in the last hour": 'sum(increase(jupyterhub_server_spawn_duration_seconds_count{status="success"}[1h]))',
    "hub errors per second": 'sum(rate(jupyterhub_request_duration_seconds_count{code=~"5.."}[5m])) or vector(0)',
}

# The culling test's settings: a short timeout, checked often, servers reporting often.
SHORT = {"timeout": 40, "cull_every": 10, "activity_interval": 10}
CULLER_SED = (
    f"s/--timeout=3600/--timeout={SHORT['timeout']}/; s/--cull-every=300/--cull-every={SHORT['cull_every']}/; "
    f's/"JUPYTERHUB_ACTIVITY_INTERVAL": "60"/"JUPYTERHUB_ACTIVITY_INTERVAL": "{SHORT["activity_interval"]}"/'
)


def service_token(machine: Machine, name: str) -> str:
    """The token of a service the hub does not start (its file in the hub's secrets, root's)."""
    token = machine.output(f"cat {SECRETS}/{name}_token")
    remember_secret("API token", token)
    return token


def culler_token(machine: Machine) -> str:
    """The token the hub made for the idle culler, from the culler's environment (root can read it)."""
    pid = machine.output("pgrep -f 'python3 -m [j]upyterhub_idle_culler'").split()[0]
    env = machine.output(f"tr '\\0' '\\n' < /proc/{pid}/environ")
    token = next(line.split("=", 1)[1] for line in env.splitlines() if line.startswith("JUPYTERHUB_API_TOKEN="))
    remember_secret("API token", token)
    return token


def message(r) -> str:
    """The hub's message in a JSON error answer."""
    try:
        return r.json().get("message", "")
    except ValueError:
        return r.text[:300]


def prometheus(machine: Machine, query: str) -> list[dict]:
    """The result of an instant query, from Prometheus' HTTP API on the machine's loopback."""
    out = machine.output(f"curl -sf {PROMETHEUS}/api/v1/query --data-urlencode {shlex.quote('query=' + query)}")
    answer = json.loads(out)
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


def value(machine: Machine, query: str) -> float | None:
    """The single value of a query (None when it has no result)."""
    result = prometheus(machine, query)
    return float(result[0]["value"][1]) if result else None


@pytest.fixture(scope="module")
def admin(hub, people) -> tuple[HubClient, str]:
    """alice (the group staff: an admin) logged in, and an API token of hers."""
    client = hub.session(people["alice"])
    return client, client.create_token("alice", note="stage 10 tests")


def running(hub, admin) -> set[str]:
    """Who has a server running, as an admin sees it."""
    client, token = admin
    r = client.api("GET", "/users?state=active", token)
    r.raise_for_status()
    return {u["name"] for u in r.json()}


def stop(hub, admin, *names: str) -> None:
    """Stop these users' servers (an admin's request) and wait until they are gone."""
    client, token = admin
    for name in names:
        user = client.api("GET", f"/users/{name}", token)
        if user.status_code == 404:  # never logged in: no server
            continue
        if user.json()["servers"]:
            client.api("DELETE", f"/users/{name}/server", token)
    for name in names:
        wait_for(f"{name}'s server to stop", lambda n=name: not client.api("GET", f"/users/{n}", token).json().get(
            "servers"), timeout=90)  # fmt: skip


def start(hub, people, name: str) -> HubClient:
    """``name`` logs in and starts a server with the form's defaults (if none runs)."""
    client = hub.session(people[name])
    client.ensure_server(name, data=FORM)
    return client


# -- the idle culler --------------------------------------------------------------------


@dataclass
class Culling:
    """What happened with a short culler timeout: bob idle, carol busy."""

    seconds_idle_when_culled: float = 0
    seconds_from_start_to_culled: float = 0
    carol_seconds_active: float = 0
    carol_running_after: bool = False
    bob_container_after: dict | None = None
    bob_volume_after: bool = False
    log: str = ""
    note: str = field(default_factory=lambda: f"written at {time.time():.0f}")


def seconds_since(timestamp: str, now: float) -> float:
    return now - datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


@pytest.fixture(scope="module")
def culling(hub, people, admin) -> Iterator[Culling]:
    """The culler with a 40 s timeout, checking every 10 s, servers reporting every 10 s: bob saves a file and
    leaves his server idle, carol keeps hers busy, until bob's is culled and carol's has been up long enough."""
    stop(hub, admin, "bob", "carol")
    found = Culling()
    client, token = admin
    since = hub.machine.clock()
    with hub.edited_config(sed=CULLER_SED):
        bob = start(hub, people, "bob")
        write_text(bob, "bob", "notes.txt", found.note)  # his last activity
        bob_started = time.time()
        carol = start(hub, people, "carol")
        carol_started = time.time()
        last_activity = None
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            # carol works: a request to her server's API every few seconds
            r = carol.get("/user/carol/api/contents", headers={"X-XSRFToken": carol.xsrf("/user/carol/")})
            assert r.status_code == 200, f"carol's server did not answer: {r.status_code}"
            state = server_state(client, "bob", token)
            now = time.time()
            if state:
                last_activity = state.get("last_activity") or last_activity
            elif not found.seconds_from_start_to_culled:
                found.seconds_from_start_to_culled = now - bob_started
                found.seconds_idle_when_culled = seconds_since(last_activity, now) if last_activity else 0
            # carol must stay busy for longer than timeout + two rounds of the culler + a report
            enough = SHORT["timeout"] + 2 * SHORT["cull_every"] + 2 * SHORT["activity_interval"]
            if found.seconds_from_start_to_culled and now - carol_started > enough:
                break
            time.sleep(4)
        found.carol_seconds_active = time.time() - carol_started
        found.carol_running_after = bool(server_state(client, "carol", token))
        found.bob_container_after = container(hub.machine, "jupyter-bob")
        found.bob_volume_after = volume_exists(hub.machine, "jupyterhub-user-bob")
        found.log = hub.machine.journal("jupyterhub", since=since)
    record("idle-culler", {**SHORT, **{k: round(v, 1) for k, v in vars(found).items() if isinstance(v, float)}})
    yield found


@pytest.mark.disruptive
def test_an_idle_server_is_culled_within_the_timeout(culling):
    """bob's server, idle, is stopped once idle longer than --timeout (plus at most one --cull-every round and
    the time the stop takes); the culler's log says why."""
    assert culling.seconds_from_start_to_culled, "bob's server was never culled (waited 300 s)"
    assert culling.seconds_idle_when_culled >= SHORT["timeout"]
    assert "Culling server bob (inactive for" in culling.log
    assert culling.bob_container_after is None, "the culled server's container is still there"
    assert "DELETE /hub/api/users/bob/server (idle-culler@" in culling.log


@pytest.mark.disruptive
def test_an_active_server_is_not_culled(culling):
    """carol's server, used every few seconds for longer than timeout + two culler rounds, keeps running."""
    assert culling.carol_seconds_active > SHORT["timeout"] + 2 * SHORT["cull_every"]
    assert culling.carol_running_after
    assert "Culling server carol" not in culling.log


@pytest.mark.disruptive
def test_a_culled_users_file_is_there_when_the_server_starts_again(hub, people, culling):
    """bob's work directory is his volume: the culler stopped the container, the volume and his file stayed."""
    assert culling.bob_volume_after, "bob's volume went with his server"
    bob = start(hub, people, "bob")
    assert read_text(bob, "bob", "notes.txt") == culling.note


@pytest.mark.fault
def test_the_cullers_token_cannot_create_users(hub, machine):
    """The culler's role has exactly its four scopes: it lists users, and creating one is refused."""
    token = culler_token(machine)
    client = hub.client()
    me = client.api("GET", "/user", token).json()
    assert me["kind"] == "service" and me["name"] == "idle-culler"
    assert set(me["scopes"]) == EXPANDED["idle-culler"]
    assert client.api("GET", "/users", token).status_code == 200
    r = client.api("POST", "/users/hhw-never-created", token)
    if r.status_code == 201:  # a culler with admin rights: undo, then fail
        client.api("DELETE", "/users/hhw-never-created", token)
    assert r.status_code == 403
    assert message(r) == NOT_ADMIN_USERS
    assert client.api("POST", "/users/hhw-never-created/server", token).status_code == 403


def test_each_service_has_the_scopes_of_its_role(hub, machine, admin):
    """What the hub says each service may do is what the chapter lists, and no more; its journal names them."""
    client, token = admin
    invocation = machine.output("systemctl show -p InvocationID --value jupyterhub")
    log = machine.output(f"journalctl --no-pager -o cat _SYSTEMD_INVOCATION_ID={invocation}")
    assert "Starting managed service idle-culler" in log
    for name in ("prometheus", "monitoring", "server-stopper"):
        assert f"Adding external service {name}" in log
    assert "Could not load pycurl" in log  # the culler's warning: harmless, it uses Tornado's client
    for service in ROLES:
        r = client.api("GET", f"/services/{service}", token)
        assert r.status_code == 200, f"{service}: {r.status_code} {r.text[:200]}"
        assert r.json()["roles"] == [service if service != "prometheus" else "metrics"]
    for name in ("monitoring", "server_stopper", "prometheus"):
        me = client.api("GET", "/user", service_token(machine, name)).json()
        assert set(me["scopes"]) == EXPANDED[name.replace("_", "-")], f"{name}: {sorted(me['scopes'])}"


# -- metrics --------------------------------------------------------------------------


def test_prometheus_listens_on_loopback_only_and_has_its_token(machine):
    """prometheus.service is enabled and running, on 127.0.0.1:9090 only; its copy of the token is its own."""
    assert machine.output("systemctl is-enabled prometheus") == "enabled"
    assert machine.output("systemctl is-active prometheus") == "active"
    assert listeners(machine, 9090) == ["127.0.0.1:9090"]
    assert machine.output(f"stat -c '%a %U %G' {PROMETHEUS_TOKEN}") == "600 prometheus prometheus"
    assert machine.output(f"cmp -s {PROMETHEUS_TOKEN} {SECRETS}/prometheus_token && echo same") == "same"
    # Port 9100 (the node exporter Debian recommends) stays closed.
    assert listeners(machine, 9100) == []


@pytest.mark.fault
def test_metrics_without_the_right_token_give_no_metrics(hub, machine):
    """/hub/metrics (through the proxy) without a token, or with a token without read:metrics: 403, no
    metrics; with Prometheus' token: the metrics, and that token reads nothing else."""
    client = hub.client()
    anonymous = client.get("/hub/metrics")
    assert anonymous.status_code == 403
    assert NO_METRICS in html.unescape(anonymous.text)
    assert "jupyterhub_running_servers" not in anonymous.text
    other = client.get("/hub/metrics", headers={"Authorization": f"token {service_token(machine, 'monitoring')}"})
    assert other.status_code == 403
    assert "jupyterhub_running_servers" not in other.text
    token = service_token(machine, "prometheus")
    metrics = client.get("/hub/metrics", headers={"Authorization": f"Bearer {token}"})
    assert metrics.status_code == 200
    assert "jupyterhub_running_servers" in metrics.text
    assert client.api("GET", "/users", token).status_code == 403


def known(machine: Machine, query: str) -> float | None:
    """The query's value once it has one that is a number (not NaN), else None."""
    found = value(machine, query)
    return found if found is not None and not math.isnan(found) else None


def servers_seen(hub, admin, machine: Machine) -> str:
    """What Prometheus, its target, the hub's own gauge (read at the target's URL with Prometheus' token) and the
    API say of running servers, for a report."""
    target = hub_target(machine)
    gauge = machine.output(
        f'curl -s -H "Authorization: Bearer $(cat {PROMETHEUS_TOKEN})" {shlex.quote(target["scrapeUrl"])}'
        " | grep '^jupyterhub_running_servers' || echo 'no such line'",
        check=False,
    )
    return (
        f"Prometheus: {value(machine, QUERIES['running servers'])}; its target: {target['health']}, last"
        f" scrape {target['lastScrape']} {target['lastError']!r}; the hub's gauge: {gauge};"
        f" running according to the API: {sorted(running(hub, admin))}"
    )


def boxed(found: float | None) -> list[float] | None:
    """A number in a list, so that 0 counts for wait_for (which waits for something true)."""
    return None if found is None else [found]


def test_prometheus_sees_the_hub_up_and_the_servers_running(hub, people, admin, machine, request):
    """alice has a server, then bob starts one (nobody else has one): Prometheus' jupyterhub_running_servers
    goes to 2, the hub target is up; every query of the chapter answers; a screenshot of the graph page."""
    stop(hub, admin, "bob", "carol")
    start(hub, people, "alice")
    spawns = "sum(jupyterhub_server_spawn_duration_seconds_count)"
    wait_for("Prometheus to see alice's server and a spawn",
             lambda: value(machine, QUERIES["running servers"]) == 1 and known(machine, spawns), timeout=120,
             interval=2)  # fmt: skip
    start(hub, people, "bob")
    assert running(hub, admin) == {"alice", "bob"}
    started = time.monotonic()
    wait_for("Prometheus to report 2 running servers",
             lambda: value(machine, QUERIES["running servers"]) == 2, timeout=120, interval=2,
             describe=lambda: servers_seen(hub, admin, machine))  # fmt: skip
    seconds = time.monotonic() - started
    assert value(machine, QUERIES["hub up"]) == 1
    target = hub_target(machine)
    assert target["health"] == "up" and target["lastError"] == ""
    assert "200 GET /hub/metrics (prometheus@" in machine.journal("jupyterhub", lines=300)
    answers = {}
    for what, query in QUERIES.items():
        found = wait_for(f"a number from {query}", lambda q=query: boxed(known(machine, q)), timeout=90, interval=3)
        answers[what] = round(found[0], 3)
    assert answers["spawns in the last hour"] >= 1
    assert answers["spawn time, 90th percentile, last hour"] > 0
    record("prometheus-queries", {"seconds_until_prometheus_saw_2": round(seconds, 1), **answers,
                                  "state": servers_seen(hub, admin, machine)})  # fmt: skip
    if not isinstance(machine, ContainerVM) or not browser.CHROMIUM.exists():
        return
    url = machine.loopback_url(9090) + "/classic/graph?g0.expr=jupyterhub_running_servers&g0.tab=0&g0.range_input=15m"
    with browser.page() as page:
        page.set_viewport_size({"width": 1100, "height": 760})
        page.goto(url)
        page.wait_for_selector(".graph svg", timeout=60_000)
        page.wait_for_load_state("networkidle")
        browser.save(page, "10-prometheus-graph", update_book=request.config.getoption("--update-screenshots"))


def hub_target(machine: Machine) -> dict:
    """Prometheus' view of the hub's target (health, lastError)."""
    targets = json.loads(machine.output(f"curl -sf {PROMETHEUS}/api/v1/targets"))["data"]["activeTargets"]
    return next(t for t in targets if t["labels"]["job"] == "jupyterhub")


@pytest.mark.disruptive
@pytest.mark.fault
def test_a_stale_token_copy_turns_the_hub_target_down(machine):
    """Prometheus' copy of the token no longer the hub's (replaced on one side only): the target goes down with
    the hub's 403; the copy made again by install.sh's section brings it back without a restart."""
    machine.run(f"cp -p {PROMETHEUS_TOKEN} {PROMETHEUS_TOKEN}.hhw-saved")
    try:
        machine.run(f"openssl rand -hex 32 > {PROMETHEUS_TOKEN}")
        down = wait_for("the hub's target to go down", lambda: hub_target(machine)["health"] == "down"
                        and hub_target(machine), timeout=90, interval=2)  # fmt: skip
        assert down["lastError"] == STALE_COPY
        assert value(machine, QUERIES["hub up"]) == 0
    finally:
        machine.run(f"mv {PROMETHEUS_TOKEN}.hhw-saved {PROMETHEUS_TOKEN}")
    wait_for("the hub's target to be up again", lambda: hub_target(machine)["health"] == "up", timeout=90, interval=2)


# -- tokens for scripts -----------------------------------------------------------------


def test_the_monitoring_script_lists_the_running_servers(hub, people, admin, scripts):
    """hub-servers, with the read-only token, lists alice's and bob's servers and how many run."""
    stop(hub, admin, "carol")
    for name in ("alice", "bob"):
        start(hub, people, name)
    out = scripts.output("hub-servers")
    lines = out.splitlines()
    record("hub-servers-output", {"lines": lines})
    assert lines[-1] == "2 servers running", out
    assert sorted(line.split()[0] for line in lines[:-1]) == ["alice", "bob"]
    assert all("started" in line and "last active" in line for line in lines[:-1])


@pytest.mark.fault
def test_the_read_only_token_cannot_change_anything(hub, machine):
    """The monitoring token: stopping or starting a server, creating a user: 403."""
    token = service_token(machine, "monitoring")
    client = hub.client()
    assert client.api("GET", "/users?state=active", token).status_code == 200
    r = client.api("DELETE", "/users/bob/server", token)
    assert r.status_code == 403
    assert message(r) == NOT_DELETE
    r = client.api("POST", "/users/bob/server", token)
    assert r.status_code == 403
    assert message(r) == NOT_START
    r = client.api("POST", "/users/hhw-never-created", token)
    if r.status_code == 201:
        client.api("DELETE", "/users/hhw-never-created", token)
    assert r.status_code == 403
    assert message(r) == NOT_ADMIN_USERS


@pytest.mark.fault
def test_the_operator_script_stops_a_physics_server_and_nobody_elses(hub, people, admin, scripts):
    """hub-stop-server bob (physics): stopped, his volume stays; carol (chemistry): 404, hers runs on; the
    stopper's token cannot start bob's server again."""
    for name in ("bob", "carol"):
        start(hub, people, name)
    started = time.monotonic()
    out = scripts.output("hub-stop-server bob")
    record("stop-server-script", {"seconds": round(time.monotonic() - started, 2)})
    assert out == "Stopped bob's server."
    assert container(hub.machine, "jupyter-bob") is None
    assert volume_exists(hub.machine, "jupyterhub-user-bob")
    assert scripts.output("hub-stop-server bob") == "bob has no server running."
    refused = scripts.run("hub-stop-server carol", check=False)
    assert refused.returncode == 1
    assert refused.stderr.strip() == STOPPER_REFUSED
    assert "carol" in running(hub, admin)
    r = hub.client().api("POST", "/users/bob/server", service_token(scripts, "server_stopper"))
    assert r.status_code == 403
    assert message(r) == NOT_START


# -- the machine's secrets and the chapter ---------------------------------------------


def test_secret_files_are_private(machine, stage):
    """Every secret file of the stages so far, and this stage's tokens: 0600 and root's; Prometheus' copy of
    its token: 0600 and prometheus's, as only that service must read it."""
    problems = secret_file_problems(machine, stage.number)
    for name in ("prometheus", "monitoring", "server_stopper"):
        found = machine.output(f"stat -c '%a %U %G' {SECRETS}/{name}_token", check=False)
        if found != "600 root root":
            problems.append(f"{SECRETS}/{name}_token is {found or 'missing'}, should be 600 root root")
    assert not problems, "; ".join(problems)


def test_chapter_shows_what_install_printed(machine, stage):
    """Each "You should see" block after an install.sh section matches what it printed on this VM."""
    print(f"{check_chapter_outputs(machine, stage)} quoted lines checked")


# Keep this test last: it reads the logs after every other test of the stage has run.
def test_no_secret_of_the_tests_in_any_log(machine):
    """No token of this stage's services (nor any other secret the tests used) in the journal, Traefik's access
    log or the containers' logs."""
    for name in ("prometheus", "monitoring", "server_stopper"):
        service_token(machine, name)
    record("secrets-in-logs-10", assert_no_leaks(machine))
