"""Stage 03: one container per user (DockerSpawner), a volume per user, a choice of images."""

from __future__ import annotations

import html
import re

import pytest

from tests.harness import users
from tests.harness.chapter_outputs import check as check_chapter_outputs
from tests.harness.hubclient import HubClient
from tests.harness.kernels import connection_survives, one_plus_one
from tests.harness.localcheck import test_target_local_passes_on_a_machine_built_by_the_book  # noqa: F401
from tests.harness.ports import assert_loopback_only
from tests.harness.results import record
from tests.harness.secrets_audit import assert_no_leaks, secret_file_problems
from tests.harness.server_checks import test_your_server  # noqa: F401  (the checks of your own server)
from tests.harness.versions import check as check_versions
from tests.harness.waits import wait_for

SMALL, SCIPY = "JupyterLab", "JupyterLab with NumPy, pandas and Matplotlib"
IMAGES = {SMALL: "local/lab:1", SCIPY: "local/scipy:1"}
NOT_BUILT_PAGE = "The image local/r:1 is not on this machine: build it, or take it off allowed_images."
LOOPBACK_CONTAINER_LOG = (
    "Failed to connect to my Hub at http://127.0.0.1:8081/hub/api (attempt 1/5). Is it running?",
    "Cannot connect to host 127.0.0.1:8081",
)
LOOPBACK_HUB_LOG = "server never showed up at"
PROXY_STOPPED = "Proxy stopped with exit code"
FIREWALL_CONTAINER_LAST = "Skipped non-installed server(s): " + (
    "basedpyright, bash-language-server, dockerfile-language-server-nodejs, javascript-typescript-langserver, "
    "jedi-language-server, julia-language-server, pyrefly, pyright, python-language-server, python-lsp-server, "
    "r-languageserver, sql-language-server, texlab, typescript-language-server, unified-language-server, "
    "vscode-css-languageserver-bin, vscode-html-languageserver-bin, vscode-json-languageserver-bin, "
    "yaml-language-server"
)
FIREWALL_PAGE = "Spawn failed The latest attempt to start your server has failed. Would you like to retry starting it?"
FIREWALL_JOURNAL = (
    r"Previous spawn for bob failed: Server at http://172\.18\.0\.\d+:8888/user/bob/api didn't respond in 30 seconds"
)
FIREWALL_HUB_LOG = (
    r"bob's server never showed up at http://172\.18\.0\.\d+:8888/user/bob/ after 30 seconds\. Giving up\."
)


def admin_token(hub, people) -> tuple[HubClient, str]:
    client = hub.session(people["alice"])
    return client, client.create_token("alice", note="stage 03 tests")


def ensure_stopped(hub, people, name: str) -> None:
    """Stop NAME's server if it runs, and wait until its container is gone."""
    client, token = admin_token(hub, people)
    if users.server_state(client, name, token):
        users.stop_server(client, name, token)
    wait_for(f"container jupyter-{name} to be removed", lambda: users.container(hub.machine, f"jupyter-{name}") is None,
             timeout=60)  # fmt: skip


def start(hub, people, name: str, image: str = SMALL) -> HubClient:
    """Log NAME in and start their server with ``image`` from the form (stopping a running one first)."""
    ensure_stopped(hub, people, name)
    client = hub.session(people[name])
    client.start_server(name, data={"image": image})
    print(f"{name}'s server ({image}) answered after {client.spawn_seconds:.1f} s")
    return client


def test_spawn_runs_users_container(hub, people, screenshot):
    alice = people["alice"]
    form = hub.session(alice).get("/hub/spawn")
    assert form.status_code == 200 and 'name="image"' in form.text
    assert SMALL in form.text and SCIPY in form.text
    screenshot(hub.url + "/hub/spawn", "03-image-choice", login=(alice.name, alice.password),
               wait_for="select[name=image]")  # fmt: skip

    client = start(hub, people, "alice", SMALL)
    assert client.server_api("alice", "status").status_code == 200
    info = users.container(hub.machine, "jupyter-alice")
    assert info and info["State"]["Running"]
    assert info["Config"]["Image"] == IMAGES[SMALL]
    assert hub.machine.output("docker exec jupyter-alice id -un") == "jovyan"
    assert one_plus_one(client, "alice") == "2"
    screenshot(hub.url + "/user/alice/lab", "03-jupyterlab", login=(alice.name, alice.password),
               wait_for=".jp-LauncherCard")  # fmt: skip


def test_work_file_survives_stop_and_start(hub, people):
    client = start(hub, people, "alice")
    users.write_text(client, "alice", "kept.txt", "written before the stop\n")
    assert hub.machine.output("docker exec jupyter-alice cat /home/jovyan/work/kept.txt") == "written before the stop"
    first = users.container(hub.machine, "jupyter-alice")["Id"]

    client = start(hub, people, "alice")  # stops the server, then starts a new container
    assert users.container(hub.machine, "jupyter-alice")["Id"] != first
    assert users.read_text(client, "alice", "kept.txt") == "written before the stop\n"


def test_stop_removes_container_but_not_volume(hub, people):
    start(hub, people, "alice")
    assert users.volume_exists(hub.machine, "jupyterhub-user-alice")
    ensure_stopped(hub, people, "alice")
    assert users.container(hub.machine, "jupyter-alice") is None
    assert users.volume_exists(hub.machine, "jupyterhub-user-alice")
    mount = hub.machine.output("docker volume inspect -f '{{.Mountpoint}}' jupyterhub-user-alice")
    assert hub.machine.run(f"test -f {mount}/kept.txt", check=False).returncode == 0


def test_second_image_runs_that_image(hub, people):
    client = start(hub, people, "bob", SCIPY)
    assert users.container(hub.machine, "jupyter-bob")["Config"]["Image"] == IMAGES[SCIPY]
    versions = hub.machine.output(
        "docker exec jupyter-bob python -c "
        "'import numpy, pandas, matplotlib; print(numpy.__version__, pandas.__version__, matplotlib.__version__)'"
    )
    assert versions == "2.4.6 3.1.1 3.11.2"
    assert client.server_api("bob", "status").status_code == 200


def test_hub_listens_on_loopback_only(hub):
    assert_loopback_only(hub.machine, 8000)


def test_users_have_no_login_shell(hub, people):
    """Their servers run in containers: a hub password no longer opens a shell on the machine."""
    for name in ("alice", "bob"):
        assert hub.machine.output(f"getent passwd {name}").endswith(":/usr/sbin/nologin")
    proc = hub.machine.run("su - alice -c true", check=False)
    assert proc.returncode != 0 and "This account is currently not available." in proc.stdout + proc.stderr
    hub.session(people["alice"])  # the hub's PAM login does not care about the shell


@pytest.mark.fault
@pytest.mark.disruptive
def test_docker_restart_leaves_servers_running(hub, people):
    """live-restore: restarting the Docker Engine (an upgrade) leaves containers, kernels and connections alone."""
    assert hub.machine.output("docker info --format '{{.LiveRestoreEnabled}}'") == "true"
    client = start(hub, people, "alice")
    users.write_text(client, "alice", "before-docker-restart.txt", "kept\n")
    before = users.container(hub.machine, "jupyter-alice")
    assert connection_survives(client, "alice", lambda: hub.machine.run("systemctl restart docker"))
    after = users.container(hub.machine, "jupyter-alice")
    assert after["Id"] == before["Id"] and after["State"]["StartedAt"] == before["State"]["StartedAt"]
    assert client.server_api("alice", "status").status_code == 200
    assert users.read_text(client, "alice", "before-docker-restart.txt") == "kept\n"
    assert users.volume_exists(hub.machine, "jupyterhub-user-alice")


@pytest.mark.disruptive
def test_open_notebook_reconnects_after_hub_restart(hub, people):
    """The hub starts CHP, so a hub restart restarts the proxy: open connections drop, the kernel lives on."""
    client = start(hub, people, "bob")
    assert not connection_survives(client, "bob", hub.restart), "the WebSocket survived a restart of its proxy"


@pytest.mark.disruptive
def test_hub_restart_leaves_container_running(hub, people):
    client = start(hub, people, "bob")
    before = users.container(hub.machine, "jupyter-bob")["Id"]
    hub.restart()
    after = users.container(hub.machine, "jupyter-bob")
    assert after and after["Id"] == before and after["State"]["Running"], "the restart replaced bob's container"
    # The same browser session reaches the same server through the new proxy.
    assert client.wait_server("bob", timeout=60)
    assert client.server_api("bob", "status").status_code == 200


@pytest.mark.fault
@pytest.mark.disruptive
def test_kill_9_proxy_is_restarted_by_the_hub_with_its_routes(hub, people):
    """configurable-http-proxy killed: the hub notices within seconds, starts it again and puts the routes back;
    bob's server answers again, same container, same files (compare Traefik under the hub, stage 04)."""
    client = start(hub, people, "bob")
    users.write_text(client, "bob", "before-proxy-kill.txt", "kept\n")
    container = users.container(hub.machine, "jupyter-bob")["Id"]
    pid = hub.machine.output("pgrep -f configurable-http-proxy")
    since = hub.machine.clock()
    hub.machine.run(f"kill -9 {pid}")
    log = wait_for("the hub to restart its proxy",
                   lambda: (j := hub.machine.journal("jupyterhub", since=since)) and PROXY_STOPPED in j and j,
                   timeout=60)  # fmt: skip
    assert "Proxy stopped with exit code -9" in log
    client.wait_server("bob", timeout=60)
    assert hub.machine.output("pgrep -f configurable-http-proxy") != pid
    assert users.container(hub.machine, "jupyter-bob")["Id"] == container
    assert users.read_text(client, "bob", "before-proxy-kill.txt") == "kept\n"


@pytest.mark.fault
@pytest.mark.disruptive
def test_image_never_built_fails_clearly(hub, people):
    ensure_stopped(hub, people, "bob")
    with hub.edited_config(append=('c.DockerSpawner.allowed_images["R"] = "local/r:1"',)):
        client = hub.session(people["bob"])
        assert "local/r:1" not in hub.machine.output("docker image ls --format '{{.Repository}}:{{.Tag}}'")
        client.get("/hub/spawn")
        r = client.post("/hub/spawn", data={"image": "R", "_xsrf": client.xsrf()})
        assert r.status_code == 500
        assert NOT_BUILT_PAGE in r.text, "the spawn page does not say which image is missing"
        assert users.container(hub.machine, "jupyter-bob") is None
        pending = client.get("/hub/spawn-pending/bob")
        assert "Spawn failed" in pending.text
        assert NOT_BUILT_PAGE in hub.journal(lines=100)


def failed_spawn(hub, people, name: str) -> tuple[str, str]:
    """Start NAME's server from the form and wait until the hub gives up.

    Returns the container's last log and the spawn page's text (as the user sees it).
    """
    client = hub.session(people[name])
    client.get("/hub/spawn")
    r = client.post("/hub/spawn", data={"image": SMALL, "_xsrf": client.xsrf()})
    assert r.status_code == 200 and f"/hub/spawn-pending/{name}" in r.url
    seen: list[str] = []

    def spawn_failed() -> str | None:
        logs = hub.machine.run(f"docker logs jupyter-{name} 2>&1", check=False)
        if logs.returncode == 0 and logs.stdout.strip():
            seen.append(logs.stdout)  # the container is removed when the hub gives up
        page = client.get(f"/hub/spawn-pending/{name}").text
        text = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())  # what the user reads
        return text if "Spawn failed" in text else None

    page = wait_for(f"the hub to give up on {name}'s server", spawn_failed, timeout=150, interval=2)
    wait_for(f"{name}'s failed container to be removed",
             lambda: users.container(hub.machine, f"jupyter-{name}") is None)  # fmt: skip
    return (seen[-1] if seen else ""), page


@pytest.mark.fault
@pytest.mark.disruptive
def test_hub_ip_loopback_leaves_container_unable_to_reach_hub(hub, people):
    """The classic mistake: hub_ip left at 127.0.0.1, which inside a container is the container itself."""
    ensure_stopped(hub, people, "bob")
    with hub.edited_config(append=('c.JupyterHub.hub_ip = "127.0.0.1"',)):
        container_log, _ = failed_spawn(hub, people, "bob")
        for message in LOOPBACK_CONTAINER_LOG:
            assert message in container_log, container_log[-2000:]
        assert LOOPBACK_HUB_LOG in hub.journal(lines=200)


def test_firewall_lets_in_only_ssh_and_containers_to_the_hub(hub):
    chain = hub.machine.output("nft list chain inet hub_firewall input")
    assert "policy drop;" in chain
    accepted = [line.strip() for line in chain.splitlines() if "dport" in line and line.strip().endswith("accept")]
    assert accepted == ["tcp dport 22 accept", 'iifname "docker0" tcp dport 8081 accept']
    assert hub.machine.output("systemctl is-enabled hub-firewall") == "enabled"


@pytest.mark.fault
@pytest.mark.disruptive
def test_default_deny_firewall_without_the_docker0_rule_breaks_spawns(hub, people):
    """The firewall without its docker0 rule: containers cannot reach the hub; put the rule back, spawns work."""
    ensure_stopped(hub, people, "bob")
    rules = "/etc/hub-firewall.nft"
    hub.machine.run(f"cp -p {rules} {rules}.hhw-saved && sed -i '/iifname \"docker0\"/d' {rules}")
    try:
        hub.machine.run("systemctl reload hub-firewall")
        since = hub.machine.clock()
        container_log, page = failed_spawn(hub, people, "bob")
        # The server waits for the hub's API, whose packets the firewall drops: no error, its log just stops
        # (then, if the log was read after the hub stopped it, a traceback shows where it hung).
        assert FIREWALL_CONTAINER_LAST in container_log, container_log[-2000:]
        assert "Failed to connect to my Hub" not in container_log
        if "received signal 15, stopping" in container_log:
            assert "check_hub_version" in container_log
        assert FIREWALL_PAGE in page
        journal = hub.machine.journal("jupyterhub", since=since)
        assert re.search(FIREWALL_HUB_LOG, journal), journal[-3000:]
        assert re.search(FIREWALL_JOURNAL, journal), journal[-3000:]
    finally:
        hub.machine.run(f"mv {rules}.hhw-saved {rules} && systemctl reload hub-firewall")
    client = start(hub, people, "bob")
    assert one_plus_one(client, "bob") == "2"


def test_versions_are_those_the_book_lists(hub):
    """book/intro.md's versions table, column of this machine's Debian release."""
    record("versions-03", check_versions(hub.machine, ("Docker Engine", "DockerSpawner")))


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
    record("secrets-in-logs-03", assert_no_leaks(machine))
