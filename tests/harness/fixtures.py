"""The pytest plugin every stage's tests share: options, fixtures, failure reports."""

from __future__ import annotations

import os
import secrets
import shlex
import shutil
import signal
import subprocess
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from . import browser, releases, users
from .acme import PublicName, pebble_root, point_traefik_at_pebble
from .cluster import Cluster, running_cluster
from .doctor import fault, section
from .github import GitHubStandIn, default_accounts
from .hubclient import HubClient
from .images import boot_stage, ensure_stage_image
from .machine import (
    ContainerVM,
    LocalMachine,
    Machine,
    RemoteMachine,
    remove_session_containers,
    remove_stale_containers,
)
from .oidc import OIDCProvider
from .results import record
from .secrets_audit import remember_secret
from .server_checks import checks_for
from .stages import Stage, stage_of
from .waits import WaitTimeout, wait_for

CONFIG = "/etc/jupyterhub/jupyterhub_config.py"  # where every stage's install.sh puts the config


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("hhw", "Hub the Hard Way")
    group.addoption("--target", choices=("container", "local"), default="container",
                    help="container: a fresh test VM per stage (default); "
                         "local: this machine, as root (your own VM, built by the book)")  # fmt: skip
    group.addoption("--debian", choices=sorted(releases.RELEASES), default=None,
                    help=f"Debian release of test VMs (default: ${releases.ENV} or {releases.DEFAULT})")  # fmt: skip
    group.addoption(
        "--hub-url",
        default=None,
        metavar="URL",
        help="check a hub from another machine, e.g. https://hub.example.org: only what HTTP shows "
        "(the login page, a login and a start, the certificate, the redirect, HSTS, TLS versions)",
    )
    group.addoption(
        "--user",
        default=os.environ.get("HHW_USER"),
        metavar="NAME",
        help="with --target local or --hub-url: the account that logs in and starts a server "
        "(default: $HHW_USER); its password is read from $HHW_PASSWORD, never from an option",
    )
    group.addoption(
        "--public-name",
        default=None,
        metavar="NAME",
        help="with --target local: the hub's public name (default: the domain in the stage's traefik.toml)",
    )
    group.addoption(
        "--allow-disruption",
        action="store_true",
        help="with --target local: also run the tests that restart or break the hub (users notice)",
    )
    group.addoption("--keep-vm", action="store_true", help="leave test VMs running, for a look inside")
    group.addoption("--update-screenshots", action="store_true", help="overwrite the book's screenshots")


def pytest_configure(config: pytest.Config) -> None:
    # A run stopped with SIGTERM (CI time-out, kill) still removes its VMs.
    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, stop)
    if config.getoption("--debian"):
        os.environ[releases.ENV] = config.getoption("--debian")
    releases.current()  # a wrong $HHW_DEBIAN stops the run here
    if config.getoption("--keep-vm"):
        os.environ["HHW_KEEP_VM"] = "1"  # kept VMs outlive this run and the next one's clean-up
    if shutil.which("docker") and not hasattr(config, "workerinput"):
        remove_stale_containers()


def mode(config: pytest.Config) -> str:
    """ "container" (test VMs), "local" (this machine) or "remote" (only a hub's URL)."""
    if config.getoption("--target") == "local":
        return "local"
    return "remote" if config.getoption("--hub-url") else "container"


def pytest_report_header(config: pytest.Config) -> str:
    if mode(config) == "local":
        return "hhw: target local (this machine)"
    if mode(config) == "remote":
        return f"hhw: the hub at {config.getoption('--hub-url')}, from this machine"
    return f"hhw: test VMs run Debian {releases.current()} ({releases.codename()})"


def pytest_runtest_setup(item: pytest.Item) -> None:
    """On a reader's own server, tests that restart or break things run only when asked to."""
    if mode(item.config) != "container" and item.get_closest_marker("disruptive"):
        if not item.config.getoption("--allow-disruption"):
            pytest.skip("restarts or breaks part of the hub (users would notice): add --allow-disruption to run it")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """``test_your_server(server_check)`` runs once per check that applies to the module's stage."""
    if "server_check" in metafunc.fixturenames:
        found = checks_for(stage_of(metafunc.definition.path))
        metafunc.parametrize("server_check", found, ids=[c.name for c in found])


def first_sentence(report: pytest.TestReport) -> str:
    """The first line of a failure's message, without pytest's "Failed: " (a check's one sentence)."""
    message = getattr(getattr(report.longrepr, "reprcrash", None), "message", None) or str(report.longrepr)
    message = message.removeprefix('failed on setup with "').removeprefix("Failed: ")
    return message.strip().split("\n")[0]


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    """On your own server: what is wrong, one sentence per failure, in full (the short summary cuts lines)."""
    if mode(config) == "container":
        return
    reports = terminalreporter.stats.get("failed", []) + terminalreporter.stats.get("error", [])
    if not reports:
        return
    terminalreporter.section("what is wrong")
    seen = set()
    for report in reports:
        sentence = first_sentence(report)
        if sentence not in seen:
            seen.add(sentence)
            terminalreporter.write_line(f"{report.nodeid.split('::')[-1]}: {sentence}")


def pytest_sessionfinish(session: pytest.Session) -> None:
    if not session.config.getoption("--keep-vm") and shutil.which("docker"):
        remove_session_containers()


# -- machine and hub ------------------------------------------------------------------


@pytest.fixture(scope="module")
def stage(request: pytest.FixtureRequest) -> Stage:
    """The stage whose directory holds the test module."""
    return stage_of(request.path)


@pytest.fixture(scope="module")
def machine(request: pytest.FixtureRequest, stage: Stage) -> Iterator[Machine]:
    """The machine under test: a VM booted from the saved image of this stage, or this machine."""
    if mode(request.config) == "local":
        yield LocalMachine()
        return
    if mode(request.config) == "remote":
        yield RemoteMachine(request.config.getoption("--hub-url"))
        return
    if subprocess.run(["docker", "info"], check=False, capture_output=True).returncode != 0:
        pytest.fail("no Docker Engine answers 'docker info': run scripts/setup-host.sh (make test does)")
    if stage.is_cluster:
        # Several machines: the hub's is the machine under test; the others are in the `cluster` fixture.
        yield request.getfixturevalue("cluster").hub
        return
    vm = boot_stage(ensure_stage_image(stage), purpose=f"stage{stage.number:02d}")
    try:
        yield vm
    finally:
        if not request.config.getoption("--keep-vm"):
            vm.remove()


@pytest.fixture(scope="module")
def scripts(request: pytest.FixtureRequest, machine: Machine) -> Iterator[Machine]:
    """Where a step's scripts reach the hub by its name, https://hub.example.org, as on a reader's machine: on
    a test VM the name points at the VM itself and Pebble's root is trusted (DNS and Let's Encrypt elsewhere)."""
    from .localcheck import distrust_in_system, trust_in_system

    if not isinstance(machine, ContainerVM):
        pytest.skip("runs the step's scripts against the test VM's hub; on your own server run them yourself")
    trust_in_system(machine, Path(request.getfixturevalue("root_ca")).read_text())
    machine.run("cp /etc/hosts /root/hosts.hhw-saved && echo '127.0.0.1 hub.example.org' >> /etc/hosts")
    try:
        yield machine
    finally:
        machine.run("cat /root/hosts.hhw-saved > /etc/hosts", check=False)
        distrust_in_system(machine)


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest, stage: Stage) -> Iterator[Cluster]:
    """The machines of a cluster stage (tests/harness/cluster.py), booted from their saved images."""
    if mode(request.config) != "container" or not stage.is_cluster:
        pytest.skip("needs the test VMs of a cluster stage (a hub machine and workers)")
    with running_cluster(stage, request.module, keep=request.config.getoption("--keep-vm")) as found:
        yield found


@dataclass
class Hub:
    """A running hub as the tests see it: where it answers, how to restart it, its log."""

    machine: Machine
    stage: Stage
    url: str
    verify: bool | str = True
    unit: str = "jupyterhub"
    clients: list[HubClient] = field(default_factory=list)
    # Makes the HTTP session of each client (HTTPS stages pin the hub's name to loopback).
    session_factory: Callable[[], requests.Session] | None = None
    # GitHub's stand-in, on stages where people log in through GitHub.
    github: GitHubStandIn | OnlyOnATestVM | None = None
    # The OpenID Connect provider, on stages where people log in through one.
    oidc: OIDCProvider | OnlyOnATestVM | None = None

    def _new_client(self) -> HubClient:
        if self.session_factory is None:
            return HubClient(self.url, verify=self.verify)
        return HubClient(self.url, verify=self.verify, session=self.session_factory())

    def client(self) -> HubClient:
        """A new browser-like session against this hub."""
        c = self._new_client()
        self.clients.append(c)
        del self.clients[:-3]
        return c

    def wait_up(self, timeout: float = 90) -> None:
        """Wait until the login page answers 200."""

        def login_page() -> bool:
            return self._new_client().get("/hub/login").status_code == 200

        wait_for(f"the hub's login page at {self.url}/hub/login", login_page, timeout=timeout)

    def start(self, check: bool = True):
        """Run the stage's start.sh as the chapter does (from the step directory)."""
        cwd = self.stage.vm_dir if isinstance(self.machine, ContainerVM) else str(self.stage.path)
        return self.machine.run("bash start.sh", cwd=cwd, check=check)

    def restart(self) -> None:
        """``systemctl restart`` the hub and wait until it answers again."""
        self.machine.run(f"systemctl restart {self.unit}")
        self.wait_up()

    def journal(self, unit: str | None = None, lines: int = 400) -> str:
        """The last ``lines`` of the hub's journal (or of ``unit``'s)."""
        return self.machine.journal(unit or self.unit, lines=lines)

    def session(self, person: Person) -> HubClient:
        """A new client, logged in as ``person`` (fails with the login page's message if refused).

        On a GitHub stage the client makes the OAuth round trip through the stand-in; on an
        OpenID Connect stage, through the provider's sign-in form.
        """
        if self.oidc is not None:
            client = self.client()
            r = self.oidc.login(client, person.login or person.name, person.password)
            assert r.status_code == 302, f"OIDC login of {person.login} refused ({r.status_code}): {r.text[:500]}"
            return client
        if self.github is None:
            return users.login(self.client(), person.name, person.password)
        client = self.client()
        r = self.github.login(client, person.login or person.name, person.password)
        assert r.status_code == 302, f"GitHub login of {person.login} refused ({r.status_code}): {r.text[:500]}"
        return client

    @contextmanager
    def edited_config(self, *, sed: str | None = None, append: tuple[str, ...] = ()) -> Iterator[None]:
        """Change the hub's config (a sed script, lines appended) and restart; restore and restart after."""
        config = CONFIG
        self.machine.run(f"cp -p {config} {config}.hhw-saved")
        try:
            if sed:
                self.machine.run(f"sed -i {shlex.quote(sed)} {config}")
            if append:
                self.machine.run(f"printf '%s\\n' {shlex.join(append)} >> {config}")
            self.restart()
            yield
        finally:
            self.machine.run(f"mv {config}.hhw-saved {config}")
            self.restart()


def public_name(stage: Stage) -> str:
    """The hub's public name in the stage's files (traefik.toml's main domain), e.g. hub.example.org."""
    static = stage.latest("traefik.toml")
    for line in static.read_text().splitlines() if static else ():
        if line.strip().startswith("main = "):
            return line.split('"')[1]
    raise LookupError(f"no main domain in {static}")


@pytest.fixture(scope="module")
def public(machine: Machine, stage: Stage) -> PublicName:
    """Where this machine reaches the hub's public name: the VM's ports 80 and 443 on loopback."""
    if not isinstance(machine, ContainerVM):
        pytest.skip("reaches the hub by its name with a certificate from Pebble, on a test VM only; "
                    "check your own hub in a browser")  # fmt: skip
    return PublicName(public_name(stage), https_port=machine.ports[443], http_port=machine.ports[80])


@pytest.fixture(scope="module")
def root_ca(machine: Machine, public: PublicName, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Point Traefik at Pebble (Let's Encrypt's stand-in), wait for the certificate; Pebble's root as a file."""
    seconds = point_traefik_at_pebble(machine, public.name)
    record("acme-issuance", {"seconds_from_traefik_restart": round(seconds, 2)})
    path = tmp_path_factory.mktemp("pebble") / "root.pem"
    path.write_text(pebble_root(machine) + "\n")
    return str(path)


def system_ca() -> str | bool:
    """The CAs this machine's system trusts (Debian's bundle), else those of certifi."""
    bundle = Path("/etc/ssl/certs/ca-certificates.crt")
    return str(bundle) if bundle.is_file() else True


@dataclass(frozen=True)
class Site:
    """The hub's public name, where this machine reaches its HTTPS and HTTP ports, and the CAs it trusts."""

    name: str
    https: tuple[str, int]
    http: tuple[str, int]
    ca_file: str | None


@pytest.fixture(scope="module")
def site(request: pytest.FixtureRequest, stage: Stage) -> Site:
    """The HTTPS side of the hub: on a test VM, Pebble's certificate through the VM's ports; on your own
    server, the real certificate on ports 443 and 80 of this machine, checked against the system's CAs;
    with --hub-url, the hub by its name, over the network."""
    ca = system_ca()
    ca_file = ca if isinstance(ca, str) else None
    if mode(request.config) == "remote":
        url = urllib.parse.urlsplit(request.config.getoption("--hub-url"))
        if url.scheme != "https" or not url.hostname:
            pytest.skip(f"checks HTTPS, and {url.geturl()} is not an https:// URL")
        return Site(url.hostname, (url.hostname, url.port or 443), (url.hostname, 80), ca_file)
    name = request.config.getoption("--public-name") or public_name(stage)
    if mode(request.config) == "local":
        return Site(name, ("127.0.0.1", 443), ("127.0.0.1", 80), ca_file)
    public, root_ca = request.getfixturevalue("public"), request.getfixturevalue("root_ca")
    return Site(public.name, ("127.0.0.1", public.https_port), ("127.0.0.1", public.http_port), root_ca)


@pytest.fixture(scope="module")
def hub_url(request: pytest.FixtureRequest, machine: Machine, stage: Stage) -> str:
    """Where the hub answers: port 8000 of the machine's loopback, through an SSH tunnel as in the book;
    from stage 06 on, its HTTPS port on its public name (with a certificate from Pebble). On your own
    server, this machine's port 8000 or 443; with --hub-url, that URL."""
    if mode(request.config) == "remote":
        return request.config.getoption("--hub-url").rstrip("/")
    if stage.serves_https and mode(request.config) == "local":
        return "https://127.0.0.1:443"
    if stage.serves_https:
        request.getfixturevalue("root_ca")
        return request.getfixturevalue("public").https_url
    return machine.loopback_url(8000)


@pytest.fixture(scope="module")
def hub_tls(request: pytest.FixtureRequest, stage: Stage) -> tuple[bool | str, Callable[[], requests.Session] | None]:
    """How clients verify the hub and make their sessions (HTTPS: Pebble's root, the name pinned to loopback)."""
    if mode(request.config) == "remote":
        return system_ca(), None
    if not stage.serves_https:
        return True, None
    if mode(request.config) == "local":
        site = request.getfixturevalue("site")
        return system_ca(), lambda: PublicName(site.name, site.https[1], site.http[1]).session(site.ca_file)
    public, root_ca = request.getfixturevalue("public"), request.getfixturevalue("root_ca")
    return root_ca, lambda: public.session(root_ca)


@pytest.fixture(scope="module")
def github(machine: Machine, stage: Stage, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitHubStandIn]:
    """GitHub's stand-in, running in the test VM, registered with the hub's OAuth app (its ID and secret)."""
    if not isinstance(machine, ContainerVM):
        pytest.skip("the GitHub stand-in runs only on a test VM; log in to your own hub with your GitHub account")
    standin = GitHubStandIn(machine, f"https://{public_name(stage)}/hub/oauth_callback", default_accounts())
    standin.start(tmp_path_factory.mktemp("github"))
    try:
        yield standin
    finally:
        standin.stop()


@pytest.fixture(scope="module")
def oidc(machine: Machine, stage: Stage, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OIDCProvider]:
    """The OpenID Connect provider, running in the test VM, its client the hub's (ID and secret), the hub
    pointed at it by a drop-in (read at the hub's next restart)."""
    if not isinstance(machine, ContainerVM):
        pytest.skip("the OpenID Connect provider runs only on a test VM; log in to your own hub with your provider")
    name = public_name(stage)
    provider = OIDCProvider.registered_with(machine, redirect_uris=[f"https://{name}/hub/oauth_callback"],
                                            post_logout_redirect_uris=[f"https://{name}/hub/login"])  # fmt: skip
    provider.start(tmp_path_factory.mktemp("oidc"))
    record("oidc-provider-start", {k: round(v, 2) for k, v in provider.timings.items()})
    try:
        provider.point_hub_here()
        yield provider
    finally:
        provider.stop()


@pytest.fixture(scope="module")
def hub(request: pytest.FixtureRequest, machine: Machine, stage: Stage, hub_url: str, hub_tls) -> Hub:
    """The stage's hub, started as the chapter starts it (start.sh) when the test VM is new.

    On a GitHub stage, the hub is restarted pointing at GitHub's stand-in; on an OpenID Connect
    stage, at the provider.
    """
    verify, session_factory = hub_tls
    h = Hub(machine, stage, hub_url, verify=verify, session_factory=session_factory)
    if mode(request.config) != "container":
        if stage.login == "github":
            h.github = OnlyOnATestVM("GitHub's stand-in runs only on a test VM; log in to your hub with GitHub")
        if stage.login == "oidc":
            h.oidc = OnlyOnATestVM("the OpenID Connect provider runs only on a test VM; log in with your provider")
        answers(h)
        return h
    if isinstance(machine, ContainerVM) and (stage.path / "start.sh").exists():
        h.start()
    if stage.login == "github":
        h.github = request.getfixturevalue("github")
        machine.run("systemctl restart jupyterhub")
    if stage.login == "oidc":
        h.oidc = request.getfixturevalue("oidc")
        machine.run("systemctl restart jupyterhub")
    h.wait_up()
    return h


class OnlyOnATestVM:
    """On your own server, stands for a test VM's stand-in (GitHub's, the provider): using it skips the test."""

    def __init__(self, reason: str) -> None:
        self._reason = reason

    def __getattr__(self, name: str):
        pytest.skip(self._reason)


def answers(hub: Hub) -> None:
    """On your own server: the hub answers its login page now, or the run stops with one sentence."""

    def login_page() -> requests.Response | None:
        try:
            r = hub.client().get("/hub/login")
        except requests.RequestException:
            return None
        return r if r.status_code == 200 else None

    try:  # a hub that has just been restarted takes a few seconds
        wait_for("the hub's login page", login_page, timeout=30)
        return
    except WaitTimeout:
        pass
    try:
        r = hub.client().get("/hub/login")
    except requests.RequestException as exc:
        fault(f"The hub does not answer at {hub.url}/hub/login ({type(exc).__name__}): is it running? "
              f"`systemctl status jupyterhub` says ({section('01', 'Start the hub')}).", str(exc))  # fmt: skip
    if r.status_code in (502, 503, 504):
        fault(f"The proxy at {hub.url} answers {r.status_code} for /hub/login: the hub behind it does not answer; "
              f"`systemctl status jupyterhub` and `journalctl -u jupyterhub` say why "
              f"({section('01', 'Start the hub')}).", r.text[:500])  # fmt: skip
    if r.status_code != 200:
        fault(f"{hub.url}/hub/login answers {r.status_code}, not the hub's login page: is the proxy's route "
              f"to the hub there? ({section('04', 'The routes the hub writes')}).", r.text[:500])  # fmt: skip


# -- people ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Person:
    """Someone who logs in: a Linux account with the password the tests gave it, or (GitHub and
    OpenID Connect stages) an account of the stand-in or provider, whose ``login`` the hub turns into
    the user ``name``."""

    name: str
    password: str
    login: str = ""

    def __post_init__(self) -> None:
        remember_secret("password", self.password)  # the last test of each stage looks for it in every log


def set_password(machine: Machine, name: str) -> Person:
    password = "hhw-" + secrets.token_urlsafe(12)
    machine.run(f"chpasswd <<'EOF'\n{name}:{password}\nEOF")
    return Person(name, password)


class People(dict):
    """People by name. Asking for one the run does not have skips the test and says why."""

    def __init__(self, found: dict[str, Person], missing: str) -> None:
        super().__init__(found)
        self.missing = missing  # the skip reason, with {name}

    def __missing__(self, name: str) -> Person:
        pytest.skip(self.missing.format(name=name))

    def first(self) -> Person:
        """The first person (alice on a test VM, the --user on your own server)."""
        if not self:
            pytest.skip(self.missing.format(name="someone"))
        return next(iter(self.values()))


@pytest.fixture(scope="module")
def people(request: pytest.FixtureRequest, machine: Machine, stage: Stage) -> dict[str, Person]:
    """The book's users (those that exist at this stage) with fresh random passwords. On your own
    server: only the account given with --user, its password from $HHW_PASSWORD (nobody's password
    is ever changed there)."""
    if mode(request.config) != "container":
        if stage.login != "pam":
            provider = "GitHub" if stage.login == "github" else "your OpenID Connect provider"
            return People({}, f"people log in through {provider} at this stage: check a login in your browser")
        user, password = request.config.getoption("--user"), os.environ.get("HHW_PASSWORD")
        if user and password:
            return People({user: Person(user, password)}, f"needs {{name}}'s password; this run has {user}'s only")
        return People({}, "needs a person to log in: give --user NAME and the password in $HHW_PASSWORD")
    if stage.login == "github":
        accounts = request.getfixturevalue("github").accounts
        return People({n: Person(accounts[n].name, accounts[n].password, accounts[n].login) for n in ("alice", "bob")},
                      "{name} has no GitHub account in the stand-in")  # fmt: skip
    if stage.login == "oidc":
        accounts = request.getfixturevalue("oidc").accounts
        return People({n: Person(n, accounts[n].password, accounts[n].login) for n in ("alice", "bob", "carol")},
                      "{name} has no account at the provider")  # fmt: skip
    found = {}
    for name in ("alice", "bob"):
        if machine.run(f"id {name}", check=False).returncode == 0:
            found[name] = set_password(machine, name)
    return People(found, "{name} has no account at this stage")


@pytest.fixture
def outsider(request: pytest.FixtureRequest, machine: Machine, stage: Stage) -> Iterator[Person]:
    """A real Linux user (on GitHub stages: a GitHub account; on OpenID Connect stages: an account of the
    provider in no allowed group) whom no allow rule names; removed afterwards."""
    name = "mallory"
    if stage.login == "oidc":
        account = request.getfixturevalue("oidc").accounts[name]
        yield Person(name, account.password, account.login)
        return
    if stage.login == "github":
        account = request.getfixturevalue("github").accounts[name]
        yield Person(account.name, account.password, account.login)
        return
    if mode(request.config) != "container":  # a reader's server: an account of our own, never theirs
        name = f"hhw-outsider-{secrets.token_hex(3)}"
    machine.run(f"id {name} >/dev/null 2>&1 || useradd --create-home {name}")
    try:
        yield set_password(machine, name)
    finally:
        machine.run(f"userdel --remove {name}", check=False)


# -- screenshots ----------------------------------------------------------------------


@pytest.fixture
def screenshot(request: pytest.FixtureRequest) -> Callable[..., Path]:
    """Take a screenshot for the book: ``screenshot(url, name, login=(user, password))``."""
    update = request.config.getoption("--update-screenshots")

    def take(url: str, name: str, **kw) -> Path | None:
        if not browser.CHROMIUM.exists():  # e.g. --target local on a server: the checks still run
            print(f"no screenshot {name}: no /usr/bin/chromium (scripts/setup-host.sh installs it)")
            return None
        return browser.take(url, name, update_book=update, **kw)

    return take


# -- failure reports ------------------------------------------------------------------


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    if report.failed and report.when in ("setup", "call"):
        funcargs = getattr(item, "funcargs", {})
        # The stage's hub, or another Hub a test made (e.g. a second machine's).
        hub_obj = funcargs.get("hub") or next((v for v in funcargs.values() if isinstance(v, Hub)), None)
        machine_obj = funcargs.get("machine") or (hub_obj.machine if hub_obj else None)
        if isinstance(hub_obj, Hub):
            for i, client in enumerate(hub_obj.clients):
                report.sections.append((f"client {i}: last pages seen", client.report()))
        cluster_obj = funcargs.get("cluster") or next((v for v in funcargs.values() if isinstance(v, Cluster)), None)
        if isinstance(cluster_obj, Cluster):
            report.sections.append(("every machine: units and logs", cluster_obj.diagnostics()))
        elif isinstance(machine_obj, Machine):
            units = (hub_obj.unit,) if isinstance(hub_obj, Hub) else ("jupyterhub",)
            report.sections.append((f"{machine_obj.name}: units and logs", machine_obj.diagnostics(units)))
    return report
