"""Stage 07: people log in with their GitHub accounts (OAuth); a stand-in plays GitHub on the test VM."""

from __future__ import annotations

import base64
import json
import os
import time
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from tests.harness import browser
from tests.harness.acme import PublicName, pebble_root, point_traefik_at_pebble
from tests.harness.chapter_outputs import check as check_chapter_outputs
from tests.harness.fixtures import Hub, public_name, set_password
from tests.harness.github import ENV_FILE, GitHubStandIn, default_accounts, follow_to_hub, write_secret
from tests.harness.images import boot_stage, ensure_stage_image, install_answers
from tests.harness.kernels import one_plus_one
from tests.harness.localcheck import test_target_local_passes_on_a_machine_built_by_the_book  # noqa: F401
from tests.harness.machine import VM_INSTALL_ENV, ContainerVM
from tests.harness.results import record
from tests.harness.secrets_audit import assert_no_leaks, secret_file_problems
from tests.harness.server_checks import test_your_server  # noqa: F401  (the checks of your own server)
from tests.harness.stages import all_stages
from tests.harness.testca import LEGACY_CA
from tests.harness.users import in_database, read_text, stop_server, write_text
from tests.harness.versions import check as check_versions
from tests.harness.waits import wait_for

NOT_AUTHORIZED = "Sorry, you are not currently authorized to use this hub. Please contact the hub administrator."
WRONG_SECRET = "An access token was not returned: The client_id and/or client_secret passed are incorrect."
MISMATCH = "OAuth error: The redirect_uri MUST match the registered callback URL for this application."
STRICT_X509 = (
    "ssl.SSLCertVerificationError: [SSL: CERTIFICATE_VERIFY_FAILED] "
    "certificate verify failed: CA cert does not include key usage extension"
)


def journal_since(hub, since: str) -> str:
    return hub.machine.journal("jupyterhub", since=since)


def test_login_page_offers_github_and_no_password_form(hub):
    r = hub.client().get("/hub/login")
    assert r.status_code == 200
    assert "Sign in with GitHub" in r.text
    assert 'name="password"' not in r.text


def test_round_trip_in_a_browser(hub, people, public, request):
    """The hub's login page, "Sign in with GitHub", GitHub's page, back, the spawn form, JupyterLab."""
    if not browser.CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium (scripts/setup-host.sh installs it)")
    seconds = browser.oauth_round_trip(
        public, people["alice"], button="Sign in with GitHub", provider_url=hub.github.url + "/login/oauth/authorize",
        login_field="#login_field", shots=("07-hub-login", "07-github-sign-in", "07-lab-after-github"),
        update_book=request.config.getoption("--update-screenshots"),
    )  # fmt: skip
    record("oauth-round-trip-browser", {"seconds_login_page_to_hub": round(seconds, 2)})


def test_named_user_logs_in_spawns_and_runs_code(hub, people):
    alice = people["alice"]
    started = time.monotonic()
    client = hub.session(alice)
    seconds = time.monotonic() - started
    record("oauth-round-trip", {"requests_seconds": round(seconds, 2)})
    client.ensure_server("alice", data={"image": "JupyterLab"})
    assert one_plus_one(client, "alice") == "2"
    assert client.get("/hub/api/user", headers={"X-XSRFToken": client.xsrf()}).json()["name"] == "alice"


def test_member_of_the_organization_gets_in(hub, people):
    """bob is in no allowed_users: his (private) membership of example-lab lets him in, thanks to read:org."""
    client = hub.session(people["bob"])
    assert client.logged_in()
    assert "bob" in in_database(hub.machine)


def test_login_is_lower_cased(hub):
    """GitHub login "Carol" (a public member) becomes the hub user "carol", her server /user/carol/."""
    carol = hub.github.accounts["carol"]
    client = hub.client()
    assert hub.github.login(client, carol.login, carol.password).status_code == 302
    assert "carol" in in_database(hub.machine)
    assert "Carol" not in in_database(hub.machine)


@pytest.mark.fault
def test_outsider_gets_403_and_no_server(hub, outsider):
    since = hub.machine.clock()
    client = hub.client()
    r = hub.github.login(client, outsider.login, outsider.password)
    assert r.status_code == 403
    assert NOT_AUTHORIZED in r.text
    log = journal_since(hub, since)
    assert "User mallory is not part of allowed_organizations" in log
    assert "mallory" not in in_database(hub.machine)
    assert hub.machine.run("docker container inspect jupyter-mallory", check=False).returncode != 0
    assert not client.logged_in()


@pytest.mark.fault
@pytest.mark.disruptive
def test_without_read_org_a_private_member_is_refused(hub, people):
    """Without the read:org scope GitHub shows the hub only public memberships: bob's is private."""
    since = hub.machine.clock()
    with hub.edited_config(sed="s/^c.GitHubOAuthenticator.scope = .*/c.GitHubOAuthenticator.scope = []/"):
        r = hub.github.login(hub.client(), people["bob"].login, people["bob"].password)
        assert r.status_code == 403
        assert NOT_AUTHORIZED in r.text
        assert "User bob is not part of allowed_organizations" in journal_since(hub, since)


def tampered(state: str) -> str:
    """The same state with another state_id (what a forged callback link carries)."""
    data = json.loads(base64.urlsafe_b64decode(state + "=" * (-len(state) % 4)))
    data["state_id"] = "0" * len(data["state_id"])
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def github_callback(hub, client, account) -> str:
    """Start a login and sign in at GitHub; the callback URL GitHub sends the browser to (not yet followed)."""
    start = client.get("/hub/oauth_login", allow_redirects=False)
    answer = hub.github.sign_in(start.headers["Location"], account.login, account.password)
    assert answer.status_code == 302
    return answer.headers["Location"]


@pytest.mark.fault
def test_tampered_state_is_refused_and_no_user_is_created(hub):
    carol = hub.github.accounts["carol"]
    before = in_database(hub.machine)
    since = hub.machine.clock()
    client = hub.client()
    callback = urlsplit(github_callback(hub, client, carol))
    query = parse_qs(callback.query)
    forged = f"{callback.path}?{urlencode({'code': query['code'][0], 'state': tampered(query['state'][0])})}"
    r = client.get(forged, allow_redirects=False)
    assert r.status_code == 400
    assert "OAuth state mismatch" in r.text
    assert "OAuth state mismatch:" in journal_since(hub, since)
    assert not client.logged_in()
    assert in_database(hub.machine) == before


@pytest.mark.fault
def test_replayed_callback_is_refused(hub, people):
    """A callback link used once (and then replayed, e.g. from history or a proxy log) logs nobody in."""
    client = hub.client()
    callback = github_callback(hub, client, hub.github.accounts["alice"])
    assert follow_to_hub(client, callback).status_code == 302  # the real login
    thief = hub.client()
    r = follow_to_hub(thief, callback)
    assert r.status_code == 400
    assert "OAuth state missing from cookies" in r.text
    assert not thief.logged_in()


@pytest.mark.fault
@pytest.mark.disruptive
def test_wrong_client_secret_says_so(hub, people):
    before = in_database(hub.machine)
    since = hub.machine.clock()
    right = hub.machine.output(f"grep ^GITHUB_CLIENT_SECRET= {ENV_FILE}").split("=", 1)[1]
    write_secret(hub.machine, "GITHUB_CLIENT_SECRET", "0" * 40)
    try:
        hub.restart()
        r = hub.github.login(hub.client(), people["alice"].login, people["alice"].password)
        assert r.status_code == 403
        assert WRONG_SECRET in r.text
        log = journal_since(hub, since)
        assert WRONG_SECRET in log
        assert "0" * 40 not in log and right not in log, "the client secret must never reach the journal"
    finally:
        write_secret(hub.machine, "GITHUB_CLIENT_SECRET", right)
        hub.restart()
    assert in_database(hub.machine) == before
    assert hub.session(people["alice"]).logged_in()  # the right secret back: logins work again


@pytest.mark.fault
@pytest.mark.disruptive
def test_callback_url_that_does_not_match_the_registered_one(hub, people):
    """http:// instead of https:// (the classic mistake behind a proxy): GitHub refuses, the hub says why."""
    sed = r"s#^\(c.GitHubOAuthenticator.oauth_callback_url = \)\"https://#\1\"http://#"
    with hub.edited_config(sed=sed):
        r = hub.github.login(hub.client(), people["alice"].login, people["alice"].password)
        assert r.status_code == 400
        assert MISMATCH in r.text


@pytest.mark.fault
@pytest.mark.disruptive
def test_github_enterprise_with_a_ca_python_313_refuses(hub, people):
    """A private CA made by a plain `openssl req -x509` (no key usage): the hub's Python 3.13 will not trust it."""
    python = hub.machine.output("/opt/jupyterhub/bin/python -c 'import sys; print(sys.version_info[:2] >= (3, 13))'")
    if python != "True":
        pytest.skip("Python before 3.13 (Debian 12) accepts a CA without key usage")
    since = hub.machine.clock()
    hub.github.issue_certificates(LEGACY_CA)
    hub.restart()
    try:
        r = hub.github.login(hub.client(), people["alice"].login, people["alice"].password)
        assert r.status_code == 500
        assert STRICT_X509 in journal_since(hub, since)
    finally:
        hub.github.issue_certificates()
        hub.restart()


@pytest.mark.fault
def test_admin_sees_the_admin_page_and_a_non_admin_gets_403(hub, people):
    assert hub.session(people["alice"]).get("/hub/admin").status_code == 200
    r = hub.session(people["bob"]).get("/hub/admin")
    assert r.status_code == 403
    assert "requires any of [admin-ui]" in r.text


def test_client_secret_is_only_in_the_environment_file(machine):
    assert machine.output(f"stat -c '%a %U' {ENV_FILE}") == "600 root"
    secret = machine.output(f"grep ^GITHUB_CLIENT_SECRET= {ENV_FILE}").split("=", 1)[1]
    assert len(secret) >= 20
    found = machine.run(f"grep -rlF {secret} /etc/jupyterhub /var/lib/jupyterhub /opt/jupyterhub/etc",
                        check=False).stdout.split()  # fmt: skip
    assert found == [ENV_FILE]
    assert secret not in machine.journal("jupyterhub", lines=3000)


# -- the way here from stage 06 -----------------------------------------------------


@pytest.fixture(scope="module")
def veteran(machine, stage, tmp_path_factory):
    """A stage 06 machine in use (alice's and bob's files in their volumes), then upgraded by this install.sh."""
    if not isinstance(machine, ContainerVM):
        pytest.skip("the way from stage 06 is tried on a test VM of stage 06, not on your machine")
    previous = next(s for s in all_stages() if s.number == stage.number - 1)
    vm = boot_stage(ensure_stage_image(previous), purpose="stage07-upgrade")
    try:
        name = public_name(stage)
        point_traefik_at_pebble(vm, name)
        root = tmp_path_factory.mktemp("veteran") / "root.pem"
        root.write_text(pebble_root(vm) + "\n")
        public = PublicName(name, https_port=vm.ports[443], http_port=vm.ports[80])
        hub = Hub(vm, previous, public.https_url, verify=str(root), session_factory=lambda: public.session(str(root)))
        hub.wait_up()
        for user in ("alice", "bob"):
            person = set_password(vm, user)
            client = hub.session(person)
            client.start_server(user, data={"image": "JupyterLab"})
            write_text(client, user, "from-stage-06.txt", f"{user}'s notes")
            stop_server(client, user, client.create_token(user))
        vm.copy_in(stage.path, stage.vm_dir)
        proc = vm.run("bash install.sh", cwd=stage.vm_dir, env={**VM_INSTALL_ENV, **install_answers()}, timeout=600)
        assert "Using Authenticator: oauthenticator.github.GitHubOAuthenticator" in proc.stdout
        github = GitHubStandIn(vm, f"https://{name}/hub/oauth_callback", default_accounts())
        github.start(tmp_path_factory.mktemp("veteran-github"))
        hub.stage, hub.github = stage, github
        hub.restart()
        yield hub
        github.stop()
    finally:
        if not os.environ.get("HHW_KEEP_VM"):
            vm.remove()


def test_users_of_stage_06_find_their_files(veteran):
    """alice and bob, PAM users until stage 06, log in through GitHub (same names) and find their files."""
    for user in ("alice", "bob"):
        account = veteran.github.accounts[user]
        client = veteran.client()
        assert veteran.github.login(client, account.login, account.password).status_code == 302
        client.start_server(user, data={"image": "JupyterLab"})
        assert read_text(client, user, "from-stage-06.txt") == f"{user}'s notes"


@pytest.mark.fault
def test_an_old_user_no_rule_names_is_refused(veteran):
    """bob out of the organization: his user from stage 06 is still in the database, yet he is refused."""
    bob = veteran.github.accounts["bob"]
    veteran.github.accounts["bob"] = type(bob)(bob.login, bob.password, {})
    veteran.github.restart()
    try:
        since = veteran.machine.clock()
        r = veteran.github.login(veteran.client(), bob.login, bob.password)
        assert r.status_code == 403
        assert "bob" in in_database(veteran.machine)
        refused = "User bob is not part of allowed_organizations"
        wait_for("the refusal in the journal", lambda: refused in veteran.machine.journal("jupyterhub", since=since),
                 timeout=10)  # fmt: skip
    finally:
        veteran.github.accounts["bob"] = bob
        veteran.github.restart()


@pytest.mark.disruptive
def test_a_user_renamed_to_their_github_login_keeps_their_files(veteran):
    """bob's GitHub login is Bob-Smith: rename-user.sh renames him (server stopped, volume copied) first."""
    bob = veteran.github.accounts["bob"]
    veteran.github.accounts["bob-smith"] = type(bob)("Bob-Smith", bob.password, bob.orgs)
    veteran.github.restart()
    alice = veteran.github.accounts["alice"]
    admin = veteran.client()
    assert veteran.github.login(admin, alice.login, alice.password).status_code == 302
    token = admin.create_token("alice", note="rename-user.sh")
    proc = veteran.machine.run("bash rename-user.sh bob bob-smith", cwd=veteran.stage.vm_dir,
                               env={"JUPYTERHUB_API_TOKEN": token})  # fmt: skip
    assert proc.stdout.splitlines() == [
        "stopping bob's server",
        "renamed bob to bob-smith in the hub",
        "restarted the hub",
        "copied volume jupyterhub-user-bob to jupyterhub-user-bob-2dsmith"
        " (remove the old one when bob-smith has checked)",
    ]
    veteran.wait_up()
    client = veteran.client()
    assert veteran.github.login(client, "Bob-Smith", bob.password).status_code == 302
    client.start_server("bob-smith", data={"image": "JupyterLab"})
    assert read_text(client, "bob-smith", "from-stage-06.txt") == "bob's notes"
    assert "bob" not in in_database(veteran.machine)
    assert token not in veteran.machine.journal("jupyterhub", lines=3000)


def test_versions_are_those_the_book_lists(machine):
    """book/intro.md's versions table, column of this machine's Debian release."""
    record("versions-07", check_versions(machine, ("oauthenticator",)))


def test_chapter_shows_what_install_printed(machine, stage):
    """Each "You should see" block after an install.sh section matches what it printed on this VM."""
    print(f"{check_chapter_outputs(machine, stage)} quoted lines checked")


def test_secret_files_are_private(machine, stage):
    """Every secret file of the stages so far: 0600 and root's, or a service's where it must read it (the reason
    is in tests/harness/secrets_audit.py)."""
    problems = secret_file_problems(machine, stage.number)
    assert not problems, "; ".join(problems)


# Keep this test last: it reads the logs after every other test of the stage has run.
def test_no_secret_of_the_tests_in_any_log(machine):
    """No password, API token, OAuth code or client secret the tests used, nor the machine's own secrets, in the
    journal, Traefik's access log or the containers' logs."""
    record("secrets-in-logs-07", assert_no_leaks(machine))
