"""Stage 09: people log in with an OpenID Connect provider; groups, tokens in auth_state, refresh, token exchange.

A real provider (panva's oidc-provider, OpenID Certified) stands in for the reader's,
in the test VM (tests/harness/oidc.py).
"""

from __future__ import annotations

import base64
import json
import re
import shlex
import time
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import pytest

from tests.harness import browser
from tests.harness.chapter_outputs import check as check_chapter_outputs
from tests.harness.github import follow_to_hub, write_secret
from tests.harness.hubclient import HubClient
from tests.harness.kernels import one_plus_one
from tests.harness.localcheck import test_target_local_passes_on_a_machine_built_by_the_book  # noqa: F401
from tests.harness.oidc import CATALOGUE, ENV_FILE, OAuthError
from tests.harness.results import record
from tests.harness.secrets_audit import assert_no_leaks, remember_secret, secret_file_problems
from tests.harness.server_checks import test_your_server  # noqa: F401  (the checks of your own server)
from tests.harness.users import container, in_database, stop_server
from tests.harness.versions import check as check_versions

NOT_AUTHORIZED = "Sorry, you are not currently authorized to use this hub. Please contact the hub administrator."
WRONG_SECRET = "An access token was not returned: client authentication failed (invalid_client)"
LOG_IN_AGAIN = "auth has expired for bob, login again"
STALE = "User bob has stale auth info. Login is required to refresh."
NOT_SERVED = (
    "The hub could not get a token for https://storage.example.org: "
    "tokens for the audience https://storage.example.org are not issued (invalid_target)"
)
NOT_ISSUED = "subject_token is not an active access token of this provider (invalid_grant)"
FORM = {"image": "JupyterLab", "size": "small"}

# Every token the tests saw (auth_state, exchanged): none may reach a journal or an access log.
SEEN: set[str] = set()

# Verifies a JWT with the provider's keys (JWKS), with the hub's own Python (PyJWT and
# cryptography, which oauthenticator and auth_state need); reads everything from stdin.
VERIFY = """
import json, sys, jwt
data = json.load(sys.stdin)
header = jwt.get_unverified_header(data["token"])
key = next(k for k in data["jwks"]["keys"] if k["kid"] == header["kid"])
try:
    claims = jwt.decode(data["token"], jwt.PyJWK(key).key, algorithms=["RS256"],
                        audience=data["audience"], issuer=data["issuer"])
except jwt.InvalidTokenError as e:
    print(json.dumps({"error": f"{type(e).__name__}: {e}"}))
else:
    print(json.dumps({"header": header, "claims": claims}))
"""


def verify_jwt(hub, token: str) -> dict:
    """The header and claims of ``token`` if it verifies against the provider's JWKS (else {"error": ...})."""
    data = {"token": token, "jwks": hub.oidc.jwks(), "audience": CATALOGUE, "issuer": hub.oidc.issuer}
    return json.loads(hub.machine.output(f"/opt/jupyterhub/bin/python -c {shlex.quote(VERIFY)}",
                                         input=json.dumps(data)))  # fmt: skip


def admin_token(hub, people) -> tuple[HubClient, str]:
    """alice (the group staff: an admin) logged in now, and an API token of hers."""
    client = hub.session(people["alice"])
    return client, client.create_token("alice", note="stage 09 tests")


def auth_state(hub, people, name: str) -> dict:
    """The user's auth_state, as an admin reads it through the REST API (admin:auth_state)."""
    client, token = admin_token(hub, people)
    r = client.api("GET", f"/users/{name}", token)
    r.raise_for_status()
    state = r.json()["auth_state"]
    SEEN.update(t for t in (state.get("access_token"), state.get("refresh_token"), state.get("id_token")) if t)
    return state


def no_server(hub, people, name: str) -> None:
    """Stop the user's server if it runs (as an admin)."""
    client, token = admin_token(hub, people)
    if client.api("GET", f"/users/{name}", token).json()["servers"]:
        stop_server(client, name, token)


def exchanged_token(hub, name: str) -> str:
    """$CATALOGUE_TOKEN in the user's running container."""
    token = hub.machine.output(f"docker exec jupyter-{name} printenv CATALOGUE_TOKEN")
    SEEN.add(token)
    return token


def test_login_page_offers_the_provider_and_no_password_form(hub):
    r = hub.client().get("/hub/login")
    assert r.status_code == 200
    assert "Sign in with Example Institute" in r.text
    assert 'name="password"' not in r.text


def test_endpoints_are_those_of_the_discovery_document(hub):
    """The three URLs the config builds from the issuer are what the provider's discovery document lists."""
    found = hub.oidc.discovery()
    assert found["issuer"] == hub.oidc.issuer
    assert found["authorization_endpoint"] == f"{hub.oidc.issuer}/auth"
    assert found["token_endpoint"] == f"{hub.oidc.issuer}/token"
    assert found["userinfo_endpoint"] == f"{hub.oidc.issuer}/me"
    assert "client_secret_basic" in found["token_endpoint_auth_methods_supported"]


def test_round_trip_in_a_browser(hub, people, public, request):
    """The hub's login page, "Sign in with Example Institute", the provider's form, back, the spawn form, JupyterLab."""
    if not browser.CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium (scripts/setup-host.sh installs it)")
    seconds = browser.oauth_round_trip(
        public, people["alice"], button="Sign in with Example Institute",
        provider_url=hub.oidc.issuer + "/interaction/", login_field="#login",
        shots=("09-hub-login", "09-provider-sign-in", "09-lab-after-oidc"),
        update_book=request.config.getoption("--update-screenshots"),
    )  # fmt: skip
    record("oidc-round-trip-browser", {"seconds_login_page_to_hub": round(seconds, 2)})


def test_member_of_an_allowed_group_gets_in_spawns_and_runs_code(hub, people):
    """bob, named nowhere in the config, is in the provider's group physics: in, with the hub's group physics."""
    bob = people["bob"]
    started = time.monotonic()
    client = hub.session(bob)
    record("oidc-round-trip", {"requests_seconds": round(time.monotonic() - started, 2)})
    client.ensure_server("bob", data=FORM)
    record("oidc-spawn", {"seconds": round(client.spawn_seconds or 0, 2)})
    assert one_plus_one(client, "bob") == "2"
    model = client.get("/hub/api/user", headers={"X-XSRFToken": client.xsrf()}).json()
    assert model["name"] == "bob"
    assert model["groups"] == ["physics"]
    assert model["admin"] is False


@pytest.mark.fault
def test_outsider_gets_403_and_is_not_created(hub, outsider):
    """mallory is in no allowed group: the hub's 403 page, no user, no container."""
    since = hub.machine.clock()
    client = hub.client()
    r = hub.oidc.login(client, outsider.login, outsider.password)
    assert r.status_code == 403
    assert NOT_AUTHORIZED in r.text
    assert "User 'mallory' not allowed." in hub.machine.journal("jupyterhub", since=since)
    assert "mallory" not in in_database(hub.machine)
    assert container(hub.machine, "jupyter-mallory") is None
    assert not client.logged_in()


def test_admin_group_gives_the_admin_page_until_the_provider_drops_it(hub, people):
    """alice (staff) is an admin; out of staff at the provider, her next login takes it away."""
    assert hub.session(people["alice"]).get("/hub/admin").status_code == 200
    assert hub.session(people["bob"]).get("/hub/admin").status_code == 403
    alice = hub.oidc.accounts["alice"]
    hub.oidc.accounts["alice"] = type(alice)(alice.login, alice.password, alice.name, ("physics",))
    hub.oidc.restart()
    try:
        client = hub.session(people["alice"])
        r = client.get("/hub/admin")
        assert r.status_code == 403
        assert "requires any of [admin-ui]" in r.text
        assert client.get("/hub/api/user", headers={"X-XSRFToken": client.xsrf()}).json()["groups"] == ["physics"]
    finally:
        hub.oidc.accounts["alice"] = alice
        hub.oidc.restart()
    assert hub.session(people["alice"]).get("/hub/admin").status_code == 200  # staff again: admin again


def test_auth_state_holds_the_tokens_encrypted_at_rest(hub, people):
    """The hub keeps the access, refresh and ID tokens (an admin sees them), but the database file holds none."""
    hub.session(people["carol"])
    state = auth_state(hub, people, "carol")
    assert state["oauth_user"]["preferred_username"] == "carol"
    assert state["oauth_user"]["groups"] == ["chemistry"]
    tokens = {k: state[k] for k in ("access_token", "refresh_token", "id_token")}
    assert all(tokens.values()), f"missing tokens: {[k for k, v in tokens.items() if not v]}"
    database = "/var/lib/jupyterhub/jupyterhub.sqlite"
    for kind, token in tokens.items():
        found = hub.machine.run(f"grep -rlF -e {shlex.quote(token)} /var/lib/jupyterhub /etc/jupyterhub", check=False)
        assert found.stdout.strip() == "", f"the {kind} is in clear in {found.stdout.split()}"
    rows = hub.machine.output(
        "python3 -c \"import sqlite3; db = sqlite3.connect('file:" + database + "?mode=ro', uri=True); "
        "print(len(db.execute('select encrypted_auth_state from users where name = ?', ('carol',)).fetchone()[0]))\""
    )
    assert int(rows) > 500, "carol's encrypted auth_state should be in the database"


def test_the_server_holds_a_token_for_the_catalogue(hub, people):
    """$CATALOGUE_TOKEN in bob's server: for the catalogue, about bob, signed with the provider's key."""
    no_server(hub, people, "bob")
    since = hub.machine.clock()
    client = hub.session(people["bob"])
    client.start_server("bob", data=FORM)
    token = exchanged_token(hub, "bob")
    found = verify_jwt(hub, token)
    assert "error" not in found, found
    claims = found["claims"]
    assert claims["aud"] == CATALOGUE
    assert claims["sub"] == "bob"
    assert claims["iss"] == hub.oidc.issuer
    assert claims["groups"] == ["physics"]
    assert found["header"]["kid"] in {k["kid"] for k in hub.oidc.jwks()["keys"]}
    assert token != auth_state(hub, people, "bob")["access_token"]
    # A changed signature does not verify: the check is real.
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    assert verify_jwt(hub, forged)["error"].startswith("InvalidSignatureError")
    log = hub.machine.journal("jupyterhub", since=since)
    assert f"Exchanged bob's access token for a token for {CATALOGUE}" in log


def test_an_expired_access_token_is_refreshed_before_the_spawn_and_the_new_one_exchanged(hub, people):
    """Access tokens of 5 s: carol's has expired when she starts; the hub refreshes it, then exchanges the new one."""
    hub.oidc.access_token_ttl = 5
    hub.oidc.restart()
    try:
        no_server(hub, people, "carol")
        client = hub.session(people["carol"])
        first = auth_state(hub, people, "carol")["access_token"]
        time.sleep(6)
        assert hub.oidc.userinfo(first).status_code == 401  # expired
        since = hub.machine.clock()
        client.start_server("carol", data=FORM)
        fresh = auth_state(hub, people, "carol")["access_token"]
        assert fresh != first
        claims = verify_jwt(hub, exchanged_token(hub, "carol"))["claims"]
        assert claims["sub"] == "carol"
        log = hub.machine.journal("jupyterhub", since=since)
        assert log.index("Refreshing oauth access token for carol") < log.index("Exchanged carol's access token")
        # The expired token could not have been the one exchanged: the provider refuses it.
        with pytest.raises(OAuthError) as refused:
            hub.oidc.exchange(first)
        assert refused.value.body["error"] == "invalid_grant"
    finally:
        hub.oidc.access_token_ttl = 600
        hub.oidc.restart()


@pytest.mark.fault
def test_a_revoked_refresh_token_means_log_in_again_and_no_server(hub, people):
    """bob's refresh token revoked at the provider (his grant ended): no server, "login again"; a login mends it."""
    no_server(hub, people, "bob")
    client = hub.session(people["bob"])
    hub.oidc.revoke(auth_state(hub, people, "bob")["refresh_token"])
    since = hub.machine.clock()
    client.get("/hub/spawn")
    r = client.post("/hub/spawn", data={**FORM, "_xsrf": client.xsrf()})
    assert r.status_code == 403
    assert LOG_IN_AGAIN in r.text
    log = hub.machine.journal("jupyterhub", since=since)
    assert "Error using refresh_token for bob" in log
    assert "Requiring fresh login." in log
    assert "AttributeError" not in log  # JupyterHub 6.1.1 alone: no attribute '_token_authenticated', a 500
    assert container(hub.machine, "jupyter-bob") is None
    client = hub.session(people["bob"])  # logging in again mends it
    client.start_server("bob", data=FORM)
    assert verify_jwt(hub, exchanged_token(hub, "bob"))["claims"]["sub"] == "bob"


@pytest.mark.fault
@pytest.mark.disruptive
def test_a_new_crypt_key_means_log_in_again(hub, people):
    """JUPYTERHUB_CRYPT_KEY replaced (lost): the stored tokens cannot be read, so the hub sends bob to its
    login page (his first request after the restart checks them); a login mends it."""
    no_server(hub, people, "bob")
    client = hub.session(people["bob"])
    old = hub.machine.output(f"grep ^JUPYTERHUB_CRYPT_KEY= {ENV_FILE}").split("=", 1)[1]
    write_secret(hub.machine, "JUPYTERHUB_CRYPT_KEY", hub.machine.output("openssl rand -hex 32"))
    try:
        hub.restart()
        since = hub.machine.clock()
        r = client.get("/hub/spawn", allow_redirects=False)
        assert r.status_code == 302
        assert r.headers["Location"].startswith("/hub/login?next=")
        log = hub.machine.journal("jupyterhub", since=since)
        assert "Failed to retrieve encrypted auth_state for bob" in log
        assert STALE in log
        assert "AttributeError" not in log
        assert container(hub.machine, "jupyter-bob") is None
        client = hub.session(people["bob"])  # a new login stores new tokens, under the new key
        client.start_server("bob", data=FORM)
    finally:
        no_server(hub, people, "bob")
        write_secret(hub.machine, "JUPYTERHUB_CRYPT_KEY", old)
        hub.restart()


def tampered(state: str) -> str:
    """The same state with another state_id (what a forged callback link carries)."""
    data = json.loads(base64.urlsafe_b64decode(state + "=" * (-len(state) % 4)))
    data["state_id"] = "0" * len(data["state_id"])
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


@pytest.mark.fault
def test_tampered_state_is_refused_and_no_user_is_created(hub):
    carol = hub.oidc.accounts["carol"]
    before = in_database(hub.machine)
    since = hub.machine.clock()
    client = hub.client()
    start = client.get("/hub/oauth_login", allow_redirects=False)
    answer = hub.oidc.sign_in(start.headers["Location"], carol.login, carol.password)
    callback = urlsplit(answer.headers["Location"])
    query = {k: v[0] for k, v in parse_qs(callback.query).items()}
    query["state"] = tampered(query["state"])
    r = client.get(f"{callback.path}?{urlencode(query)}", allow_redirects=False)
    assert r.status_code == 400
    assert "OAuth state mismatch" in r.text
    assert "OAuth state mismatch:" in hub.machine.journal("jupyterhub", since=since)
    assert not client.logged_in()
    assert in_database(hub.machine) == before


@pytest.mark.fault
@pytest.mark.disruptive
def test_wrong_client_secret_says_so(hub, people):
    """The provider refuses the code for a wrong secret (HTTP 401, invalid_client); the hub says so in a 403."""
    since = hub.machine.clock()
    right = hub.machine.output(f"grep ^OIDC_CLIENT_SECRET= {ENV_FILE}").split("=", 1)[1]
    write_secret(hub.machine, "OIDC_CLIENT_SECRET", "0" * 43)
    try:
        hub.restart()
        r = hub.oidc.login(hub.client(), people["alice"].login, people["alice"].password)
        assert r.status_code == 403
        assert WRONG_SECRET in r.text
        log = hub.machine.journal("jupyterhub", since=since)
        assert WRONG_SECRET in log
        assert "0" * 43 not in log and right not in log, "the client secret must never reach the journal"
    finally:
        write_secret(hub.machine, "OIDC_CLIENT_SECRET", right)
        hub.restart()


@pytest.mark.fault
def test_the_exchange_refuses_a_token_the_provider_did_not_issue(hub, people):
    """Token exchange at the provider: a made-up token, an ID token, an unknown audience are refused."""
    with pytest.raises(OAuthError) as made_up:
        hub.oidc.exchange("not-a-token-of-this-provider")
    assert made_up.value.status == 400
    assert f"{made_up.value.body['error_description']} ({made_up.value.body['error']})" == NOT_ISSUED
    hub.session(people["carol"])
    state = auth_state(hub, people, "carol")
    with pytest.raises(OAuthError) as id_token:
        hub.oidc.exchange(state["id_token"])
    assert id_token.value.body["error"] == "invalid_grant"
    with pytest.raises(OAuthError) as elsewhere:
        hub.oidc.exchange(state["access_token"], audience="https://storage.example.org")
    assert elsewhere.value.body == {
        "error": "invalid_target",
        "error_description": "tokens for the audience https://storage.example.org are not issued",
    }
    started = time.monotonic()
    answer = hub.oidc.exchange(state["access_token"])
    record("oidc-exchange", {"seconds_through_tunnel": round(time.monotonic() - started, 3)})
    SEEN.add(answer["access_token"])


@pytest.mark.fault
@pytest.mark.disruptive
def test_an_audience_the_provider_does_not_serve_stops_the_start(hub, people):
    """exchange_audience set to a service the provider issues no tokens for: the spawn page says so; no server."""
    no_server(hub, people, "bob")
    sed = 's#^c.ExchangeAuthenticator.exchange_audience = .*#c.ExchangeAuthenticator.exchange_audience = "https://storage.example.org"#'
    with hub.edited_config(sed=sed):
        client = hub.session(people["bob"])
        client.get("/hub/spawn")
        r = client.post("/hub/spawn", data={**FORM, "_xsrf": client.xsrf()})
        assert r.status_code == 403
        assert NOT_SERVED in r.text
        assert NOT_SERVED in hub.journal(lines=200)
        assert container(hub.machine, "jupyter-bob") is None


def test_logout_ends_the_session_at_the_provider(hub, people):
    """The hub's logout sends the browser to the provider's end_session_endpoint; after it, the form again."""
    alice = people["alice"]
    browser_at_provider = hub.oidc.session()
    client = hub.client()
    start = client.get("/hub/oauth_login", allow_redirects=False)
    answer = hub.oidc.sign_in(start.headers["Location"], alice.login, alice.password, session=browser_at_provider)
    assert follow_to_hub(client, answer.headers["Location"]).status_code == 302
    again = hub.oidc.sign_in(hub.oidc.authorize_url(), "", "", session=browser_at_provider)
    assert again.is_redirect, "signed in at the provider: no form the second time"
    out = client.get("/hub/logout", allow_redirects=False)
    assert out.status_code == 302
    assert out.headers["Location"].startswith(f"{hub.oidc.issuer}/session/end?client_id={hub.oidc.client_id}")
    assert not client.logged_in()
    confirm = browser_at_provider.get(out.headers["Location"], timeout=30)
    assert confirm.status_code == 200
    form = re.search(r'<form[^>]*action="([^"]+)"', confirm.text)
    xsrf = re.search(r'name="xsrf" value="([^"]+)"', confirm.text)
    assert form and xsrf, confirm.text[:500]
    done = browser_at_provider.post(urljoin(confirm.url, form.group(1)), data={"xsrf": xsrf.group(1), "logout": "yes"},
                                    allow_redirects=False, timeout=30)  # fmt: skip
    assert done.is_redirect
    assert done.headers["Location"].startswith(f"https://{urlsplit(hub.oidc.redirect_uris[0]).netloc}/hub/login")
    form_again = hub.oidc.sign_in(hub.oidc.authorize_url(), "", "", session=browser_at_provider)
    assert not form_again.is_redirect and 'name="password"' in form_again.text


def test_no_token_appears_in_any_journal_or_access_log(hub, people):
    """Every token the tests saw (access, refresh, ID, exchanged): in no journal, no access log, no container log."""
    for name in ("alice", "bob", "carol"):
        auth_state(hub, people, name)
    assert len(SEEN) >= 8, f"too few tokens seen to mean anything: {len(SEEN)}"
    for token in SEEN:  # the module's last test looks for them again, after every other test
        remember_secret("OIDC token (auth_state, exchanged)", token)
    assert_no_leaks(hub.machine)


def test_versions_are_those_the_book_lists(machine):
    """book/intro.md's versions table, column of this machine's Debian release."""
    record("versions-09", check_versions(machine, ("oauthenticator",)))


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
    record("secrets-in-logs-09", assert_no_leaks(machine))
