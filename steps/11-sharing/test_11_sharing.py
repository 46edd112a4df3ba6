"""Stage 11: sharing and roles: a user shares a server with a colleague and revokes it; instructors look after
the servers of the group students; Runboard shared with a colleague.

People log in through the OpenID Connect provider of stage 09 (tests/harness/oidc.py). For this stage the
tests give the provider's accounts a classroom: bob and carol are also in the group students, and dave, in the
group instructors only, joins them.
"""

from __future__ import annotations

import html
import secrets
import shlex
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from tests.harness import browser
from tests.harness.chapter_outputs import check as check_chapter_outputs
from tests.harness.fixtures import Person
from tests.harness.hubclient import HIDDEN, HubClient
from tests.harness.kernels import kernel, one_plus_one
from tests.harness.localcheck import test_target_local_passes_on_a_machine_built_by_the_book  # noqa: F401
from tests.harness.machine import ContainerVM
from tests.harness.oidc import Account
from tests.harness.results import record
from tests.harness.secrets_audit import assert_no_leaks, remember_secret
from tests.harness.server_checks import test_your_server  # noqa: F401  (the checks of your own server)
from tests.harness.users import container
from tests.harness.waits import wait_for

FORM = {"image": "JupyterLab", "size": "small"}
RUNBOARD = {"image": "Runboard (workflow runs)", "size": "small"}
CACHE_SECONDS = 10  # --HubOAuth.cache_max_age in jupyterhub_config.py

# What the hub answers, quoted in the chapter and the troubleshooting page.
NO_SHARES_SCOPE = "Action is not authorized with current scopes; requires any of [shares]"
NO_LIST_USERS = "Action is not authorized with current scopes; requires any of [list:users]"
NOT_FOUND = "No access to resources or resources not found"
SHARED_WITH_BOB = "bob may now open alice's server (access:servers!server=alice/)."
REVOKED_BOB = "bob may no longer open alice's server (an open session ends within the server's cache time)."
STAGE_DIR = "/root/hhw/steps/11-sharing"  # the reader's copy of the step on the test VM (Stage.vm_dir)


@pytest.fixture(scope="module")
def classroom(hub) -> dict[str, Person]:
    """The provider's accounts with a classroom: bob and carol students too, dave an instructor (not an admin).
    The provider restarts with them (before anybody of this module logs in)."""
    accounts = hub.oidc.accounts
    for name in ("bob", "carol"):
        a = accounts[name]
        accounts[name] = Account(a.login, a.password, a.name, (*a.groups, "students"))
    accounts["dave"] = Account("dave", "idp-" + secrets.token_urlsafe(12), "Dave Example", ("instructors",))
    hub.oidc.restart()
    return {n: Person(n, accounts[n].password, accounts[n].login) for n in ("alice", "bob", "carol", "dave")}


@pytest.fixture(scope="module")
def admin(hub, classroom) -> tuple[HubClient, str]:
    """alice (the group staff: an admin) logged in, and an API token of hers."""
    client = hub.session(classroom["alice"])
    return client, client.create_token("alice", note="stage 11 tests")


def message(r) -> str:
    """The hub's message in a JSON error answer."""
    try:
        return r.json().get("message", "")
    except ValueError:
        return r.text[:300]


def start(hub, classroom, name: str, form: dict[str, str] = FORM) -> HubClient:
    """``name`` logs in and starts a server with the form ``form`` (if none runs)."""
    client = hub.session(classroom[name])
    client.ensure_server(name, data=form)
    return client


def stop(admin, *names: str) -> None:
    """Stop these users' servers (an admin's request) and wait until they are gone."""
    client, token = admin
    for name in names:
        user = client.api("GET", f"/users/{name}", token)
        if user.status_code == 200 and user.json()["servers"]:
            client.api("DELETE", f"/users/{name}/server", token)
    for name in names:
        wait_for(f"{name}'s server to stop", lambda n=name: not client.api("GET", f"/users/{n}", token).json().get(
            "servers"), timeout=90)  # fmt: skip


def served_by(r, owner: str) -> bool:
    """True when the answer came from OWNER's server itself (not the hub's page about it)."""
    return r.status_code == 200 and urlsplit(r.url).path.startswith(f"/user/{owner}/")


def share(client: HubClient, token: str, owner: str, **body) -> dict:
    """POST /hub/api/shares/OWNER/ (the default server) with ``body`` ({"user": NAME} or {"group": NAME})."""
    r = client.api("POST", f"/shares/{owner}/", token, json=body)
    assert r.status_code == 200, f"sharing {owner}'s server with {body}: {r.status_code} {r.text[:300]}"
    return r.json()


def shared_with(client: HubClient, token: str, owner: str) -> list[str]:
    """The users OWNER's server is shared with (GET /hub/api/shares/OWNER/)."""
    r = client.api("GET", f"/shares/{owner}/", token)
    r.raise_for_status()
    return sorted(s["user"]["name"] for s in r.json()["items"] if s["user"])


def share_py(scripts, token: str, *args: str, check: bool = True):
    """``python3 share.py ARGS`` as the chapter runs it on alice's computer (here: the test VM, by the hub's name)."""
    return scripts.run(f"python3 share.py {shlex.join(args)}", cwd=STAGE_DIR, check=check,
                       env={"HUB_URL": "https://hub.example.org", "HUB_TOKEN": token})  # fmt: skip


@pytest.fixture(scope="module")
def alice_shares(hub, classroom, admin) -> Iterator[tuple[HubClient, str]]:
    """alice has a server; bob has logged in once (the hub knows his name); alice's token, sharing nothing."""
    hub.session(classroom["bob"])
    alice = start(hub, classroom, "alice")
    token = alice.create_token("alice", note="sharing")
    alice.api("DELETE", "/shares/alice/", token)
    yield alice, token
    alice.api("DELETE", "/shares/alice/", token)


# -- sharing ---------------------------------------------------------------------------------


def test_bob_opens_alices_server_shared_with_him_and_runs_code(hub, classroom, alice_shares, scripts):
    """alice shares her server with bob by name (share.py, her own token); bob opens it (Authorize, once)
    and runs code in a kernel of hers; both see the share in the API."""
    alice, token = alice_shares
    said = share_py(scripts, token, "with", "bob").stdout.strip()
    record("share-py-with", {"output": said})
    assert said == SHARED_WITH_BOB
    answer = alice.api("GET", "/shares/alice/", token).json()["items"][0]
    assert answer["scopes"] == ["access:servers!server=alice/"]
    assert answer["user"] == {"name": "bob"} and answer["kind"] == "user"
    assert shared_with(alice, token, "alice") == ["bob"]
    listed = share_py(scripts, token, "list").stdout.strip().splitlines()
    record("share-py-list", {"output": listed})
    assert listed[0].startswith("user bob, since ") and listed[-1] == "alice's server is shared with 1.", listed
    bob = hub.session(classroom["bob"])
    first = bob.get("/user/alice/lab")
    assert "/hub/api/oauth2/authorize" in first.url and "Authorize access" in first.text, first.url
    r = bob.open_server("alice")
    assert served_by(r, "alice"), f"bob did not get alice's JupyterLab: {r.status_code} {r.url}"
    assert one_plus_one(bob, "alice") == "2"
    bob_token = bob.create_token("bob", note="stage 11")
    mine = bob.api("GET", "/users/bob/shared", bob_token).json()["items"]
    assert [s["server"]["url"] for s in mine] == ["/user/alice/"]


@pytest.mark.fault
def test_nobody_else_gets_into_a_shared_server(hub, classroom, alice_shares, outsider):
    """alice's server, shared with bob only: carol (logged in) gets 403; somebody not logged in gets the login
    page; mallory (no allowed group) is refused at the login itself."""
    alice, token = alice_shares
    share(alice, token, "alice", user="bob")
    carol = hub.session(classroom["carol"])
    r = carol.open_server("alice")
    record("carol-on-alices-server", {"status": r.status_code, "url": urlsplit(r.url).path})
    assert r.status_code == 403
    nobody = hub.client().get("/user/alice/lab")
    assert urlsplit(nobody.url).path in ("/hub/login", "/hub/oauth_login") or "Sign in" in nobody.text
    assert not served_by(nobody, "alice")
    refused = hub.oidc.login(hub.client(), outsider.login, outsider.password)
    assert refused.status_code == 403


def test_a_share_code_lets_a_colleague_in(hub, classroom, alice_shares, request):
    """alice makes a share code; carol opens its accept URL (the hub's page "Accept sharing invitation",
    screenshot), accepts, and is in alice's server; alice sees carol among those it is shared with."""
    alice, token = alice_shares
    link, said = share_py(request.getfixturevalue("scripts"), token, "code", "3600").stdout.strip().splitlines()
    accept_url = link.removeprefix("https://hub.example.org")
    remember_secret("share code", accept_url.rsplit("=", 1)[1])
    assert accept_url.startswith("/hub/accept-share?code="), link
    record("share-py-code", {"output": [link.split("=", 1)[0] + "=...", said]})
    assert said.startswith("Anybody logged in who opens that link may open alice's server; the link expires 20")
    carol = hub.session(classroom["carol"])
    page = carol.get(accept_url)
    assert page.status_code == 200 and "Accept sharing invitation" in page.text
    fields = [(name, html.unescape(value)) for name, value in HIDDEN.findall(page.text)]
    r = carol.post("/hub/accept-share", data=fields)
    if not served_by(r, "alice"):
        r = carol.open_server("alice")
    assert served_by(r, "alice"), f"carol did not get alice's server: {r.status_code} {r.url}"
    assert "carol" in shared_with(alice, token, "alice")
    if isinstance(hub.machine, ContainerVM) and browser.CHROMIUM.exists():
        second = alice.api("POST", "/share-codes/alice/", token, json={"expires_in": 3600}).json()
        screenshot_accept_page(hub, request.getfixturevalue("public"), classroom["bob"], second["accept_url"], request)


def browser_login(pw_page, public, person: Person) -> None:
    """Log in through the provider in headless Chromium (the hub's button, the provider's form)."""
    pw_page.goto(f"https://{public.name}/hub/login")
    pw_page.click("text=Sign in with Example Institute")
    pw_page.wait_for_selector("#login")
    pw_page.fill("#login", person.login)
    pw_page.fill("#password", person.password)
    pw_page.click("button[type=submit]")
    pw_page.wait_for_url(f"https://{public.name}/hub/**")


def screenshot_accept_page(hub, public, person: Person, accept_url: str, request) -> None:
    """What a colleague sees who opens a share code's link: the screenshot for the chapter."""
    with browser.page(resolve={public.name: public.https_port}, insecure=True) as pw_page:
        browser_login(pw_page, public, person)
        pw_page.goto(f"https://{public.name}{accept_url}")
        pw_page.wait_for_selector("text=Accept invitation")
        browser.save(pw_page, "11-accept-share", update_book=request.config.getoption("--update-screenshots"))


def test_after_revocation_bob_is_refused(hub, classroom, alice_shares, scripts):
    """alice revokes bob's share while he is in her server: his next requests still pass until his server's
    cache of the hub's answer runs out (--HubOAuth.cache_max_age=10), then 403; a new login does not help.
    A kernel WebSocket bob opened before stays open: alice restarts her server to cut it."""
    alice, token = alice_shares
    share(alice, token, "alice", user="bob")
    bob = hub.session(classroom["bob"])
    assert served_by(bob.open_server("alice"), "alice")
    headers = {"X-XSRFToken": bob.xsrf("/user/alice/")}
    with kernel(bob, "alice") as k:
        assert k.execute("print(6 * 7)").strip() == "42"
        assert bob.get("/user/alice/api/contents", headers=headers).status_code == 200  # fills the cache now
        said = share_py(scripts, token, "revoke", "bob").stdout.strip()
        revoked = time.monotonic()
        assert said == REVOKED_BOB
        assert shared_with(alice, token, "alice") in ([], ["carol"])
        right_after = bob.get("/user/alice/api/contents", headers=headers).status_code

        def refused():
            return bob.get("/user/alice/api/contents", headers=headers).status_code == 403

        wait_for("bob to be refused by alice's server", refused, timeout=120, interval=0.5)
        seconds = time.monotonic() - revoked
        websocket_open = k.alive()
    record("revocation", {"status_right_after": right_after, "seconds_until_403": round(seconds, 1),
                          "cache_max_age": CACHE_SECONDS, "kernel_websocket_open_after": websocket_open})  # fmt: skip
    assert seconds <= CACHE_SECONDS + 30
    assert websocket_open, "the kernel's WebSocket was cut by the revocation (the chapter says it stays open)"
    again = hub.session(classroom["bob"])
    assert again.open_server("alice").status_code == 403


# -- groups and roles ------------------------------------------------------------------------


def test_an_instructor_starts_opens_and_stops_a_students_server(hub, classroom, admin):
    """dave (group instructors, not an admin) sees only the students, starts bob's server, opens it and runs
    code, stops it; alice (not a student) is out of his reach (404)."""
    stop(admin, "bob")
    hub.session(classroom["bob"])  # bob logs in (his groups, and fresh tokens for the start)
    dave = hub.session(classroom["dave"])
    token = dave.create_token("dave", note="stage 11")
    me = dave.api("GET", "/user", token).json()
    assert me["admin"] is False and me["groups"] == ["instructors"]
    listed = {u["name"] for u in dave.api("GET", "/users", token).json()}
    assert listed <= {"bob", "carol"} and "bob" in listed, listed
    r = dave.api("POST", "/users/bob/server", token, json={"size": "small", "image": "JupyterLab"})
    assert r.status_code in (201, 202), f"{r.status_code} {r.text[:300]}"
    r = dave.open_server("bob")
    if not served_by(r, "bob"):
        dave.wait_server("bob", timeout=120)
    assert one_plus_one(dave, "bob") == "2"
    r = dave.api("DELETE", "/users/bob/server", token)
    assert r.status_code in (202, 204)
    wait_for("bob's container to go", lambda: container(hub.machine, "jupyter-bob") is None, timeout=90)
    r = dave.api("GET", "/users/alice", token)  # every user may read names (sharing by name): nothing more
    assert r.status_code == 200 and set(r.json()) <= {"kind", "name", "admin", "user_info"}, r.text[:300]
    r = dave.api("POST", "/users/alice/server", token)
    assert r.status_code == 404 and message(r) == NOT_FOUND


@pytest.mark.fault
def test_a_student_cannot_open_another_students_server_nor_use_the_admin_api(hub, classroom, admin):
    """carol (a student) gets 403 on bob's server (a student too) and on listing the hub's users."""
    start(hub, classroom, "bob")
    carol = hub.session(classroom["carol"])
    r = carol.open_server("bob")
    assert r.status_code == 403
    token = carol.create_token("carol", note="stage 11")
    r = carol.api("GET", "/users", token)
    assert r.status_code == 403 and message(r) == NO_LIST_USERS
    assert carol.api("DELETE", "/users/bob/server", token).status_code == 404


@pytest.mark.fault
def test_nobody_shares_without_the_scope(hub, classroom, alice_shares, request):
    """A token of alice's without shares (made for reading her name only) cannot share her server (403); bob,
    who may open it, cannot share it on (404: the scope covers his own servers only)."""
    alice, _ = alice_shares
    r = alice.post("/hub/api/users/alice/tokens", json={"note": "names only", "scopes": ["read:users:name"]},
                   headers={"X-XSRFToken": alice.xsrf()})  # fmt: skip
    assert r.status_code == 201, r.text[:300]
    narrow = r.json()["token"]
    r = alice.api("POST", "/shares/alice/", narrow, json={"user": "bob"})
    assert r.status_code == 403 and message(r) == NO_SHARES_SCOPE
    if isinstance(hub.machine, ContainerVM):
        refused = share_py(request.getfixturevalue("scripts"), narrow, "with", "bob", check=False)
        assert refused.returncode == 1 and refused.stderr.strip() == f"share.py: 403 {NO_SHARES_SCOPE}"
    bob = hub.session(classroom["bob"])
    r = bob.api("POST", "/shares/alice/", bob.create_token("bob", note="stage 11"), json={"user": "carol"})
    assert r.status_code == 404 and message(r) == NOT_FOUND


@pytest.mark.disruptive
def test_a_share_survives_a_hub_restart(hub, classroom, alice_shares):
    """Shares live in the hub's database: after `systemctl restart jupyterhub` bob's share is listed and he
    opens alice's server (which ran on)."""
    alice, token = alice_shares
    share(alice, token, "alice", user="bob")
    hub.restart()
    assert "bob" in shared_with(alice, token, "alice")
    bob = hub.session(classroom["bob"])
    assert served_by(bob.open_server("alice"), "alice")


# -- a workflow tool's server, shared ---------------------------------------------------------


def test_runboard_shared_with_a_colleague(hub, classroom, admin):
    """carol runs Runboard and shares it with bob: he sees carol's runs, signed in as himself; alice's token
    shows the share."""
    stop(admin, "carol")
    carol = hub.session(classroom["carol"])
    carol.post("/hub/spawn", data={**RUNBOARD, "_xsrf": carol.xsrf()}).raise_for_status()
    wait_for("carol's Runboard", lambda: "workflow runs" in carol.get("/user/carol/").text, timeout=120, interval=2)
    token = carol.create_token("carol", note="runboard")
    share(carol, token, "carol", user="bob")
    bob = hub.session(classroom["bob"])
    r = bob.open_server("carol", path="")
    assert served_by(r, "carol"), f"{r.status_code} {r.url}"
    assert "Runboard: carol&#x27;s workflow runs" in r.text or "Runboard: carol's workflow runs" in r.text
    assert "Signed in as bob." in r.text
    carol.api("DELETE", "/shares/carol/", token)
    stop(admin, "carol")


# -- the chapter and the logs --------------------------------------------------------------


def test_chapter_shows_what_install_printed(machine, stage):
    """Each "You should see" block after an install.sh section matches what it printed on this VM."""
    print(f"{check_chapter_outputs(machine, stage)} quoted lines checked")


# Keep this test last: it reads the logs after every other test of the stage has run.
def test_no_secret_of_the_tests_in_any_log(machine):
    """No token, share code or password the tests used in the journal, Traefik's access log or containers' logs."""
    record("secrets-in-logs-11", assert_no_leaks(machine))
