"""Stage 02: admins and allowed users, secrets in 0600 files, state that survives a restart."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest

from tests.harness import users
from tests.harness.chapter_outputs import check as check_chapter_outputs
from tests.harness.faults import assert_database_intact, database, forged, page_text, saved_file
from tests.harness.kernels import one_plus_one, run_notebook
from tests.harness.localcheck import test_target_local_passes_on_a_machine_built_by_the_book  # noqa: F401
from tests.harness.machine import ContainerVM
from tests.harness.ports import assert_loopback_only
from tests.harness.results import record
from tests.harness.secrets_audit import assert_no_leaks, secret_file_problems
from tests.harness.server_checks import test_your_server  # noqa: F401  (the checks of your own server)
from tests.harness.stages import REPO, STEPS
from tests.harness.waits import wait_for

SECRETS = ("/etc/jupyterhub/secrets/cookie_secret", "/etc/jupyterhub/secrets/proxy_auth_token")
CONFIG = "/etc/jupyterhub/jupyterhub_config.py"
BAD_COOKIE_LOG = "Invalid or expired cookie token"
SYNTAX_ERROR = "SyntaxError: '{' was never closed"
UNKNOWN_OPTION = (
    "Config option `cookie_max_age_day` not recognized by `JupyterHub`.  Did you mean `cookie_max_age_days`?"
)
WRONG_TYPE = (
    "Bad config encountered during initialization: "
    "The 'cookie_max_age_days' trait of a JupyterHub instance expected a float, not the str 'two weeks'."
)
DISK_FULL = "(sqlite3.OperationalError) database or disk is full"


def test_admin_sees_admin_page(hub, people, screenshot):
    alice = people["alice"]
    client = hub.client()
    assert client.login(alice.name, alice.password).status_code == 302
    r = client.get("/hub/admin")
    assert r.status_code == 200 and r.url.endswith("/hub/admin")
    screenshot(hub.url + "/hub/admin", "02-admin-page", login=(alice.name, alice.password),
               wait_for="text=Start All")  # fmt: skip


@pytest.mark.fault
def test_non_admin_is_refused_admin_page(hub, people):
    bob = people["bob"]
    client = hub.client()
    assert client.login(bob.name, bob.password).status_code == 302
    r = client.get("/hub/admin")
    assert r.status_code == 403
    assert "403 : Action is not authorized with current scopes; requires any of [admin-ui]" in r.text


def test_admin_token_lists_users(hub, people):
    alice = people["alice"]
    client = hub.client()
    assert client.login(alice.name, alice.password).status_code == 302
    token = client.create_token(alice.name)
    users = client.api("GET", "/users", token)
    assert users.status_code == 200
    assert {"alice", "bob"} <= {u["name"] for u in users.json()}
    # The same request without a token is refused.
    assert client.api("GET", "/users", "not-a-token").status_code == 403


@pytest.mark.fault
def test_non_admin_token_cannot_list_users(hub, people):
    bob = people["bob"]
    client = hub.client()
    assert client.login(bob.name, bob.password).status_code == 302
    token = client.create_token(bob.name)
    assert client.api("GET", "/users", token).status_code == 403
    assert client.api("GET", "/user", token).json()["name"] == "bob"


def test_secret_files_are_0600_and_outside_the_config(hub):
    for path in SECRETS:
        assert hub.machine.output(f"stat -c '%a %U %s' {path}").split()[:2] == ["600", "root"]
        secret = hub.machine.output(f"cat {path}")
        assert re.fullmatch(r"[0-9a-f]{64}", secret)
        assert hub.machine.run(f"grep -rqF {secret} /etc/jupyterhub/jupyterhub_config.py", check=False).returncode
    assert hub.machine.output("stat -c %a /etc/jupyterhub/secrets") == "700"
    assert hub.machine.output("stat -c %a /var/lib/jupyterhub") == "700"
    # The same check, shared with the later stages (their own secret files added): modes and owners.
    assert not (problems := secret_file_problems(hub.machine, hub.stage.number)), "; ".join(problems)
    assert hub.machine.run("test -f /var/lib/jupyterhub/jupyterhub.sqlite", check=False).returncode == 0
    # Nothing secret ships in the step directory the reader copies.
    names = {p.name for p in (STEPS / hub.stage.name).rglob("*")}
    assert not names & {"cookie_secret", "proxy_auth_token", "jupyterhub_cookie_secret", "jupyterhub.sqlite"}


@pytest.mark.disruptive
def test_login_survives_hub_restart(hub, people):
    bob = people["bob"]
    client = hub.client()
    assert client.login(bob.name, bob.password).status_code == 302
    assert client.logged_in()
    hub.restart()
    assert client.logged_in(), "the login cookie no longer works after a restart: was the cookie secret kept?"


@pytest.mark.fault
@pytest.mark.disruptive
def test_a_new_cookie_secret_logs_everybody_out(hub, people):
    """A lost or replaced cookie secret: every login cookie stops working at the next start."""
    client = hub.session(people["bob"])
    secret = SECRETS[0]
    hub.machine.run(f"cp -p {secret} {secret}.hhw-saved")
    try:
        hub.machine.run(f"umask 077; python3 -c 'import secrets; print(secrets.token_hex(32))' > {secret}")
        hub.restart()
        r = client.get("/hub/home", allow_redirects=False)
        assert r.status_code == 302 and r.headers["Location"].startswith("/hub/login"), "still logged in"
    finally:
        hub.machine.run(f"mv {secret}.hhw-saved {secret}")
        hub.restart()


def test_reference_config_was_generated(hub):
    reference = hub.machine.output("cat /etc/jupyterhub/jupyterhub_config.reference.py")
    assert "# c.Authenticator.admin_users = set()" in reference
    assert "# c.JupyterHub.cookie_secret_file = 'jupyterhub_cookie_secret'" in reference
    # The chapter calls it "a 3,201-line file" with 393 options.
    assert len(reference.splitlines()) == 3201
    assert sum(line.startswith("# c.") for line in reference.splitlines()) == 393


@pytest.mark.fault
@pytest.mark.disruptive
def test_hub_refuses_a_cookie_secret_others_can_read(hub):
    """chmod 0644 on the cookie secret: the hub will not start, and says why."""
    secret = SECRETS[0]
    hub.machine.run(f"chmod 0644 {secret}")
    try:
        hub.start()
        wait_for("the hub to exit", lambda: hub.machine.run("systemctl is-active jupyterhub", check=False).returncode)
        assert (
            "Refusing to run JupyterHub with invalid cookie_secret_file. "
            f"{secret} error was: cookie_secret_file can be read or written by anybody"
        ) in hub.journal()
    finally:
        hub.machine.run(f"chmod 0600 {secret}")
    hub.start()
    hub.wait_up()


def login_cookie(client) -> str:
    return next(c.value for c in client.session.cookies if c.name == "jupyterhub-hub-login")


@pytest.mark.fault
def test_forged_login_cookie_sends_back_to_the_login_page(hub, people):
    """A login cookie whose signature was changed (made without the cookie secret): the login page, no access."""
    bob = hub.session(people["bob"])
    since = hub.machine.clock()
    forger = hub.client()
    forger.session.cookies.set("jupyterhub-hub-login", forged(login_cookie(bob)), path="/hub/")
    r = forger.get("/hub/home", allow_redirects=False)
    assert r.status_code == 302 and r.headers["Location"] == "/hub/login?next=%2Fhub%2Fhome"
    assert forger.get("/hub/api/user").status_code == 403
    assert BAD_COOKIE_LOG in hub.machine.journal("jupyterhub", since=since)
    # jupyterhub-session-id is no credential: bob's, alone, opens nothing.
    session_id = next(c.value for c in bob.session.cookies if c.name == "jupyterhub-session-id")
    other = hub.client()
    other.session.cookies.set("jupyterhub-session-id", session_id, path="/")
    assert not other.logged_in()
    # Nothing lost: bob's own cookie still works.
    assert bob.logged_in()


@pytest.mark.fault
@pytest.mark.disruptive
def test_expired_login_cookie_sends_back_to_the_login_page(hub, people):
    """cookie_max_age_days (default 14) set to 0.0002 (17 s): after that the hub refuses the cookie it signed."""
    before = database(hub.machine)["users"]
    with hub.edited_config(append=("c.JupyterHub.cookie_max_age_days = 0.0002",)):
        bob = hub.session(people["bob"])
        assert bob.logged_in()
        value = login_cookie(bob)
        time.sleep(18)
        since = hub.machine.clock()
        r = bob.get("/hub/home", allow_redirects=False)  # the browser still sends it (it expires in 30 days)
        assert r.status_code == 302 and r.headers["Location"].startswith("/hub/login?next=")
        replay = hub.client()
        replay.session.cookies.set("jupyterhub-hub-login", value, path="/hub/")
        assert not replay.logged_in()
        assert BAD_COOKIE_LOG in hub.machine.journal("jupyterhub", since=since)
        assert hub.session(people["bob"]).logged_in()  # logging in again is all it takes
    assert_database_intact(hub.machine, before)


@pytest.mark.fault
def test_another_users_token_is_refused_by_my_server(hub, people):
    """bob's API token on alice's server (/user/alice/api/...): refused; alice's server and files untouched."""
    alice = hub.session(people["alice"])
    alice.ensure_server("alice")
    users.write_text(alice, "alice", "mine.txt", "alice's notes\n")
    bob = hub.session(people["bob"])
    token = bob.create_token("bob", note="not for alice's server")
    assert bob.api("GET", "/user", token).json()["name"] == "bob"  # a good token, for bob's things
    thief = hub.client()  # no cookies: only the token
    headers = {"Authorization": f"token {token}"}
    for method, path, kw in (
        ("GET", "/user/alice/api/status", {}),
        ("GET", "/user/alice/api/contents/mine.txt", {}),
        ("PUT", "/user/alice/api/contents/mine.txt", {"json": {"type": "file", "format": "text", "content": "bob"}}),
        ("DELETE", "/user/alice/api/contents/mine.txt", {}),
    ):
        r = thief.request(method, path, headers=headers, allow_redirects=False, **kw)
        assert r.status_code == 403, f"{method} {path}: {r.status_code} {r.text[:300]}"
        assert r.json() == {"message": "Forbidden", "reason": None}
    assert alice.server_api("alice", "status").status_code == 200
    assert users.read_text(alice, "alice", "mine.txt") == "alice's notes\n"


def start_and_wait_for_exit(hub) -> None:
    """Start the hub as the chapter does and wait until it has exited (it refused its config)."""
    hub.start()
    wait_for("the hub to exit", lambda: hub.machine.run("systemctl is-active jupyterhub", check=False).returncode)


@pytest.mark.fault
@pytest.mark.disruptive
def test_config_with_a_syntax_error_stops_the_hub_and_the_journal_names_the_line(hub, people):
    before = database(hub.machine)["users"]
    line = hub.machine.output(f"grep -n '^c.Authenticator.allowed_users = ' {CONFIG} | cut -d: -f1")
    with saved_file(hub.machine, CONFIG):
        hub.machine.run(f"sed -i 's/^\\(c.Authenticator.allowed_users = {{.*\\)}}$/\\1/' {CONFIG}")  # drop the }}
        start_and_wait_for_exit(hub)
        journal = hub.journal(lines=60)
        assert f'File "{CONFIG}", line {line}' in journal, journal[-2000:]
        assert SYNTAX_ERROR in journal
    hub.start()
    hub.wait_up()
    assert hub.session(people["alice"]).logged_in()
    assert_database_intact(hub.machine, before)


@pytest.mark.fault
@pytest.mark.disruptive
def test_config_with_an_unknown_option_starts_with_a_warning(hub, people):
    """A misspelt option of a known class: a warning with the right name; a misspelt class: not a word."""
    since = hub.machine.clock()
    with hub.edited_config(append=("c.JupyterHub.cookie_max_age_day = 1", "c.JupyterHb.cookie_max_age_days = 1")):
        journal = hub.machine.journal("jupyterhub", since=since)
        assert UNKNOWN_OPTION in journal
        assert "JupyterHb" not in journal
        assert hub.session(people["alice"]).logged_in()


@pytest.mark.fault
@pytest.mark.disruptive
def test_config_value_of_the_wrong_type_stops_the_hub(hub, people):
    """A string where a number belongs: the hub will not start, and names the option (not the file or line)."""
    before = database(hub.machine)["users"]
    with saved_file(hub.machine, CONFIG):
        hub.machine.run(f"echo 'c.JupyterHub.cookie_max_age_days = \"two weeks\"' >> {CONFIG}")
        start_and_wait_for_exit(hub)
        assert WRONG_TYPE in hub.journal(lines=60)
    hub.start()
    hub.wait_up()
    assert hub.session(people["alice"]).logged_in()
    assert_database_intact(hub.machine, before)


@pytest.mark.fault
@pytest.mark.disruptive
def test_disk_full_under_the_database_refuses_logins_until_space_is_freed(hub, people):
    """/var/lib/jupyterhub on a 4 MiB file system, filled: a login answers 500 "Internal Server Error", or seems to
    work but every page sends you back to the login page (the hub cannot record your activity); the journal says
    "database or disk is full". Once space is freed the hub works again, with every user and an intact database."""
    m = hub.machine
    if not isinstance(m, ContainerVM):
        pytest.skip("mounts a small file system over /var/lib/jupyterhub: on a test VM only")
    before = database(m)["users"]
    m.run("systemctl stop jupyterhub; rm -rf /root/hhw-state && cp -a /var/lib/jupyterhub /root/hhw-state")
    m.run("mount -t tmpfs -o size=4m,mode=0700 hhw-small /var/lib/jupyterhub && "
          "cp -a /root/hhw-state/. /var/lib/jupyterhub/")  # fmt: skip
    try:
        hub.start()
        hub.wait_up()
        alice = hub.session(people["alice"])  # logged in before the disk fills
        since = m.clock()
        m.run("dd if=/dev/zero of=/var/lib/jupyterhub/hhw-filler bs=64k", check=False)
        assert m.output("df --output=avail /var/lib/jupyterhub | tail -1").strip() == "0"
        time.sleep(31)  # the hub writes a user's activity at most every 30 s (activity_resolution)
        r = alice.get("/hub/home", allow_redirects=False)
        assert r.status_code == 302 and r.headers["Location"].startswith("/hub/login?next="), "alice is still in"
        bob = hub.client()
        r = bob.login("bob", people["bob"].password)
        # A login that must write (bob's first since the start) fails outright; one that need not, "works".
        assert r.status_code in (302, 500), f"bob's login: {r.status_code} {page_text(r)[-300:]}"
        if r.status_code == 500:
            assert bob.login_error(r) == "Internal Server Error"
        assert not bob.logged_in()
        journal = m.journal("jupyterhub", since=since)
        assert DISK_FULL in journal
        assert "Failed to get current user" in journal
        m.run("rm /var/lib/jupyterhub/hhw-filler")
        assert hub.session(people["bob"]).logged_in()
        assert hub.session(people["alice"]).logged_in()
        assert_database_intact(m, before)
    finally:
        m.run("systemctl stop jupyterhub; rm -f /var/lib/jupyterhub/hhw-filler; "
              "rm -rf /root/hhw-state && cp -a /var/lib/jupyterhub /root/hhw-state && umount /var/lib/jupyterhub && "
              "cp -a /root/hhw-state/. /var/lib/jupyterhub/ && rm -rf /root/hhw-state")  # fmt: skip
        hub.start()
        hub.wait_up()
    assert_database_intact(m, before)


def test_hub_listens_on_loopback_only(hub):
    assert_loopback_only(hub.machine, 8000)


def test_check_your_hub_notebook_inside_alices_server(hub, people):
    """As the chapter says: upload the notebook to alice's JupyterLab, run all cells, see every user and route."""
    client = hub.session(people["alice"])
    client.ensure_server("alice")
    assert one_plus_one(client, "alice") == "2"
    users.upload(client, "alice", REPO / "book" / "check-your-hub.ipynb")
    outputs = run_notebook(client, "alice", "check-your-hub.ipynb")
    text = "\n".join(outputs)
    print(text)
    assert "JupyterHub 6.1.1" in text
    assert "alice (admin)" in text
    assert re.search(r"^bob +admin=False", text, re.M), "the users list (server token with read:users) is missing"
    assert re.search(r"^/user/alice/ +-> http://127\.0\.0\.1:\d+", text, re.M), "the proxy's routes are missing"


def test_check_your_hub_notebook_in_bobs_server_shows_only_bob(hub, people):
    """bob's server token holds only what bob may read: no user list, no routes."""
    client = hub.session(people["bob"])
    client.ensure_server("bob")
    users.upload(client, "bob", REPO / "book" / "check-your-hub.ipynb")
    text = "\n".join(run_notebook(client, "bob", "check-your-hub.ipynb"))
    assert "bob (not an admin)" in text
    assert "not an admin: the hub would answer 403 Forbidden to /users" in text
    assert "alice" not in text


@pytest.mark.disruptive
def test_removing_an_admin_from_the_config_does_not_revoke(hub, people):
    """admin_users only grants: bob, made admin once, stays admin after his name leaves the config."""
    make_bob_admin = 's/^c.Authenticator.admin_users = .*/c.Authenticator.admin_users = {"alice", "bob"}/'
    with hub.edited_config(sed=make_bob_admin):
        assert hub.session(people["bob"]).get("/hub/admin").status_code == 200
    # The config names alice alone again, and the hub restarted: bob is still an admin.
    bob = hub.session(people["bob"])
    assert bob.get("/hub/admin").status_code == 200, "bob lost admin rights without being revoked"
    # Revoke: an admin sets admin=false through the REST API (or the admin page's "Edit User").
    alice = hub.session(people["alice"])
    token = alice.create_token("alice", note="revoke bob")
    r = alice.api("PATCH", "/users/bob", token, json={"admin": False})
    assert r.status_code == 200 and r.json()["admin"] is False
    assert hub.session(people["bob"]).get("/hub/admin").status_code == 403


@pytest.mark.fault
@pytest.mark.disruptive
def test_name_taken_out_of_allowed_users_is_locked_out(hub, people):
    """allow_existing_users = False: only the names in allowed_users count, not the database."""
    without_bob = 's/^c.Authenticator.allowed_users = .*/c.Authenticator.allowed_users = {"alice"}/'
    with hub.edited_config(sed=without_bob):
        r = hub.client().login("bob", people["bob"].password)
        assert r.status_code == 403
        assert "User 'bob' not allowed." in hub.journal()


@pytest.mark.disruptive
def test_with_allow_existing_users_a_removed_name_still_logs_in(hub, people):
    """JupyterHub's default when allowed_users is set: everyone in the database may still log in."""
    without_bob = (
        's/^c.Authenticator.allowed_users = .*/c.Authenticator.allowed_users = {"alice"}/;'
        "s/^c.Authenticator.allow_existing_users = .*/c.Authenticator.allow_existing_users = True/"
    )
    with hub.edited_config(sed=without_bob):
        assert hub.client().login("bob", people["bob"].password).status_code == 302


@pytest.mark.fault
@pytest.mark.disruptive
def test_blocked_user_is_refused_although_allowed(hub, people):
    with hub.edited_config(sed="s/^c.Authenticator.blocked_users = .*/c.Authenticator.blocked_users = {'bob'}/"):
        client = hub.client()
        r = client.login("bob", people["bob"].password)
        assert r.status_code == 403 and client.login_error(r) == "Invalid username or password"
        assert "User 'bob' blocked." in hub.journal()


@pytest.mark.disruptive
def test_allowed_groups_lets_a_unix_group_in(hub, outsider):
    """PAM: allow a Unix group instead of naming each user (mallory joins the group, and gets in)."""
    hub.machine.run(f"groupadd --force hub-users && usermod -aG hub-users {outsider.name}")
    try:
        with hub.edited_config(append=('c.PAMAuthenticator.allowed_groups = {"hub-users"}',)):
            assert hub.client().login(outsider.name, outsider.password).status_code == 302
    finally:
        hub.machine.run("groupdel hub-users", check=False)


def test_check_your_hub_notebook_runs(hub, people):
    """The same notebook run from outside the hub (nbval), with a token from /hub/token, as its text says."""
    pytest.importorskip("nbval", reason="runs the notebook with nbval, from requirements.txt (the book's venv)")
    alice = people["alice"]
    client = hub.client()
    assert client.login(alice.name, alice.password).status_code == 302
    token = client.create_token(alice.name)
    env = {**os.environ, "JUPYTERHUB_API_URL": f"{hub.url}/hub/api", "JUPYTERHUB_API_TOKEN": token}
    for key in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        env.pop(key, None)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval-lax", "-p", "no:cacheprovider", "book/check-your-hub.ipynb"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert " passed" in proc.stdout


def test_chapter_shows_what_install_printed(hub):
    """Each "You should see" block after an install.sh section matches what it printed on this VM."""
    print(f"{check_chapter_outputs(hub.machine, hub.stage)} quoted lines checked")


# Keep this test last: it reads the logs after every other test of the stage has run.
def test_no_secret_of_the_tests_in_any_log(machine):
    """No password, API token, OAuth code or client secret the tests used, nor the machine's own secrets, in the
    journal, Traefik's access log or the containers' logs."""
    record("secrets-in-logs-02", assert_no_leaks(machine))
