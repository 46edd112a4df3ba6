"""Stage 14: keep it: a backup in one archive, a restore onto another machine built by the book, bad archives
refused with nothing lost, what each stage changed on the machine, and a teardown that leaves none of it.

Three test VMs besides the stage's own (the "old machine", where people work and the backup is made):
- a "new machine", booted from the same stage image and then made another install (its own secrets, an
  empty database): the archive goes there, as a reader moves a hub; people log in through the same
  OpenID Connect provider (the old machine's, as an institution's provider stays when a hub moves);
- a machine on which teardown.sh runs from the start of the module, in the background (it takes minutes);
- a VM of the base image: what a machine was before the book.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shlex
import socket
import ssl
import subprocess
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.harness import inventory, localcheck, releases, server_checks
from tests.harness.acme import ACME_JSON, PublicName, certificate_domains
from tests.harness.chapter_outputs import check as check_chapter_outputs
from tests.harness.fixtures import Hub, public_name
from tests.harness.hubclient import HubClient
from tests.harness.images import boot_stage, ensure_stage_image, stage_tag
from tests.harness.machine import ContainerVM
from tests.harness.oidc import BUNDLE, HUB_DROPIN, PROVIDER_DIR
from tests.harness.results import record
from tests.harness.secrets_audit import assert_no_leaks, remember_secret
from tests.harness.stages import stages_up_to
from tests.harness.tunnel import key
from tests.harness.users import read_text, write_text
from tests.harness.waits import wait_for

BACKUPS = "/var/backups/jupyterhub"
OPTIONS = {"image": "JupyterLab with NumPy, pandas and Matplotlib", "size": "medium"}
EXTRA_USERS = 20  # users with files of their own, besides the people who log in
EXTRA_MB = 2  # of files each

# What the scripts say, quoted in the chapter and the troubleshooting page.
RUNNING = "jupyterhub is running: stop it first (systemctl stop jupyterhub traefik). Nothing was changed."
DAMAGED = "is damaged or not a hub backup"
NOTHING_CHANGED = "Nothing was changed."
OTHER_HUB = "is a backup of hub.other.org, and this machine serves hub.example.org (/etc/traefik/traefik.toml)."
TRUNCATED = "gzip: stdin: unexpected end of file"
PACKAGES = "python3-venv nodejs npm docker.io gcc python3-dev nftables curl prometheus"  # teardown.sh's
TEARDOWN_DRY = "teardown: nothing was changed; run 'bash teardown.sh --yes' to do it"

# What a machine holds that makes it this hub: each is compared before and after a refused restore.
STATE = (
    "sha256sum /etc/jupyterhub/secrets/* /var/lib/traefik/acme.json /etc/traefik/traefik.toml; "
    "python3 -c \"import sqlite3; print(sqlite3.connect('file:/var/lib/jupyterhub/jupyterhub.sqlite?mode=ro', "
    "uri=True).execute('select group_concat(name) from users').fetchone())\"; "
    "docker volume ls --quiet | sort; ls /var/backups/jupyterhub"
)


def sh(machine, command: str, **kw) -> str:
    return machine.output(command, **kw)


def on_test_vms_only(machine) -> None:
    if not isinstance(machine, ContainerVM):
        pytest.skip("needs test VMs of its own (a new machine, a fresh one, one to tear down); not your server")


# -- the machine of the backup -----------------------------------------------------------------


@dataclass
class Used:
    """What people did on the old machine before the backup."""

    alice: HubClient
    token: str  # alice's API token (she is an admin: group staff)
    bob: HubClient
    note: str  # the text of alice's file
    extra: list[str]


@pytest.fixture(scope="module")
def used(hub, people, machine) -> Used:
    """alice starts a server with options of her choice and saves a file; she shares her server with bob, who
    logs in; 20 more users have files of their own (made by an admin's API call and written into their
    volumes, as their servers would)."""
    alice = hub.session(people["alice"])
    alice.ensure_server("alice", data=OPTIONS)
    note = f"written on the old machine, {time.strftime('%Y-%m-%d %H:%M:%S')}"
    write_text(alice, "alice", "notes.txt", note)
    token = alice.create_token("alice", note="stage 14")
    bob = hub.session(people["bob"])
    r = alice.api("POST", "/shares/alice/", token, json={"user": "bob"})
    assert r.status_code == 200, r.text[:300]
    extra = [f"student{i:02d}" for i in range(1, EXTRA_USERS + 1)]
    r = alice.api("POST", "/users", token, json={"usernames": extra})
    assert r.status_code in (201, 409), r.text[:300]
    machine.run(
        f"for u in {' '.join(extra)}; do v=jupyterhub-user-$u; docker volume create $v > /dev/null; "
        f'd=$(docker volume inspect -f "{{{{.Mountpoint}}}}" $v); head -c {EXTRA_MB}M /dev/urandom > $d/data.bin; '
        'echo "$u" > $d/README.txt; chown -R 1000:100 $d; done'
    )
    return Used(alice, token, bob, note, extra)


@dataclass
class Archive:
    path: str  # on the old machine
    local: Path  # a copy here
    seconds: float
    listing: str
    manifest: dict[str, str]


@pytest.fixture(scope="module")
def archive(machine, used, tmp_path_factory) -> Archive:
    """`hub-backup` on the old machine, alice's server running."""
    started = time.monotonic()
    out = sh(machine, "hub-backup")
    seconds = time.monotonic() - started
    path = re.search(r"hub-backup: (\S+\.tar\.gz) ", out).group(1)
    local = tmp_path_factory.mktemp("backup") / Path(path).name
    with open(local, "wb") as f:
        subprocess.run(["docker", "exec", machine.name, "cat", path], stdout=f, check=True, timeout=300)
    listing = sh(machine, f"tar -tzvf {path}")
    manifest = dict(
        line.split("=", 1) for line in sh(machine, f"tar -xzOf {path} MANIFEST").splitlines() if "=" in line
    )
    users = len(manifest["users"].split())
    record("backup", {"users": users, "volumes": len(manifest["volumes"].split()), "mb_of_files_per_volume": EXTRA_MB,
                      "archive_mb": round(local.stat().st_size / 1e6, 1), "seconds": round(seconds, 1),
                      "script_says": out.splitlines()[0]})  # fmt: skip
    return Archive(path, local, seconds, listing, manifest)


# -- the new machine -------------------------------------------------------------------------


def another_install(vm: ContainerVM) -> None:
    """Make a VM booted from the stage image another install of the book: every secret its install.sh files
    make at random made again (the same commands), a new OpenID Connect client, an empty database."""
    vm.run(
        "set -e; cd /etc/jupyterhub/secrets; umask 077\n"
        "for f in cookie_secret proxy_auth_token traefik_api_password; do\n"
        "  python3 -c 'import secrets; print(secrets.token_hex(32))' > $f; done\n"
        "for f in prometheus_token monitoring_token server_stopper_token; do openssl rand -hex 32 > $f; done\n"
        "install -m 0600 -o prometheus -g prometheus prometheus_token /etc/prometheus/jupyterhub_token\n"
        "printf 'TRAEFIK_API_PASSWORD=%s\\nOIDC_CLIENT_ID=hub-%s\\nOIDC_CLIENT_SECRET=%s\\nJUPYTERHUB_CRYPT_KEY=%s\\n' "
        '"$(cat traefik_api_password)" "$(openssl rand -hex 6)" "$(openssl rand -hex 24)" "$(openssl rand -hex 32)" '
        "> jupyterhub.env\n"
        "systemctl stop jupyterhub; rm -f /var/lib/jupyterhub/jupyterhub.sqlite /var/lib/jupyterhub-proxy/rules.toml\n"
        "systemctl restart prometheus traefik jupyterhub"
    )


@dataclass
class NewMachine:
    vm: ContainerVM
    before: str  # STATE, as the other install left it


@pytest.fixture(scope="module")
def new_machine_booting(machine, stage, request) -> Future[NewMachine] | None:
    """The new machine, booting in the background from the module's start (it gets a copy of the stage's
    Docker data, 2.5 GB, which takes a while). None on your own server."""
    if not isinstance(machine, ContainerVM):
        return None

    def boot() -> NewMachine:
        vm = boot_stage(ensure_stage_image(stage), purpose="stage14-new")
        try:
            another_install(vm)
            wait_hub(vm)
            return NewMachine(vm, sh(vm, STATE))
        except BaseException:
            vm.remove()
            raise

    pool = ThreadPoolExecutor(1)
    future = pool.submit(boot)

    def finish() -> None:
        pool.shutdown(wait=True)
        if future.exception() is None and not request.config.getoption("--keep-vm"):
            future.result().vm.remove()

    request.addfinalizer(finish)
    return future


@pytest.fixture(scope="module")
def new_machine(machine, new_machine_booting) -> NewMachine:
    on_test_vms_only(machine)
    return new_machine_booting.result(timeout=900)


def wait_hub(vm: ContainerVM) -> None:
    """Wait until the hub's API answers on docker0 (it made its database by then): a hub takes seconds to start."""
    api = "curl -sf -o /dev/null http://$(ip -4 -o addr show docker0 | awk '{print $4}' | cut -d/ -f1):8081/hub/api/"
    wait_for(f"the hub of {vm.name} to answer", lambda: vm.run(api, check=False).returncode == 0, timeout=120)


def copy_archive(archive: Archive, vm: ContainerVM, name: str | None = None) -> str:
    """The archive onto another machine (as scp would), 0600 in root's home."""
    target = f"/root/{name or archive.local.name}"
    with open(archive.local, "rb") as f:
        subprocess.run(["docker", "exec", "-i", vm.name, "sh", "-c", f"umask 077 && cat > {target}"], stdin=f,
                       check=True, timeout=300)  # fmt: skip
    return target


def restore(vm: ContainerVM, path: str):
    return vm.run(f"hub-restore {shlex.quote(path)}", check=False, timeout=600)


# -- 1. the backup -------------------------------------------------------------------------------


def test_the_nightly_backup_is_on(machine, teardown_started, new_machine_booting):
    """install.sh put hub-backup and hub-restore in /usr/local/sbin (root's, 0755) and enabled a timer that
    runs hub-backup --keep 14 every night; the first backup it made is in /var/backups/jupyterhub, 0600."""
    assert (
        sh(machine, "stat -c '%a %U' /usr/local/sbin/hub-backup /usr/local/sbin/hub-restore").split("\n")
        == ["755 root"] * 2
    )
    assert sh(machine, "systemctl is-enabled hub-backup.timer; systemctl is-active hub-backup.timer") == (
        "enabled\nactive"
    )
    assert "ExecStart=/usr/local/sbin/hub-backup --keep 14" in sh(machine, "systemctl cat hub-backup.service")
    assert "OnCalendar=*-*-* 03:15:00" in sh(machine, "systemctl cat hub-backup.timer")
    assert sh(machine, f"stat -c '%a %U' {BACKUPS}") == "700 root"
    first = sh(machine, f"stat -c '%a %U %n' {BACKUPS}/hub-*.tar.gz").splitlines()
    assert first and all(line.startswith("600 root ") for line in first), first


def test_the_archive_holds_everything_with_the_right_modes(machine, archive, used):
    """One archive, 0600 and root's: the manifest, checksums, a consistent copy of the database (with alice's
    share and her server's options), every secret (the cookie secret, the auth_state key), acme.json with the
    certificate, the config, the step files, and each user's volume with their files."""
    assert sh(machine, f"stat -c '%a %U %G' {archive.path}") == "600 root root"
    for member in ("MANIFEST", "SHA256SUMS", "db/jupyterhub.sqlite", "files.tar", "volumes/jupyterhub-user-alice.tar"):
        assert re.search(rf"^-rw------- root/root .* {re.escape(member)}$", archive.listing, re.M), member
    assert archive.manifest["hub"] == "hub.example.org"
    users = archive.manifest["users"].split()
    assert {"alice", "bob", *used.extra} <= set(users)
    assert len(archive.manifest["volumes"].split()) >= EXTRA_USERS + 1
    inside = f"d=$(mktemp -d) && tar -C $d -xzf {archive.path} && cd $d && "
    files = sh(machine, inside + "tar -tvf files.tar && rm -rf $d")
    for path, mode, owner in (
        ("etc/jupyterhub/secrets/cookie_secret", "-rw-------", "root/root"),
        ("etc/jupyterhub/secrets/jupyterhub.env", "-rw-------", "root/root"),
        ("var/lib/traefik/acme.json", "-rw-------", "traefik/traefik"),
        ("etc/jupyterhub/jupyterhub_config.py", "-rw-r--r--", "root/root"),
        ("etc/traefik/traefik.toml", "-rw-r--r--", "root/root"),
        ("etc/prometheus/jupyterhub_token", "-rw-------", "prometheus/prometheus"),
        ("root/hhw/steps/14-backups/install.sh", "-rwxr-xr-x", "root/root"),
    ):
        assert re.search(rf"^{re.escape(mode)} {owner} .* {re.escape(path)}$", files, re.M), f"{path} {mode} {owner}"
    keys = sh(machine, inside + "tar -xOf files.tar etc/jupyterhub/secrets/jupyterhub.env | cut -d= -f1; rm -rf $d")
    assert "JUPYTERHUB_CRYPT_KEY" in keys.split()
    query = (
        "import sqlite3, sys, json\n"
        "db = sqlite3.connect(sys.argv[1])\n"
        "shares = db.execute(\"select s.scopes from shares s join users u on s.user_id = u.id where u.name = 'bob'\")\n"
        'options = db.execute("select sp.user_options from spawners sp join users u on sp.user_id = u.id "\n'
        "                     \"where u.name = 'alice' and sp.name = ''\").fetchone()[0]\n"
        "print(json.dumps([db.execute('pragma integrity_check').fetchone()[0], shares.fetchall(), options]))\n"
    )
    check, shares, options = json.loads(sh(machine, inside + "python3 - db/jupyterhub.sqlite; rm -rf $d", input=query))
    assert check == "ok"
    assert any("access:servers!server=alice/" in s[0] for s in shares), shares
    assert json.loads(options) == {"image": OPTIONS["image"], "size": OPTIONS["size"]}
    note = sh(machine, inside + "tar -xOf volumes/jupyterhub-user-alice.tar ./notes.txt; rm -rf $d")
    assert note == used.note


# -- 2. bad input: nothing is lost ---------------------------------------------------------------


@pytest.mark.fault
def test_a_restore_while_the_hub_runs_is_refused(new_machine, archive):
    """hub-restore on a machine whose hub runs: it says to stop it first, and changes nothing."""
    vm = new_machine.vm
    path = copy_archive(archive, vm)
    proc = restore(vm, path)
    assert proc.returncode == 1
    assert f"hub-restore: {RUNNING}" in proc.stderr
    assert sh(vm, STATE) == new_machine.before
    assert sh(vm, "systemctl is-active jupyterhub traefik") == "active\nactive"


@pytest.mark.fault
def test_a_damaged_archive_is_refused_and_nothing_is_lost(new_machine, archive):
    """A truncated archive (half of it) and a corrupted one (bytes overwritten in the middle): each refused
    before anything changes, with the reason."""
    vm = new_machine.vm
    path = copy_archive(archive, vm)
    size = archive.local.stat().st_size
    vm.run(f"head -c {size // 2} {path} > /root/truncated.tar.gz && cp {path} /root/corrupt.tar.gz && "
           f"printf 'not a backup any more' | dd of=/root/corrupt.tar.gz bs=1 seek={size // 3} conv=notrunc "
           "status=none && systemctl stop jupyterhub traefik")  # fmt: skip
    said = {}
    for name in ("truncated", "corrupt"):
        proc = restore(vm, f"/root/{name}.tar.gz")
        said[name] = proc.stderr.strip()
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert DAMAGED in proc.stderr or "is damaged:" in proc.stderr, proc.stderr
        assert NOTHING_CHANGED in proc.stderr
    assert TRUNCATED in said["truncated"], said
    record("restore-refused", said)
    assert sh(vm, STATE) == new_machine.before
    vm.run("systemctl start traefik jupyterhub")
    wait_hub(vm)


@pytest.mark.fault
def test_another_hubs_archive_is_refused(new_machine):
    """A backup of another hub (made by hub-backup on a machine serving hub.other.org) is refused: restoring it
    would replace this hub's users with that one's."""
    vm = new_machine.vm
    vm.run(
        'sed -i \'s/"hub.example.org"/"hub.other.org"/\' /etc/traefik/traefik.toml && '
        "hub-backup --dir /root/other > /dev/null; "
        'sed -i \'s/"hub.other.org"/"hub.example.org"/\' /etc/traefik/traefik.toml && '
        "systemctl stop jupyterhub traefik"
    )
    proc = restore(vm, sh(vm, "ls /root/other/hub-*.tar.gz"))
    vm.run("rm -rf /root/other; systemctl start traefik jupyterhub")
    wait_hub(vm)
    assert proc.returncode == 1
    assert OTHER_HUB in proc.stderr and NOTHING_CHANGED in proc.stderr, proc.stderr
    assert sh(vm, STATE) == new_machine.before


# -- 3. the restore onto the new machine --------------------------------------------------------------


def reverse_tunnel(vm: ContainerVM, port: int) -> subprocess.Popen:
    """``ssh -R``: the new machine's 127.0.0.1:PORT reaches this machine's 127.0.0.1:PORT (the provider's
    tunnel into the old machine): the same issuer URL on both machines."""
    command = ["ssh", "-N", "-i", str(key()), "-p", str(vm.ports[22]), "-o", "BatchMode=yes",
               "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "ExitOnForwardFailure=yes",
               "-o", "ServerAliveInterval=10", "-o", "LogLevel=ERROR",
               "-R", f"127.0.0.1:{port}:127.0.0.1:{port}", "root@127.0.0.1"]  # fmt: skip
    return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@dataclass
class Restored:
    hub: Hub
    out: str
    seconds: float
    downtime: float
    clock: str  # the new machine's clock just before the restore


@pytest.fixture(scope="module")
def restored(machine, hub, new_machine, archive, used, root_ca, request) -> Restored:
    """The archive restored onto the new machine, as the chapter does it: stop, hub-restore, start. Its hub
    logs people in through the same provider (the old machine's, through an SSH tunnel each way)."""
    vm = new_machine.vm
    ours = dict(line.split("=", 1) for line in sh(machine, "cat /etc/jupyterhub/secrets/jupyterhub.env").splitlines())
    theirs = dict(line.split("=", 1) for line in sh(vm, "cat /etc/jupyterhub/secrets/jupyterhub.env").splitlines())
    assert ours["JUPYTERHUB_CRYPT_KEY"] != theirs["JUPYTERHUB_CRYPT_KEY"]
    assert sh(machine, "cat /etc/jupyterhub/secrets/cookie_secret") != sh(
        vm, "cat /etc/jupyterhub/secrets/cookie_secret"
    )
    assert "alice" not in sh(vm, "docker volume ls --quiet") and not certificate_domains(vm)
    port = hub.oidc.port
    for name in ("ca.pem", "bundle.pem"):
        subprocess.run(f"docker exec {machine.name} cat {PROVIDER_DIR}/{name} | docker exec -i {vm.name} sh -c "
                       f"'mkdir -p {PROVIDER_DIR} && cat > {PROVIDER_DIR}/{name}'", shell=True, check=True)  # fmt: skip
    tunnel = reverse_tunnel(vm, port)
    request.addfinalizer(tunnel.terminate)
    wait_for("the provider, from the new machine", lambda: vm.run(
        f"curl -sf --cacert {PROVIDER_DIR}/ca.pem https://127.0.0.1:{port}/.well-known/openid-configuration",
        check=False).returncode == 0, timeout=30)  # fmt: skip
    dropin = f"'[Service]' 'Environment=OIDC_ISSUER={hub.oidc.issuer}' 'Environment=SSL_CERT_FILE={BUNDLE}'"
    vm.run(f"mkdir -p {HUB_DROPIN.rsplit('/', 1)[0]} && printf '%s\\n' {dropin} > {HUB_DROPIN}")
    path = copy_archive(archive, vm)
    clock = vm.clock()
    stopped = time.monotonic()
    vm.run("systemctl stop jupyterhub traefik")
    started = time.monotonic()
    proc = restore(vm, path)
    seconds = time.monotonic() - started
    assert proc.returncode == 0, proc.stdout + proc.stderr
    vm.run("systemctl start traefik jupyterhub")
    public = PublicName(public_name(hub.stage), https_port=vm.ports[443], http_port=vm.ports[80])
    new = Hub(vm, hub.stage, public.https_url, verify=root_ca, session_factory=lambda: public.session(root_ca),
              oidc=hub.oidc)  # fmt: skip
    new.wait_up()
    downtime = time.monotonic() - stopped
    record("restore", {"seconds": round(seconds, 1), "hub_down_seconds": round(downtime, 1),
                       "users": len(archive.manifest["users"].split()),
                       "archive_mb": round(archive.local.stat().st_size / 1e6, 1)})  # fmt: skip
    return Restored(new, proc.stdout, seconds, downtime, clock)


def test_restore_says_what_it_did(restored, archive):
    """hub-restore saved the new machine's own state first, then says which hub of when it restored."""
    out = restored.out
    assert re.search(r"^hub-restore: this machine before the restore: /var/backups/jupyterhub/before-restore-\S+ ",
                     out, re.M), out  # fmt: skip
    users, volumes = len(archive.manifest["users"].split()), len(archive.manifest["volumes"].split())
    assert f"hub-restore: hub.example.org as of {archive.manifest['created']}: {users} users, {volumes} volumes" in out
    assert "hub-restore: now start it: systemctl start traefik jupyterhub" in out


def test_people_are_still_logged_in_and_their_tokens_work(restored, used):
    """alice's browser session from the old machine goes on on the new one (the cookie secret came back), her
    API token works (the database), and the hub reads bob's auth_state (the key that encrypts it came back)."""
    hub = restored.hub
    alice = HubClient(hub.url, verify=hub.verify, session=used.alice.session)
    hub.clients.append(alice)
    r = alice.get("/hub/home", allow_redirects=False)
    assert r.status_code == 200 and "alice" in r.text, f"{r.status_code} {r.headers.get('Location')}"
    r = alice.api("GET", "/users/bob", used.token)
    assert r.status_code == 200, r.text[:300]
    state = r.json().get("auth_state") or {}
    assert state.get("access_token") and state.get("refresh_token"), sorted(state)


def test_users_find_their_files_and_settings(restored, used, people):
    """alice's server remembers the options she chose; started on the new machine, it has her file; her share
    with bob came back, and bob opens her server; the 20 students' files are in their volumes."""
    hub = restored.hub
    alice = hub.session(people["alice"])
    r = alice.api("GET", "/users/alice?include_stopped_servers=1", used.token)
    assert r.json()["servers"][""]["user_options"] == OPTIONS, r.text[:500]
    shared = alice.api("GET", "/shares/alice/", used.token).json()["items"]
    assert [s["user"]["name"] for s in shared if s["user"]] == ["bob"]
    alice.start_server("alice", data=OPTIONS)
    assert read_text(alice, "alice", "notes.txt") == used.note
    image = sh(hub.machine, "docker inspect -f '{{.Config.Image}}' jupyter-alice")
    assert image == "local/scipy:1"
    bob = hub.session(people["bob"])
    r = bob.open_server("alice")
    assert r.status_code == 200 and urlsplit(r.url).path.startswith("/user/alice/"), f"{r.status_code} {r.url}"
    for user in used.extra[:: max(1, len(used.extra) // 4)]:
        vol = f"jupyterhub-user-{user}"
        d = sh(hub.machine, f"docker volume inspect -f '{{{{.Mountpoint}}}}' {vol}")
        assert sh(hub.machine, f"cat {d}/README.txt; stat -c '%s %u' {d}/data.bin") == (
            f"{user}\n{EXTRA_MB * 1024 * 1024} 1000"
        )


def served_certificate(port: int, name: str) -> bytes:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as sock,
        ctx.wrap_socket(sock, server_hostname=name) as tls,
    ):
        return tls.getpeercert(binary_form=True)


def acme_certificate(machine) -> bytes:
    """The first certificate of the chain in acme.json (DER)."""
    data = json.loads(sh(machine, f"cat {ACME_JSON}"))
    chain = base64.b64decode(next(iter(data.values()))["Certificates"][0]["certificate"]).decode()
    first = chain.split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n"
    return ssl.PEM_cert_to_DER_cert(first)


def test_the_certificate_came_back_without_a_new_order(machine, restored, public):
    """The new machine's Traefik serves the old certificate, byte for byte (verified against the old ACME
    server's root by every request above), and asked the ACME server for nothing."""
    name = public.name
    old = acme_certificate(machine)
    new = restored.hub.machine
    assert acme_certificate(new) == old
    assert served_certificate(new.ports[443], name) == old == served_certificate(public.https_port, name)
    ordered = "Obtaining bundled SAN certificate"  # lego, as Traefik logs its order
    assert ordered in machine.journal("traefik"), "the old machine's Traefik never logged its order"
    assert ordered not in restored.hub.machine.journal("traefik", since=restored.clock)
    record("certificate", {"sha256": hashlib.sha256(old).hexdigest()[:16], "new_orders": 0})


# -- 4. what each stage changed, and the teardown -----------------------------------------------------


TABLE_ROW = re.compile(r"^\| \{doc\}`(\d\d)[^`]*` \| (.*?) \| (.*?) \| (.*?) \| (.*?) \| (.*?) \|$")


def chapter_table(stage) -> dict[int, dict[str, set[str]]]:
    """The chapter's table "What each stage changed": per stage, the names in backquotes of each column."""
    rows = {}
    for line in stage.chapter.read_text().splitlines():
        m = TABLE_ROW.match(line)
        if m:
            cols = [set(re.findall(r"`([^`]+)`", c)) for c in m.groups()[1:]]
            rows[int(m.group(1))] = dict(zip(("packages", "users", "files", "units", "ports"), cols, strict=True))
    return rows


@pytest.fixture(scope="module")
def base_vm(machine, request) -> ContainerVM:
    """A machine before the book: a VM of the base image."""
    on_test_vms_only(machine)
    vm = ContainerVM.boot(releases.base_image(), purpose="stage14-base")
    request.addfinalizer(lambda: None if request.config.getoption("--keep-vm") else vm.remove())
    return vm


def test_the_chapter_lists_what_each_stage_changed(stage, machine, hub, base_vm):
    """Each row of the chapter's table is what that stage's image has and the one before it had not (packages
    asked for by name, users and groups, files where the book writes, enabled units); the ports listed are
    those the machine of this stage listens on and a fresh machine does not."""
    images = [releases.base_image()] + [ensure_stage_image(s) for s in stages_up_to(stage)]
    with ThreadPoolExecutor(4) as pool:
        found = list(pool.map(inventory.of_image, images))
    table = chapter_table(stage)
    wrong = []
    for s, before, after in zip(stages_up_to(stage), found[:-1], found[1:], strict=True):
        row = table.get(s.number, {k: set() for k in ("packages", "users", "files", "units", "ports")})
        actual = {
            "packages": after.manual - before.manual,
            "users": (after.users - before.users) | (after.groups - before.groups),  # users and groups
            "files": after.book_files() - before.book_files(),
            "units": after.enabled - before.enabled,
        }
        for col, names in actual.items():
            if names != row[col]:
                wrong.append(f"{s.name} {col}: the chapter says {sorted(row[col])}, the image has {sorted(names)}")
        gone = before.manual - after.manual | (before.users - after.users)
        gone |= before.book_files() - after.book_files()
        if gone:
            wrong.append(f"{s.name} removed {sorted(gone)}: say so in the chapter")
    assert not wrong, "\n".join(wrong)
    ports = {p.rsplit(":", 1)[1] for p in inventory.of_machine(machine).ports}
    fresh = {p.rsplit(":", 1)[1] for p in inventory.of_machine(base_vm).ports}
    listed = set().union(*(row["ports"] for row in table.values()))
    containerd = sh(machine, "ss -Htlnp | grep containerd | awk '{print $4}' | sed 's/.*://'").split()
    of_the_tests = {"14000", "15000", str(hub.oidc.port)}  # Pebble, the OpenID Connect provider
    extra = ports - fresh - set(containerd) - of_the_tests - listed
    assert not extra, f"listening, not in the table: {extra}"


@pytest.fixture(scope="module")
def teardown_started(machine, stage, request):
    """A third machine of this stage, used (a user's container and volume), on which teardown.sh starts now,
    in the background: it runs while the other tests do. None on your own server."""
    if not isinstance(machine, ContainerVM):
        return None
    # Its Docker starts empty (copying the stage's images would take long): one image, a user's container
    # and volume stand for the users' servers.
    vm = ContainerVM.boot(ensure_stage_image(stage), purpose="stage14-teardown")
    request.addfinalizer(lambda: None if request.config.getoption("--keep-vm") else vm.remove())
    slim = releases.slim_image()
    save = subprocess.Popen(["docker", "save", slim], stdout=subprocess.PIPE)
    subprocess.run(["docker", "exec", "-i", vm.name, "docker", "load", "--quiet"], stdin=save.stdout, check=True,
                   capture_output=True, timeout=300)  # fmt: skip
    save.wait()
    vm.run(
        f"docker tag {slim} local/lab:1 && docker volume create jupyterhub-user-alice > /dev/null && "
        "docker run -d --name jupyter-alice -v jupyterhub-user-alice:/home/jovyan/work local/lab:1 sleep infinity "
        "> /dev/null && "
        # A test VM's disk is a container's: dpkg's fsync after every file makes purging slow there.
        "echo force-unsafe-io > /etc/dpkg/dpkg.cfg.d/hhw-unsafe-io"
    )
    dry = vm.run("bash teardown.sh", cwd=stage.vm_dir, check=False)
    started = time.monotonic()
    proc = subprocess.Popen(["docker", "exec", "-w", stage.vm_dir, vm.name, "bash", "teardown.sh", "--yes"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    return vm, dry, proc, started


def test_teardown_leaves_nothing_of_the_book(teardown_started, base_vm, stage):
    """After `bash teardown.sh --yes` and a restart, the machine has the packages, users, groups, files,
    enabled units, listening ports and firewall tables of a fresh one; no Docker at all. Without --yes it
    only says what it would do."""
    if teardown_started is None:
        pytest.skip("tears down a test VM of its own; on your server, read what `bash teardown.sh` would do")
    vm, dry, proc, started = teardown_started
    assert dry.returncode == 1 and TEARDOWN_DRY in dry.stdout
    out, _ = proc.communicate(timeout=900)
    seconds = time.monotonic() - started
    assert proc.returncode == 0, out[-3000:]
    for line in ("Docker: 0 containers, 0 volumes, 0 images left", "files: none left",
                 f"packages: none of {PACKAGES} installed",
                 "teardown: done; restart the machine now (systemctl reboot)",
                 "users: none of alice bob traefik prometheus left"):  # fmt: skip
        assert line in out, out[-3000:]
    vm.run("rm /etc/dpkg/dpkg.cfg.d/hhw-unsafe-io")
    vm.reboot()
    nft = stage_tag(stages_up_to(stage)[-2])  # an image with nft, to read the VM's firewall from outside
    after, fresh = inventory.of_machine(vm, nft_image=nft), inventory.of_machine(base_vm, nft_image=nft)
    test_vm_only = {"/var/log/hhw-install", "/var/lib/docker", "/etc/subuid-", "/etc/subgid-"}
    problems = {
        "packages": sorted(after.packages ^ fresh.packages),
        "users": sorted(after.users ^ fresh.users),
        "groups": sorted(after.groups ^ fresh.groups),
        "files": sorted((after.files ^ fresh.files) - test_vm_only),
        "enabled units": sorted(after.enabled ^ fresh.enabled),
        "ports": sorted({p.rsplit(":", 1)[1] for p in after.ports} ^ {p.rsplit(":", 1)[1] for p in fresh.ports}),
        "firewall": sorted(set(after.firewall) ^ set(fresh.firewall)),
        "docker": ["docker is still there"] if after.docker else [],
        "docker data": sh(vm, "ls -A /var/lib/docker").split(),
    }
    record("teardown", {"seconds": round(seconds, 1), "left": {k: v for k, v in problems.items() if v}})
    assert not any(problems.values()), {k: v for k, v in problems.items() if v}


# -- the checks of your own server (after the tests above: the teardown starts with the first of them) --------

test_your_server = server_checks.test_your_server
test_target_local_passes_on_a_machine_built_by_the_book = (
    localcheck.test_target_local_passes_on_a_machine_built_by_the_book
)


# -- the chapter and the logs --------------------------------------------------------------


def test_chapter_shows_what_install_printed(machine, stage):
    """Each "You should see" block after an install.sh section matches what it printed on this VM."""
    print(f"{check_chapter_outputs(machine, stage)} quoted lines checked")


# Keep this test last: it reads the logs after every other test of the stage has run.
def test_no_secret_of_the_tests_in_any_log(machine, used):
    """No token or password the tests used in the old machine's journal, Traefik's access log or containers' logs."""
    remember_secret("API token", used.token)
    record("secrets-in-logs-14", assert_no_leaks(machine))
