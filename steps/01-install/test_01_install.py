"""Stage 01: the hub answers, PAM login works for allowed users only, a server spawns."""

from __future__ import annotations

from tests.harness.chapter_outputs import check as check_chapter_outputs
from tests.harness.kernels import one_plus_one
from tests.harness.ports import assert_loopback_only
from tests.harness.results import record
from tests.harness.versions import check as check_versions

NOT_ALLOWED_LOG = "User 'mallory' not allowed."


def test_login_page_answers(hub, screenshot):
    r = hub.client().get("/hub/login")
    assert r.status_code == 200
    assert 'name="username"' in r.text and 'name="password"' in r.text
    screenshot(hub.url + "/hub/login", "01-login-page", wait_for="#login_submit")


def test_right_password_logs_in_and_spawns(hub, people):
    alice = people["alice"]
    client = hub.client()
    r = client.login(alice.name, alice.password)
    assert r.status_code == 302, client.login_error(r)
    client.start_server(alice.name)
    status = client.server_api(alice.name, "status")
    assert status.status_code == 200
    assert "started" in status.json()
    print(f"spawn took {client.spawn_seconds:.1f} s")
    # Code runs in a kernel, over the WebSocket, through the proxy: what Shift+Enter does.
    assert one_plus_one(client, alice.name) == "2"
    # The server runs as alice, not as root.
    owners = hub.machine.output("ps -eo user=,args= | awk '/[j]upyterhub-singleuser/ {print $1}' | sort -u").split()
    assert owners == ["alice"]


def test_hub_listens_on_loopback_only(hub):
    """Passwords cross in clear until HTTPS: port 8000 answers on the machine itself, nowhere else."""
    assert_loopback_only(hub.machine, 8000)


def test_wrong_password_gets_403_and_no_server(hub, people):
    client = hub.client()
    r = client.login("alice", people["alice"].password + "-wrong")
    assert r.status_code == 403
    assert client.login_error(r) == "Invalid username or password"
    assert not client.logged_in()
    journal = hub.journal()
    assert "[PAM Error 7] Authentication failure" in journal
    assert "Failed login for 'alice'" in journal


def test_real_user_not_allowed_is_refused(hub, outsider):
    client = hub.client()
    r = client.login(outsider.name, outsider.password)
    assert r.status_code == 403
    assert client.login_error(r) == "Invalid username or password"
    assert NOT_ALLOWED_LOG in hub.journal()
    assert hub.machine.run(f"pgrep -u {outsider.name}", check=False).returncode != 0, "a process runs as mallory"


def test_without_an_allow_rule_nobody_logs_in(hub, people):
    """JupyterHub 5+: remove the allow rule and even alice, with the right password, is refused."""
    with hub.edited_config(sed="/allowed_users/d"):
        client = hub.client()
        r = client.login("alice", people["alice"].password)
        assert r.status_code == 403
        assert client.login_error(r) == "Invalid username or password"
        assert "No allow config found, it's possible that nobody can login to your Hub!" in hub.journal()
    assert hub.client().login("alice", people["alice"].password).status_code == 302


def test_starting_twice_names_the_running_unit(hub):
    """start.sh while the hub runs: systemd-run refuses, and says why."""
    proc = hub.start(check=False)
    assert proc.returncode != 0
    assert (
        "Failed to start transient service unit: Unit jupyterhub.service was already loaded or has a fragment file."
    ) in proc.stderr
    hub.wait_up()


def test_versions_are_those_the_book_lists(hub):
    """book/intro.md's versions table, column of this machine's Debian release."""
    parts = ("Debian", "systemd", "Python", "Node.js", "configurable-http-proxy", "JupyterHub", "JupyterLab")
    record("versions-01", check_versions(hub.machine, parts))


def test_chapter_shows_what_install_printed(hub):
    """Each "You should see" block after an install.sh section matches what it printed on this VM."""
    print(f"{check_chapter_outputs(hub.machine, hub.stage)} quoted lines checked")
