"""Stage 15: upgrades: the hub's software upgraded in place, a failed upgrade rolled back from its backup.

The book has always pinned the versions of versions.txt, so the tests make an older machine first: the
stage's VM with the pins of previous-versions.txt installed into /opt/jupyterhub and the database deleted,
so that JupyterHub 5 makes a new one (tests/harness/upgrades.py keeps that machine as an image). People
log in through the OpenID Connect provider of stage 09, start servers, save files, make tokens and share;
then a broken upgrade fails after `jupyterhub upgrade-db` and rollback.sh brings everything back, then the
real upgrade runs. After each, nothing may be missing.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from tests.harness.chapter_outputs import check as check_chapter_outputs
from tests.harness.chapter_outputs import line_pattern
from tests.harness.fixtures import mode
from tests.harness.hubclient import HubClient
from tests.harness.images import boot_stage
from tests.harness.kernels import kernel, one_plus_one
from tests.harness.machine import VM_INSTALL_ENV, Machine
from tests.harness.results import record
from tests.harness.secrets_audit import assert_no_leaks, remember_secret
from tests.harness.upgrades import old_machine_image
from tests.harness.users import container, read_text, write_text
from tests.harness.waits import wait_for

FORM = {"image": "JupyterLab", "size": "small"}
CONFIG = "/etc/jupyterhub/jupyterhub_config.py"
DB = "/var/lib/jupyterhub/jupyterhub.sqlite"
ROUTES = "/var/lib/jupyterhub-proxy/rules.toml"
ACME = "/var/lib/traefik/acme.json"
CULLER = "/opt/jupyterhub/bin/python -m jupyterhub_idle_culler"
NARROW = "stage 15: read names only"  # the note of bob's token with one scope

# The schema versions (alembic revisions) of JupyterHub 5.5 and 6.1's databases.
SCHEMA_5, SCHEMA_6 = "4621fec11365", "f460b0348206"

# What the hub, the scripts and the culler print, quoted in the chapter and the troubleshooting page.
OLD_SCHEMA = (
    "Found database schema version 4621fec11365 != f460b0348206. Backup your database and run "
    "`jupyterhub upgrade-db` to upgrade to the latest schema."
)
BROKEN = "The 'auth_refresh_strict' trait of an ExchangeAuthenticator instance expected a boolean, not the str 'yes'."
GAVE_UP = "upgrade.sh: the hub did not start; to go back: bash rollback.sh /var/backups/hub-upgrade/"
NOT_KNOWN_IN_5 = "Config option `auth_refresh_strict` not recognized by `ExchangeAuthenticator`."
MISMATCH = "jupyterhub version 5.5.4 != jupyterhub-singleuser version 6.1.1."
CULLER_BARE_FLAG = "error: argument --IdleCuller.cull_users: expected one argument"
BREAK = 's/^c.Authenticator.auth_refresh_strict = True$/c.Authenticator.auth_refresh_strict = "yes"/'
UNBREAK = 's/^c.Authenticator.auth_refresh_strict = "yes"$/c.Authenticator.auth_refresh_strict = True/'


@pytest.fixture(scope="module")
def machine(request: pytest.FixtureRequest, stage) -> Iterator[Machine]:
    """A test VM of this stage made older: the pins of previous-versions.txt, a database made by JupyterHub 5."""
    if mode(request.config) != "container":
        pytest.skip("upgrades a test VM made old on purpose; on your own server, follow the chapter (backup first)")
    vm = boot_stage(old_machine_image(stage), purpose=f"stage{stage.number:02d}")
    try:
        yield vm
    finally:
        if not request.config.getoption("--keep-vm"):
            vm.remove()


def run_script(machine: Machine, stage, command: str) -> tuple[int, str, float]:
    """Run one of the stage's scripts as the chapter does (from the step directory): exit code, output, seconds."""
    started = time.monotonic()
    # VM_INSTALL_ENV: pip in a test VM trusts the test machine's CAs (see book/testing.md); nothing else.
    proc = machine.run(command, cwd=stage.vm_dir, env=VM_INSTALL_ENV, check=False, timeout=900)
    return proc.returncode, proc.stdout + proc.stderr, time.monotonic() - started


def certificate(site_port: int, name: str) -> str:
    """The SHA-256 of the certificate the hub's HTTPS port serves for its name (verified or not)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", site_port), timeout=10) as sock:
        with ctx.wrap_socket(sock, server_hostname=name) as tls:
            return hashlib.sha256(tls.getpeercert(binary_form=True)).hexdigest()


def schema(machine: Machine) -> str:
    """The database's schema version (alembic's revision), read as an operator would."""
    script = f"import sqlite3; print(sqlite3.connect('file:{DB}?mode=ro', uri=True).execute('select version_num from alembic_version').fetchone()[0])"  # noqa: E501
    return machine.output(f'python3 -c "{script}"')


@dataclass
class Snapshot:
    """What the hub holds that an upgrade must not lose, as its REST API shows it."""

    users: dict[str, dict] = field(default_factory=dict)  # name -> admin, groups, roles
    groups: dict[str, list[str]] = field(default_factory=dict)
    services: dict[str, list[str]] = field(default_factory=dict)  # name -> roles
    tokens: dict[str, set[tuple]] = field(default_factory=dict)  # user -> (id, note, expires_at)
    narrow_scopes: list[str] = field(default_factory=list)  # those of bob's token made with its own scopes
    shares: list[tuple[str, str, tuple]] = field(default_factory=list)
    auth_state_user: dict = field(default_factory=dict)
    certificate: str = ""
    acme_json: str = ""
    alice_container: tuple[str, str] = ("", "")


def snapshot(hub, admin: tuple[HubClient, str], public) -> Snapshot:
    client, token = admin

    def get(path: str):
        r = client.api("GET", path, token)
        assert r.status_code == 200, f"GET {path}: {r.status_code} {r.text[:300]}"
        return r.json()

    s = Snapshot()
    for u in get("/users"):
        s.users[u["name"]] = {"admin": u["admin"], "groups": sorted(u["groups"]), "roles": sorted(u["roles"])}
    s.groups = {g["name"]: sorted(g["users"]) for g in get("/groups")}
    s.services = {name: sorted(m.get("roles", [])) for name, m in get("/services").items()}
    for name in ("alice", "bob"):
        found = get(f"/users/{name}/tokens")["api_tokens"]
        s.tokens[name] = {(t["id"], t["note"], t["expires_at"]) for t in found}
        s.narrow_scopes += [scope for t in found if t["note"] == NARROW for scope in sorted(t["scopes"])]
    s.shares = sorted((x["server"]["user"]["name"], (x["user"] or {}).get("name") or x["group"]["name"],
                       tuple(sorted(x["scopes"]))) for x in get("/shares/alice/")["items"])  # fmt: skip
    state = get("/users/alice").get("auth_state") or {}
    s.auth_state_user = state.get("oauth_user", {})
    s.certificate = certificate(public.https_port, public.name)
    s.acme_json = hub.machine.output(f"sha256sum {ACME}").split()[0]
    found = container(hub.machine, "jupyter-alice") or {}
    s.alice_container = (found.get("Id", ""), found.get("State", {}).get("StartedAt", ""))
    return s


@dataclass
class Story:
    """What happened to the old machine, step by step; the tests assert on it."""

    before: Snapshot | None = None
    alice: HubClient | None = None
    admin: tuple[HubClient, str] | None = None
    bob_token: str = ""
    notes: dict[str, str] = field(default_factory=dict)
    old: dict[str, str] = field(default_factory=dict)  # what the old machine showed
    failed: dict = field(default_factory=dict)
    rolled_back: dict = field(default_factory=dict)
    upgraded: dict = field(default_factory=dict)


@pytest.fixture(scope="module")
def story(hub, people, public) -> Story:
    """The old machine in use: alice (admin) and bob log in, start servers, save files; tokens, a share."""
    s = Story()
    m = hub.machine
    s.old["journal"] = m.journal("jupyterhub")
    s.old["routes"] = m.output(f"cat {ROUTES}")
    s.old["culler bare flag"] = m.run(f"JUPYTERHUB_API_TOKEN=x JUPYTERHUB_API_URL=http://127.0.0.1:9/hub/api "
                                      f"timeout 5 {CULLER} --cull-users 2>&1", check=False).stdout  # fmt: skip
    s.old["schema"] = schema(m)
    alice = hub.session(people["alice"])
    alice.ensure_server("alice", data=FORM)
    s.admin = (alice, alice.create_token("alice", note="stage 15: alice's admin token"))
    s.alice = alice
    for name in ("alice", "bob"):
        client = alice if name == "alice" else hub.session(people[name])
        client.ensure_server(name, data=FORM)
        s.notes[name] = f"{name}'s notes, saved on JupyterHub 5 ({secrets.token_hex(4)})"
        write_text(client, name, "notes.txt", s.notes[name])
        if name == "bob":
            r = client.post("/hub/api/users/bob/tokens", headers={"X-XSRFToken": client.xsrf()},
                            json={"note": NARROW, "scopes": ["read:users:name"]})  # fmt: skip
            assert r.status_code == 201, r.text[:300]
            s.bob_token = r.json()["token"]
            remember_secret("API token", s.bob_token)
            # bob's server stops before the upgrade: his next start is on the new hub, with his volume.
            r = alice.api("DELETE", "/users/bob/server", s.admin[1])
            assert r.status_code in (202, 204), r.text[:300]
    hub.session(people["carol"])  # carol logs in once: a user with no server
    r = alice.api("POST", "/shares/alice/", s.admin[1], json={"user": "bob"})
    assert r.status_code == 200, r.text[:300]
    s.before = snapshot(hub, s.admin, public)
    s.old["journal"] = m.journal("jupyterhub")
    return s


def test_the_old_machine_runs_jupyterhub_5_with_its_own_database(story):
    """The machine the tests upgrade: JupyterHub 5.5.4 made its database (schema 4621fec11365), with the book's
    configuration (JupyterHub 5 ignores what it does not know, with a warning) and the user image's 6.1.1."""
    assert "Running JupyterHub version 5.5.4" in story.old["journal"]
    assert story.old["schema"] == SCHEMA_5
    assert NOT_KNOWN_IN_5 in story.old["journal"]
    assert MISMATCH in story.old["journal"]
    assert set(story.before.users) == {"alice", "bob", "carol"}
    assert story.before.users["alice"]["admin"] and story.before.auth_state_user.get("preferred_username") == "alice"


@pytest.fixture(scope="module")
def failed(story, hub, stage) -> dict:
    """A broken upgrade: the config holds a value only JupyterHub 6.1 reads (and refuses); upgrade.sh migrates
    the database, then the hub does not start. Then the database of the backup alone, on the new hub."""
    m = hub.machine
    m.run(f"sed -i {BREAK!r} {CONFIG} && grep -q 'auth_refresh_strict = \"yes\"' {CONFIG}")
    code, out, seconds = run_script(m, stage, "bash upgrade.sh")
    found = {"code": code, "output": out, "seconds": round(seconds, 1), "schema": schema(m)}
    found["journal"] = m.journal("jupyterhub", lines=200)
    # The old database without upgrade-db, on the new software: copied from the backup, as a careless
    # restore (or an upgrade without upgrade-db) leaves it.
    backup = m.output("cat /var/backups/hub-upgrade/latest")
    since = m.clock()
    m.run(f"cp -a {backup}/jupyterhub.sqlite {DB} && systemctl start jupyterhub")
    wait_for("the new hub to refuse the old database", lambda: "Found database schema" in m.journal(
        "jupyterhub", since=since), timeout=120, interval=2)  # fmt: skip
    m.run("systemctl stop jupyterhub")
    found["old schema on the new hub"] = m.journal("jupyterhub", since=since)
    found["backup"] = backup
    found["backup listing"] = m.output(f"ls {backup}")
    found["backup mode"] = m.output(f"stat -c %a {backup} /var/backups/hub-upgrade")
    story.failed = found
    record("upgrade-failed", {"seconds": found["seconds"], "exit": code, "output": out})
    return found


def test_a_failed_upgrade_stops_and_says_how_to_go_back(failed):
    """upgrade.sh made its backup, installed the new versions, migrated the database, then the hub refused the
    config: the script stops the hub (no restart loop), quotes the error and names rollback.sh with the backup."""
    assert failed["code"] == 1
    assert GAVE_UP in failed["output"]
    assert BROKEN in failed["output"]
    assert failed["schema"] == SCHEMA_6, "upgrade-db had not run before the failure"
    assert set(failed["backup listing"].split()) >= {"jupyterhub.sqlite", "venv", "etc-jupyterhub", "etc-traefik",
                                                     "acme.json", "pip-freeze.txt"}  # fmt: skip
    assert failed["backup mode"].split() == ["700", "700"]


@pytest.mark.fault
def test_the_new_hub_refuses_a_database_without_upgrade_db(failed):
    """JupyterHub 6.1 started on JupyterHub 5's database exits at once and says what to do."""
    assert OLD_SCHEMA in failed["old schema on the new hub"]


@pytest.fixture(scope="module")
def rolled_back(story, failed, hub, stage, public) -> dict:
    """rollback.sh with the failed upgrade's backup: JupyterHub 5 on its own database again."""
    m = hub.machine
    code, out, seconds = run_script(m, stage, "bash rollback.sh")
    hub.wait_up()
    found = {"code": code, "output": out, "seconds": round(seconds, 1), "schema": schema(m)}
    found["after"] = snapshot(hub, story.admin, public)
    found["alice still in"] = story.alice.logged_in()
    found["alice's notes"] = read_text(story.alice, "alice", "notes.txt")
    story.rolled_back = found
    record("upgrade-rollback", {"seconds": found["seconds"], "exit": code, "output": out})
    return found


def test_rollback_brings_back_the_old_hub_and_everything_in_it(story, rolled_back):
    """After rollback.sh: JupyterHub 5.5.4 on schema 4621fec11365; the same users, groups, roles, tokens, shares,
    auth_state, certificate; alice's server ran on (same container) and her session still holds."""
    assert rolled_back["code"] == 0, rolled_back["output"][-3000:]
    assert "Running JupyterHub version 5.5.4" in rolled_back["output"]
    assert rolled_back["schema"] == SCHEMA_5
    lost(story.before, rolled_back["after"])
    assert rolled_back["after"].alice_container == story.before.alice_container
    assert rolled_back["alice still in"] and rolled_back["alice's notes"] == story.notes["alice"]


def lost(before: Snapshot, after: Snapshot) -> None:
    """Assert nothing of ``before`` is missing from ``after`` (tokens made in between may be added)."""
    assert after.users == before.users
    assert after.groups == before.groups
    assert after.services == before.services
    for name, tokens in before.tokens.items():
        assert tokens <= after.tokens[name], f"{name}'s tokens: {tokens - after.tokens[name]} are gone"
    assert after.narrow_scopes == before.narrow_scopes and "read:users:name" in before.narrow_scopes
    assert after.shares == before.shares
    assert after.auth_state_user == before.auth_state_user and after.auth_state_user
    assert after.certificate == before.certificate, "the hub serves another certificate"
    assert after.acme_json == before.acme_json, "acme.json changed"


@pytest.fixture(scope="module")
def upgraded(story, rolled_back, hub, stage, public) -> dict:
    """The config fixed, upgrade.sh again, while alice holds a kernel with some state open in her server."""
    m = hub.machine
    m.run(f"sed -i {UNBREAK!r} {CONFIG}")
    found: dict = {}

    def upgrade() -> None:
        code, out, seconds = run_script(m, stage, "bash upgrade.sh")
        found.update(code=code, output=out, seconds=round(seconds, 1))
        assert code == 0, out[-3000:]
        hub.wait_up()

    with kernel(story.alice, "alice") as k:
        k.execute("x = 41")
        since = m.clock()
        upgrade()
        found["websocket stayed open"] = k.alive()
        if not found["websocket stayed open"]:
            k.reconnect()
        found["kernel state"] = k.execute("print(x + 1)").strip()
    found["journal"] = m.journal("jupyterhub", since=since)
    found["schema"] = schema(m)
    found["after"] = snapshot(hub, story.admin, public)
    found["alice still in"] = story.alice.logged_in()
    found["routes"] = m.output(f"cat {ROUTES}")
    found["culler bare flag"] = m.run(f"JUPYTERHUB_API_TOKEN=x timeout 5 {CULLER} --cull-users 2>&1",
                                      check=False).stdout  # fmt: skip
    story.upgraded = found
    record("upgrade", {"seconds": found["seconds"], "websocket_stayed_open": found["websocket stayed open"],
                      "output": found["output"]})  # fmt: skip
    return found


def test_the_upgrade_runs_upgrade_db_and_starts_jupyterhub_6(upgraded):
    """upgrade.sh: stage 14's full backup first, the book's pins, the schema migrated to f460b0348206 (four
    steps), the hub 6.1.1 running."""
    out = upgraded["output"]
    assert "Running JupyterHub version 6.1.1" in out
    assert "hub-backup: /var/backups/jupyterhub/before-upgrade-" in out, "no full backup (stage 14's) first"
    for step in (f"{SCHEMA_5} -> be8ecf03ddac", "be8ecf03ddac -> afd65840b69e", "afd65840b69e -> ff1860e38070",
                 f"ff1860e38070 -> {SCHEMA_6}"):  # fmt: skip
        assert f"Running upgrade {step}" in out
    assert upgraded["schema"] == SCHEMA_6


def test_nothing_is_lost_in_the_upgrade(story, upgraded):
    """Users, admin flags, groups, roles, services' roles, tokens and their scopes, shares, auth_state (decrypted
    with the same key), the certificate (no new ACME order) are all there on JupyterHub 6."""
    lost(story.before, upgraded["after"])


def test_running_servers_run_on_through_the_upgrade(story, upgraded):
    """alice's server kept running (same container, same start), her kernel kept its state, and her browser
    session is still valid: nobody logs in again."""
    assert upgraded["after"].alice_container == story.before.alice_container
    assert upgraded["kernel state"] == "42"
    assert upgraded["alice still in"]
    assert one_plus_one(story.alice, "alice") == "2"
    assert read_text(story.alice, "alice", "notes.txt") == story.notes["alice"]


def test_a_stopped_server_starts_on_the_new_hub_with_its_files(hub, people, story, upgraded):
    """bob's server was stopped before the upgrade: it starts on JupyterHub 6 with his volume and file; his
    narrow token (read:users:name) still works, and still only that."""
    bob = hub.session(people["bob"])
    bob.ensure_server("bob", data=FORM)
    assert read_text(bob, "bob", "notes.txt") == story.notes["bob"]
    me = bob.api("GET", "/user", story.bob_token)
    assert me.status_code == 200 and me.json()["name"] == "bob" and "read:users:name" in me.json()["scopes"]
    assert bob.api("GET", "/users", story.bob_token).status_code == 403


def test_the_idle_culler_2_runs_with_the_books_arguments(upgraded, hub):
    """The hub starts jupyterhub-idle-culler 2.0.0 with the same --timeout and --cull-every; its new command line
    (traitlets) refuses a bare --cull-users, which 1.x took as true."""
    assert "Starting managed service idle-culler" in upgraded["journal"]
    assert hub.machine.run("pgrep -f 'python3 -m [j]upyterhub_idle_culler --timeout=3600 --cull-every=300'",
                           check=False).returncode == 0  # fmt: skip
    assert CULLER_BARE_FLAG in upgraded["culler bare flag"]


@pytest.mark.fault
def test_the_idle_culler_1_took_a_bare_flag(story):
    """jupyterhub-idle-culler 1.4 (tornado's options) took `--cull-users` alone; it got as far as the hub's API."""
    assert CULLER_BARE_FLAG not in story.old["culler bare flag"]
    assert "Connection refused" in story.old["culler bare flag"]


def test_traefiks_api_password_keeps_its_old_hash(story, upgraded):
    """jupyterhub-traefik-proxy 1.x wrote the API's password as an MD5 hash ($apr1$) into the routes file; 2.x
    hashes with bcrypt, but only into a file without one: the upgraded hub keeps the MD5 hash, and Traefik's API
    still lets it in (it found alice's server and her route)."""
    hashed = re.compile(r"jupyterhub:(\$apr1\$|\$2b\$)")
    assert hashed.search(story.old["routes"])[1] == "$apr1$", story.old["routes"][:600]
    assert hashed.search(upgraded["routes"])[1] == "$apr1$", upgraded["routes"][:600]
    assert "alice still running" in upgraded["journal"]


# -- the chapter and the logs --------------------------------------------------------------


def quoted(stage, script: str) -> list[str]:
    """The lines of the ```text blocks after "You should see" that follow an include of ``script``."""
    lines = stage.chapter.read_text().splitlines()
    found, current = [], None
    for i, line in enumerate(lines):
        if line.startswith("```{literalinclude}"):
            current = line.endswith(f"{stage.name}/{script}")
        elif line.startswith("#"):
            current = None
        elif line.strip() == "```text" and current and "You should see" in " ".join(lines[max(0, i - 3) : i]):
            end = lines.index("```", i + 1)
            found += [x for x in lines[i + 1 : end] if x.strip() and x.strip() != "..."]
    return found


def test_chapter_shows_what_the_scripts_printed(machine, stage, failed, rolled_back, upgraded):
    """Each "You should see" block: install.sh's (kept in the image), the failed and the good upgrade.sh's,
    rollback.sh's, as they printed them on this VM."""
    check_chapter_outputs(machine, stage)
    printed = {"upgrade.sh": failed["output"] + upgraded["output"], "rollback.sh": rolled_back["output"]}
    missing = []
    for script, out in printed.items():
        lines = out.splitlines()
        for line in quoted(stage, script):
            if not any(line_pattern(line).search(x) for x in lines):
                missing.append(f"{script}: {line}")
    assert not missing, "\n".join(missing)
    assert quoted(stage, "upgrade.sh") and quoted(stage, "rollback.sh")


# Keep this test last: it reads the logs after every other test of the stage has run.
def test_no_secret_of_the_tests_in_any_log(machine, upgraded):
    """No token, password or code the tests used in the journal, Traefik's access log or containers' logs."""
    record("secrets-in-logs-15", assert_no_leaks(machine))
