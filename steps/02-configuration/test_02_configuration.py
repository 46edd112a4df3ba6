"""Stage 02: admins and allowed users, secrets in 0600 files, state that survives a restart."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from tests.harness.stages import REPO, STEPS
from tests.harness.waits import wait_for

SECRETS = ("/etc/jupyterhub/secrets/cookie_secret", "/etc/jupyterhub/secrets/proxy_auth_token")


def test_admin_sees_admin_page(hub, people, screenshot):
    alice = people["alice"]
    client = hub.client()
    assert client.login(alice.name, alice.password).status_code == 302
    r = client.get("/hub/admin")
    assert r.status_code == 200 and r.url.endswith("/hub/admin")
    screenshot(hub.url + "/hub/admin", "02-admin-page", login=(alice.name, alice.password),
               wait_for="text=Start All")  # fmt: skip


def test_non_admin_is_refused_admin_page(hub, people):
    bob = people["bob"]
    client = hub.client()
    assert client.login(bob.name, bob.password).status_code == 302
    r = client.get("/hub/admin")
    assert r.status_code == 403


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
    assert hub.machine.run("test -f /var/lib/jupyterhub/jupyterhub.sqlite", check=False).returncode == 0
    # Nothing secret ships in the step directory the reader copies.
    names = {p.name for p in (STEPS / hub.stage.name).rglob("*")}
    assert not names & {"cookie_secret", "proxy_auth_token", "jupyterhub_cookie_secret", "jupyterhub.sqlite"}


def test_login_survives_hub_restart(hub, people):
    bob = people["bob"]
    client = hub.client()
    assert client.login(bob.name, bob.password).status_code == 302
    assert client.logged_in()
    hub.restart()
    assert client.logged_in(), "the login cookie no longer works after a restart: was the cookie secret kept?"


def test_reference_config_was_generated(hub):
    reference = hub.machine.output("cat /etc/jupyterhub/jupyterhub_config.reference.py")
    assert "# c.Authenticator.admin_users = set()" in reference
    assert "# c.JupyterHub.cookie_secret_file = 'jupyterhub_cookie_secret'" in reference


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


def test_check_your_hub_notebook_runs(hub, people):
    """The book's "check your hub" notebook runs clean (nbval) against this hub with alice's token."""
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
