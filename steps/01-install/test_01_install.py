"""Stage 01: the hub answers, PAM login works for allowed users only, a server spawns."""

from __future__ import annotations

import pytest

from tests.harness.chapter_outputs import check as check_chapter_outputs
from tests.harness.faults import database, page_text
from tests.harness.kernels import one_plus_one
from tests.harness.localcheck import test_target_local_passes_on_a_machine_built_by_the_book  # noqa: F401
from tests.harness.ports import assert_loopback_only
from tests.harness.results import record
from tests.harness.server_checks import test_your_server  # noqa: F401  (the checks of your own server)
from tests.harness.versions import check as check_versions

NOT_ALLOWED_LOG = "User 'mallory' not allowed."
DATABASE = "/etc/jupyterhub/jupyterhub.sqlite"  # start.sh runs the hub in /etc/jupyterhub (stage 02 moves it)
FORM_EXPIRED = "Login form invalid or expired. Try again."
XSRF_MISSING = "'_xsrf' argument missing from POST"


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


@pytest.mark.fault
def test_wrong_password_gets_403_and_no_server(hub, people):
    client = hub.client()
    r = client.login("alice", people["alice"].password + "-wrong")
    assert r.status_code == 403
    assert client.login_error(r) == "Invalid username or password"
    assert not client.logged_in()
    journal = hub.journal()
    assert "[PAM Error 7] Authentication failure" in journal
    assert "Failed login for 'alice'" in journal


@pytest.mark.fault
@pytest.mark.disruptive  # creates (then removes) the Linux user mallory
def test_real_user_not_allowed_is_refused(hub, outsider):
    client = hub.client()
    r = client.login(outsider.name, outsider.password)
    assert r.status_code == 403
    assert client.login_error(r) == "Invalid username or password"
    assert NOT_ALLOWED_LOG in hub.journal()
    assert hub.machine.run(f"pgrep -u {outsider.name}", check=False).returncode != 0, "a process runs as mallory"


@pytest.mark.fault
def test_unknown_user_gets_403_and_is_not_created(hub):
    """A name with no Linux account: the same 403 as a wrong password, and no user in the hub's database."""
    since = hub.machine.clock()
    client = hub.client()
    r = client.login("nosuchuser", "whatever")
    assert r.status_code == 403
    assert client.login_error(r) == "Invalid username or password"
    assert not client.logged_in()
    journal = hub.machine.journal("jupyterhub", since=since)
    assert "Failed login for 'nosuchuser'" in journal
    assert "nosuchuser" not in database(hub.machine, DATABASE)["users"]


@pytest.mark.fault
def test_form_posts_without_the_xsrf_token_are_refused(hub, people):
    """A form posted from elsewhere (no `_xsrf` field): the login page and the spawn form answer 403, nothing runs."""
    alice = people["alice"]
    since = hub.machine.clock()
    stranger = hub.client()  # never fetched the login page: no _xsrf cookie, no field
    r = stranger.post("/hub/login", data={"username": alice.name, "password": alice.password}, allow_redirects=False)
    assert r.status_code == 403
    assert stranger.login_error(r) == FORM_EXPIRED
    assert not stranger.logged_in()
    # Logged in, but a spawn posted without the token (what a forged form on another site sends).
    client = hub.client()
    assert client.login(alice.name, alice.password).status_code == 302
    r = client.post("/hub/spawn", data={}, allow_redirects=False)
    assert r.status_code == 403
    assert f"403 : {XSRF_MISSING}" in page_text(r)
    journal = hub.machine.journal("jupyterhub", since=since)
    assert f"XSRF error on login form: HTTP 403: Forbidden ({XSRF_MISSING})" in journal
    assert f"403 POST /hub/spawn (127.0.0.1): {XSRF_MISSING}" in journal
    # Nothing lost: alice's login still works, with the token.
    assert client.logged_in()


@pytest.mark.fault
@pytest.mark.disruptive
def test_without_an_allow_rule_nobody_logs_in(hub, people):
    """JupyterHub 5+: remove the allow rule and even alice, with the right password, is refused."""
    with hub.edited_config(sed="/allowed_users/d"):
        client = hub.client()
        r = client.login("alice", people["alice"].password)
        assert r.status_code == 403
        assert client.login_error(r) == "Invalid username or password"
        assert "No allow config found, it's possible that nobody can login to your Hub!" in hub.journal()
    assert hub.client().login("alice", people["alice"].password).status_code == 302


@pytest.mark.fault
@pytest.mark.disruptive  # runs start.sh on the machine
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
