"""Stage 04: Traefik, started by the hub, in front of the hub and the users' containers."""

from __future__ import annotations

import json
import secrets
import time
import tomllib

import pytest
import requests

from tests.harness import users
from tests.harness.chapter_outputs import check as check_chapter_outputs
from tests.harness.hubclient import HubClient
from tests.harness.kernels import connection_survives, one_plus_one
from tests.harness.localcheck import test_target_local_passes_on_a_machine_built_by_the_book  # noqa: F401
from tests.harness.machine import ContainerVM
from tests.harness.ports import assert_loopback_only, reachable_from_outside
from tests.harness.results import record
from tests.harness.secrets_audit import assert_no_leaks, secret_file_problems
from tests.harness.server_checks import test_your_server  # noqa: F401  (the checks of your own server)
from tests.harness.versions import check as check_versions
from tests.harness.waits import wait_for

API = "http://127.0.0.1:8099/api"
PASSWORD_FILE = "/etc/jupyterhub/secrets/traefik_api_password"
ACCESS_LOG = "/var/log/traefik/access.log"
NO_TRAEFIK_LOG = ("Failed to find traefik", "Failed to start proxy",
                  "FileNotFoundError: [Errno 2] No such file or directory: 'traefik'")  # fmt: skip


def running(hub, people, name: str) -> HubClient:
    """A logged-in session of NAME whose server runs (started from the form if needed)."""
    client = hub.session(people[name])
    client.ensure_server(name, data={"image": "JupyterLab"})
    return client


def traefik_api(hub, path: str, auth: str | None = "right") -> tuple[int, str]:
    """GET Traefik's API from inside the machine (it listens on its loopback only), as an operator would."""
    creds = {None: "", "right": f"-u jupyterhub:$(cat {PASSWORD_FILE})", "wrong": "-u jupyterhub:wrong"}[auth]
    out = hub.machine.output(f"curl -s -w '\\n%{{http_code}}' {creds} {API}{path}")
    body, _, status = out.rpartition("\n")
    return int(status), body


def test_login_spawn_and_server_through_traefik(hub, people):
    client = running(hub, people, "alice")
    assert client.server_api("alice", "status").status_code == 200
    assert one_plus_one(client, "alice") == "2", "code does not run: does the WebSocket pass Traefik?"
    users.write_text(client, "alice", "via-traefik.txt", "through Traefik\n")
    assert users.read_text(client, "alice", "via-traefik.txt") == "through Traefik\n"
    # Traefik runs, started by the hub (in its unit); configurable-http-proxy does not.
    procs = hub.machine.output("systemctl status jupyterhub --no-pager --full --lines=0")
    assert "traefik --configfile /var/lib/jupyterhub/traefik.toml" in procs
    assert hub.machine.run("pgrep -f configurable-http-proxy", check=False).returncode == 1
    assert "Using Proxy: jupyterhub_traefik_proxy.fileprovider.TraefikFileProviderProxy-2.1.0" in hub.journal()


def test_hub_listens_on_loopback_only(hub):
    assert_loopback_only(hub.machine, 8000)


@pytest.mark.disruptive
def test_open_notebook_reconnects_after_hub_restart(hub, people):
    """The hub starts Traefik, so a hub restart restarts the proxy: open connections drop, the kernel lives on."""
    client = running(hub, people, "alice")
    assert not connection_survives(client, "alice", hub.restart), "the WebSocket survived a restart of its proxy"


@pytest.mark.disruptive
def test_server_survives_hub_restart_behind_traefik(hub, people):
    client = running(hub, people, "bob")
    before = users.container(hub.machine, "jupyter-bob")["Id"]
    hub.restart()  # the hub and its Traefik stop and start; bob's container does not
    assert users.container(hub.machine, "jupyter-bob")["Id"] == before
    client.wait_server("bob", timeout=60)
    assert client.server_api("bob", "status").status_code == 200


@pytest.mark.fault
@pytest.mark.disruptive
def test_kill_9_traefik_leaves_everything_unreachable_until_the_hub_restarts(hub, people):
    """Traefik started by the hub, killed: nobody restarts it (the hub checks only CHP), every request is refused;
    the hub's restart starts Traefik again and bob's server, container and files are back."""
    client = running(hub, people, "bob")
    users.write_text(client, "bob", "before-traefik-kill.txt", "kept\n")
    container = users.container(hub.machine, "jupyter-bob")["Id"]
    pid = hub.machine.output("pgrep -x traefik")
    since = hub.machine.clock()
    hub.machine.run(f"kill -9 {pid}")
    time.sleep(15)  # three times what the hub would take to notice, if it checked
    with pytest.raises(requests.ConnectionError):
        hub.client().get("/hub/login", timeout=10)
    assert hub.machine.output(f"ps -o args= -p {pid}") == "[traefik] <defunct>"  # a zombie: the hub never waited
    assert hub.machine.output("systemctl is-active jupyterhub") == "active"
    # configurable-http-proxy would have been restarted, with "Proxy stopped with exit code" in the journal.
    assert "Proxy stopped" not in hub.machine.journal("jupyterhub", since=since)
    hub.restart()
    client.wait_server("bob", timeout=60)
    assert users.container(hub.machine, "jupyter-bob")["Id"] == container
    assert users.read_text(client, "bob", "before-traefik-kill.txt") == "kept\n"


@pytest.mark.fault
def test_api_requires_credentials_and_stays_on_loopback(hub):
    status, body = traefik_api(hub, "/http/routers", auth=None)
    assert status == 401 and body.strip() == "401 Unauthorized"
    assert traefik_api(hub, "/http/routers", auth="wrong")[0] == 401
    status, body = traefik_api(hub, "/http/routers")
    assert status == 200
    assert "PathPrefix(`/`)" in {r["rule"] for r in json.loads(body)}
    if isinstance(hub.machine, ContainerVM):
        # Port 8099 of the machine is published to this host, but nothing answers there:
        # Traefik's API entry point listens on the machine's own loopback only.
        assert not reachable_from_outside(hub.machine, 8099)
    mode = hub.machine.output(f"stat -c '%a %U' {PASSWORD_FILE} /var/lib/jupyterhub/rules.toml").splitlines()
    assert mode == ["600 root", "600 root"]
    password = hub.machine.output(f"cat {PASSWORD_FILE}")
    assert password not in hub.machine.output("cat /etc/jupyterhub/jupyterhub_config.py /var/lib/jupyterhub/rules.toml")


def test_static_config_calls_nobody_home(hub):
    """The traefik.toml the hub wrote: no version check, no usage reports, the access log as configured."""
    static = tomllib.loads(hub.machine.output("cat /var/lib/jupyterhub/traefik.toml"))
    assert static["global"] == {"checkNewVersion": False, "sendAnonymousUsage": False}
    assert static["entryPoints"]["auth_api"]["address"] == "127.0.0.1:8099"
    log = static["accessLog"]
    assert log["filePath"] == ACCESS_LOG and log["format"] == "json"
    assert log["fields"]["names"] == {"RequestPath": "drop"}
    assert log["fields"]["headers"]["defaultMode"] == "drop"


def test_access_log_keeps_no_secrets(hub, people):
    client = hub.session(people["alice"])
    token = client.create_token("alice", note="access log test")
    marker = "hhw-access-log-" + secrets.token_hex(4)
    headers = {
        "Authorization": f"token {token}",
        "Cookie": f"jupyterhub-hub-login={token}",
        "Referer": f"{hub.url}/?token={token}",
        "User-Agent": marker,
    }
    with requests.Session() as plain:
        plain.trust_env = False  # straight to the test hub, no proxy from the environment
        r = plain.get(f"{hub.url}/hub/api/user?token={token}", headers=headers, timeout=30)
    assert r.status_code == 200 and r.json()["name"] == "alice"

    def logged() -> dict | None:
        for line in hub.machine.output(f"cat {ACCESS_LOG}").splitlines():
            if marker in line:
                return json.loads(line)
        return None

    entry = wait_for(f"the request marked {marker} in {ACCESS_LOG}", logged, timeout=30)
    print(json.dumps(entry, indent=1))
    assert entry["DownstreamStatus"] == 200 and entry["RouterName"] == "router__2F@file"
    assert entry["request_Authorization"] == entry["request_Cookie"] == entry["request_Referer"] == "REDACTED"
    assert "RequestPath" not in entry
    assert token not in hub.machine.output(f"cat {ACCESS_LOG}")
    # The hub's own log has the path, with the token scrubbed by JupyterHub.
    journal = hub.journal(lines=2000)
    assert token not in journal and "GET /hub/api/user?token=[secret]" in journal
    assert hub.machine.output("stat -c %a /var/log/traefik") == "700"


def test_longest_prefix_wins(hub, people):
    client = running(hub, people, "alice")
    # /user/alice/... goes to alice's container: Jupyter Server answers.
    r = client.get("/user/alice/api")
    assert r.status_code == 200 and "version" in r.json() and r.headers["Server"].startswith("TornadoServer")
    # A path that is not a prefix match of /user/alice/ falls through to the hub's "/".
    r = client.get("/user/alic/api", allow_redirects=False)
    assert r.status_code == 302 and r.headers["Location"] == "/hub/user/alic/api"
    # Traefik orders routers by priority, by default the length of the rule: longer wins.
    routers = {x["name"]: x for x in json.loads(traefik_api(hub, "/http/routers")[1])}
    alice, hub_route = routers["router__2Fuser_2Falice_2F@file"], routers["router__2F@file"]
    print({r["rule"]: r["priority"] for r in (alice, hub_route)})
    assert "PathPrefix(`/user/alice/`)" in alice["rule"] and hub_route["rule"] == "PathPrefix(`/`)"
    assert alice["priority"] > hub_route["priority"]


@pytest.mark.fault
@pytest.mark.disruptive
def test_hub_without_traefik_on_path_fails_to_start(hub):
    """start.sh puts /opt/jupyterhub/bin on PATH; a unit without it cannot start the proxy."""
    m = hub.machine
    try:
        m.run("systemctl stop jupyterhub; systemctl reset-failed jupyterhub 2>/dev/null || true")
        m.run("systemd-run --unit=jupyterhub --working-directory=/var/lib/jupyterhub "
              "/opt/jupyterhub/bin/jupyterhub --config=/etc/jupyterhub/jupyterhub_config.py")  # fmt: skip
        wait_for("the hub to fail without traefik", lambda: m.run("systemctl is-failed jupyterhub", check=False)
                 .stdout.strip() == "failed", timeout=60)  # fmt: skip
        journal = hub.journal(lines=300)
        for message in NO_TRAEFIK_LOG:
            assert message in journal
    finally:
        m.run("bash start.sh", cwd=hub.stage.vm_dir if isinstance(m, ContainerVM) else str(hub.stage.path))
        hub.wait_up()


def test_versions_are_those_the_book_lists(hub):
    """book/intro.md's versions table, column of this machine's Debian release."""
    record("versions-04", check_versions(hub.machine, ("Traefik", "jupyterhub-traefik-proxy")))


def test_chapter_shows_what_install_printed(hub):
    """Each "You should see" block after an install.sh section matches what it printed on this VM."""
    print(f"{check_chapter_outputs(hub.machine, hub.stage)} quoted lines checked")


def test_secret_files_are_private(machine, stage):
    """Every secret file of the stages so far: 0600 and root's, or a service's where it must read it (the reason
    is in tests/harness/secrets_audit.py)."""
    problems = secret_file_problems(machine, stage.number)
    assert not problems, "; ".join(problems)


# Keep this test last: it reads the logs after every other test of the stage has run.
def test_no_secret_of_the_tests_in_any_log(machine):
    """No password, API token, OAuth code or client secret the tests used, nor the machine's own secrets, in the
    journal, Traefik's access log or the containers' logs."""
    record("secrets-in-logs-04", assert_no_leaks(machine))
