"""The checks a reader runs on their own server (``--target local``), or from another machine
(``--hub-url``); the same checks run on every test VM, so a machine built by the book passes them.

Each stage module runs the checks that apply to it as ``test_your_server[NAME]``. A failing check
says what is wrong in one sentence first (see doctor.py). Checks never change the machine: a
login and a start use the account given with --user and $HHW_PASSWORD, and a server they start
is stopped again.
"""

from __future__ import annotations

import json
import re
import shlex
import socket
import ssl
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import requests

from .acme import tls_handshake
from .doctor import fault, section
from .ports import listeners
from .stages import Stage

CONFIG = "/etc/jupyterhub/jupyterhub_config.py"
SECRETS = "/etc/jupyterhub/secrets"
ROUTES = "/var/lib/jupyterhub-proxy"
ACME_JSON = "/var/lib/traefik/acme.json"
START_01 = section("01", "Start the hub")
WRONG_01 = section("01", "What goes wrong")
ALLOW_02 = section("02", "Who may log in: the allow rules")
SECRETS_02 = section("02", "Secrets in files")
CONFIG_03 = section("03", "The configuration")
WRONG_03 = section("03", "What goes wrong")
IMAGES_03 = section("03", "Build the single-user images")
ROUTES_04 = section("04", "The routes the hub writes")
NAME_06 = section("06", "Check the name and the ports")
STAGING_06 = section("06", "Switch to production")
ARRIVE_06 = section("06", "Watch the certificate arrive")
PORTS_06 = section("06", "Open ports 80 and 443")
RENEWAL_06 = section("06", "Renewal")
API_04 = section("04", "A password for Traefik's API")
TRAEFIK_05 = section("05", "Traefik's configuration")
TRAEFIK_06 = section("06", "Traefik's configuration")


@dataclass(frozen=True)
class Check:
    """One check: its name (the test id), what it does, and which stages it applies to."""

    name: str
    run: Callable[[pytest.FixtureRequest], None]
    applies: Callable[[Stage], bool]

    def __repr__(self) -> str:
        return self.name


CHECKS: list[Check] = []


def check(applies: Callable[[Stage], bool] = lambda stage: True):
    """Register a check for the stages where ``applies(stage)``."""

    def register(func: Callable[[pytest.FixtureRequest], None]) -> Callable[[pytest.FixtureRequest], None]:
        CHECKS.append(Check(func.__name__, func, applies))
        return func

    return register


def checks_for(stage: Stage) -> list[Check]:
    """The checks of ``stage``, in the order a reader would want them."""
    return [c for c in CHECKS if c.applies(stage)]


def on_machine(request: pytest.FixtureRequest):
    """The machine, once its hub is up (on a test VM the hub fixture starts it; checks on the machine need it)."""
    request.getfixturevalue("hub")
    return request.getfixturevalue("machine")


def uses_docker(stage: Stage) -> bool:
    return stage.number >= 3


def uses_traefik(stage: Stage) -> bool:
    return stage.number >= 4 and not stage.is_cluster  # the cluster stages' hubs start their own proxy


def containers_on_docker0(stage: Stage) -> bool:
    """Users' containers on the hub machine's docker0, built there and chosen from allowed_images (03-11).

    Not stage 13 (Swarm): its servers run on workers and reach a hub in a container on an overlay
    network, and there is one image, no choice."""
    return uses_docker(stage) and not stage.is_cluster


def runs_slurm(stage: Stage) -> bool:
    """The hub's machine is also a Slurm controller (stage 12): users' servers are batch jobs, no Docker."""
    return stage.latest("slurm.conf") is not None


def has_units(stage: Stage) -> bool:
    return stage.latest("jupyterhub.service") is not None


def units_of(stage: Stage) -> list[str]:
    """The systemd units a stage installs (enabled, so they start at boot)."""
    units = ["hub-firewall"] if stage.latest("hub-firewall.service") else []
    units += ["docker"] if uses_docker(stage) and not runs_slurm(stage) else []
    units += ["munge", "slurmctld"] if runs_slurm(stage) else []
    units += [u for u in ("traefik", "jupyterhub") if stage.latest(f"{u}.service")]
    units += ["prometheus"] if scrapes_metrics(stage) else []
    return units


def scrapes_metrics(stage: Stage) -> bool:
    return stage.latest("prometheus.yml") is not None


# -- the hub's pages ------------------------------------------------------------------


@check()
def hub_answers(request: pytest.FixtureRequest) -> None:
    """The login page and the API's version answer at the hub's address."""
    hub = request.getfixturevalue("hub")
    r = hub.client().get("/hub/api")
    if r.status_code != 200 or "version" not in r.text:
        fault(f"The hub's API at {hub.url}/hub/api answers {r.status_code}, not its version: something else "
              f"answers there, or the proxy has no route to the hub ({START_01}).",
              r.text[:500])  # fmt: skip
    print(f"JupyterHub {r.json()['version']} answers at {hub.url}")


@check()
def a_user_logs_in_and_starts_a_server(request: pytest.FixtureRequest) -> None:
    """A real login (the account given with --user and $HHW_PASSWORD), a start, the server answering."""
    hub, people = request.getfixturevalue("hub"), request.getfixturevalue("people")
    person = people.first()
    client = hub.client()
    if hub.github is not None or hub.oidc is not None:
        client = hub.session(person)
    else:
        r = client.login(person.name, person.password)
        if r.status_code != 302:
            fault(f"{person.name} cannot log in: the login page says \"{client.login_error(r)}\" ({r.status_code}); "
                  f"check the password and the allow rules in {CONFIG} "
                  f"({ALLOW_02}).")  # fmt: skip
    headers = {"X-XSRFToken": client.xsrf()}
    user = client.get(f"/hub/api/users/{person.name}", headers=headers)
    if user.status_code != 200:
        fault(f"{person.name} logged in but cannot read their own model at /hub/api/users/{person.name} "
              f"({user.status_code}).", user.text[:500])  # fmt: skip
    was_running = bool(user.json().get("servers", {}).get("", {}).get("ready"))
    if not was_running:
        started = time.monotonic()
        r = client.post(f"/hub/api/users/{person.name}/server", headers=headers, json={})
        if r.status_code not in (201, 202):
            fault(f"The hub refused to start {person.name}'s server ({r.status_code}): "
                  f"{_message(r)} ({WRONG_03}).")  # fmt: skip
        failure = _wait_for_spawn(client, person.name, headers)
        if failure:
            fault(f"{person.name}'s server did not start: the hub says \"{failure}\" "
                  f"({WRONG_03}).", _last_pages(client))  # fmt: skip
        print(f"{person.name}'s server started in {time.monotonic() - started:.1f} s")
    try:
        client.wait_server(person.name, timeout=60)
    except Exception as exc:
        fault(f"{person.name}'s server runs, but /user/{person.name}/ does not reach it through the proxy: "
              f"the route is missing or points where the server is not ({ROUTES_04}).",
              f"{exc}\n\n{_last_pages(client)}")  # fmt: skip
    finally:
        if not was_running:  # leave it as found: stopped, and done stopping (the next start must not wait)
            client.request("DELETE", f"/hub/api/users/{person.name}/server", headers=headers)
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                model = client.get(f"/hub/api/users/{person.name}", headers=headers)
                if model.status_code != 200 or "" not in model.json().get("servers", {}):
                    break
                time.sleep(1)


def _message(r: requests.Response) -> str:
    try:
        return str(r.json().get("message", r.text[:300]))
    except ValueError:
        return r.text[:300]


def _wait_for_spawn(client, name: str, headers: dict[str, str], timeout: float = 150) -> str | None:
    """Follow the hub's progress events of a start; the failure message, or None once ready."""
    url = f"{client.base_url}/hub/api/users/{name}/server/progress"
    last = "no progress event"
    deadline = time.monotonic() + timeout
    with client.session.get(url, headers=headers, stream=True, verify=client.verify, timeout=timeout) as r:
        for line in r.iter_lines(decode_unicode=True):
            if not line or not line.startswith("data:"):
                continue
            event = json.loads(line[5:])
            last = event.get("message") or last
            if event.get("ready"):
                return None
            if event.get("failed"):
                return last
            if time.monotonic() > deadline:
                break
    return f"no server after {timeout:.0f} s; last progress: {last}"


def _last_pages(client) -> str:
    return "Last pages seen:\n" + client.report()


# -- the machine: units, files, modes -------------------------------------------------


@check(applies=lambda stage: bool(units_of(stage)))
def units_are_enabled_and_running(request: pytest.FixtureRequest) -> None:
    """Every unit the book installs starts at boot and runs now."""
    machine, stage = on_machine(request), request.getfixturevalue("stage")
    for unit in units_of(stage):
        enabled = machine.output(f"systemctl is-enabled {unit}.service", check=False)
        if enabled != "enabled":
            fault(f"The unit {unit}.service is {enabled or 'not installed'}, not enabled, so it will not start "
                  f"after a reboot: run `systemctl enable --now {unit}` ({_unit_section(unit)}).")  # fmt: skip
        active = machine.output(f"systemctl is-active {unit}.service", check=False)
        if active != "active":
            log = machine.output(f"journalctl -u {unit} --no-pager -n 30", check=False)
            fault(f"The unit {unit}.service is {active}, not running: `journalctl -u {unit}` says why "
                  f"({_unit_section(unit)}).", log)  # fmt: skip


UNIT_SECTIONS = {
    "hub-firewall": section("03", "A firewall: default deny"),
    "docker": section("03", "Install Docker Engine"),
    "traefik": section("05", "The units"),
    "jupyterhub": section("05", "The units"),
    "prometheus": section("10", "Prometheus, on loopback, with the hub's token"),
    "munge": section("12", "The controller: munge and slurmctld"),
    "slurmctld": section("12", "The controller: munge and slurmctld"),
}


def _unit_section(unit: str):
    return UNIT_SECTIONS[unit]


@check(applies=lambda stage: stage.number >= 2)
def secret_files_are_private(request: pytest.FixtureRequest) -> None:
    """The hub's secrets (and Traefik's certificates) only their owner can read."""
    machine, stage = on_machine(request), request.getfixturevalue("stage")
    files = [SECRETS] + machine.output(f"find {SECRETS} -mindepth 1 -maxdepth 1", check=False).split()
    if stage.serves_https:
        files.append(ACME_JSON)
    for path in files:
        found = machine.output(f"stat -c '%a %U' {shlex.quote(path)}", check=False)
        if not found:
            fault(f"{path} is missing: run install.sh's secrets section again ({SECRETS_02}).")
        mode, owner = found.split()
        if int(mode, 8) & 0o077:
            fix = "chmod 0700" if path == SECRETS else "chmod 0600"
            where = ARRIVE_06 if path == ACME_JSON else SECRETS_02
            fault(f"{path} can be read by others than {owner} (mode {mode}): run `{fix} {path}` ({where}).")


@check(applies=containers_on_docker0)
def users_containers_reach_the_hub(request: pytest.FixtureRequest) -> None:
    """The hub's API listens where users' containers reach it (hub_ip), and answers there."""
    machine = on_machine(request)
    listening = listeners(machine, 8081)
    if not listening:
        fault(f"Nothing listens on port 8081, the hub's API: is the hub running? ({CONFIG_03}).")
    if all(a.startswith(("127.", "[::1]")) for a in listening):
        fault(f"The hub's API listens on {', '.join(listening)} only, so users' containers cannot reach it: set "
              f"c.JupyterHub.hub_ip in {CONFIG} to docker0's address, not 127.0.0.1 "
              f"({CONFIG_03}).")  # fmt: skip
    gateway = machine.output("ip -4 -o addr show docker0 | awk '{print $4}' | cut -d/ -f1", check=False)
    code = http_status(machine, f"http://{gateway}:8081/hub/api")
    if code != "200":
        fault(f"The hub's API does not answer on docker0's address {gateway}:8081 ({code}), where users' "
              f"containers call it: check c.JupyterHub.hub_ip in {CONFIG} ({CONFIG_03}).")  # fmt: skip


ALLOWED_IMAGES = re.compile(r"allowed_images\s*=\s*\{(?P<body>.*?)\}", re.S)


@check(applies=containers_on_docker0)
def every_allowed_image_is_built(request: pytest.FixtureRequest) -> None:
    """Each image the spawn form offers (allowed_images) is on this machine (nothing is ever pulled)."""
    machine = on_machine(request)
    config = machine.output(f"cat {CONFIG}")
    m = ALLOWED_IMAGES.search(config)
    images = re.findall(r':\s*"([^"]+)"', m["body"]) if m else []
    if not images:
        fault(f"No allowed_images in {CONFIG}: the spawn form offers nothing to choose "
              f"({CONFIG_03}).")  # fmt: skip
    for image in images:
        if machine.run(f"docker image inspect {shlex.quote(image)}", check=False).returncode != 0:
            fault(f"The image {image}, offered by allowed_images in {CONFIG}, was never built on this machine: "
                  f"build it or take it off the list ({IMAGES_03}).")  # fmt: skip


@check(applies=lambda stage: True)
def an_allow_rule_lets_people_in(request: pytest.FixtureRequest) -> None:
    """The hub's current run found an allow rule (without one, JupyterHub 5+ lets nobody in)."""
    machine = on_machine(request)
    invocation = machine.output("systemctl show -p InvocationID --value jupyterhub", check=False)
    if not invocation:
        fault(f"jupyterhub.service is not running, so its log cannot be read ({START_01}).")
    log = machine.output(f"journalctl --no-pager -o cat _SYSTEMD_INVOCATION_ID={invocation}", check=False)
    if "No allow config found" in log:
        fault(f"The hub started without an allow rule, so nobody can log in: set c.Authenticator.allowed_users "
              f"(or allowed_groups) in {CONFIG} and restart jupyterhub ({WRONG_01}).",
              "\n".join(line for line in log.splitlines() if "allow" in line))  # fmt: skip


# The status of a GET, asked on the machine with its own Python (curl is not there before stage 04).
HTTP_STATUS = r"""
import base64, sys, urllib.error, urllib.request
url, user, password_file = sys.argv[1], sys.argv[2], sys.argv[3]
request = urllib.request.Request(url)
if password_file:  # Traefik's API: the hub's password, read here; it never leaves the machine
    text = open(password_file).read()
    found = [l.split("=", 1)[1] for l in text.splitlines() if l.startswith("TRAEFIK_API_PASSWORD=")]
    password = found[0] if found else text.strip()
    request.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
try:
    print(urllib.request.urlopen(request, timeout=5).status)
except urllib.error.HTTPError as e:
    print(e.code)
except OSError as e:
    print(f"no answer ({e})")
"""


def http_status(machine, url: str, user: str = "", password_file: str = "") -> str:
    """The HTTP status of GET ``url`` on the machine (with basic auth from ``password_file``), or why none."""
    args = shlex.join([url, user, password_file])
    return machine.output(f"python3 - {args}", input=HTTP_STATUS, check=False)


@check(applies=uses_traefik)
def traefik_api_takes_the_hubs_password(request: pytest.FixtureRequest) -> None:
    """Traefik's API accepts the password the hub has (the password never leaves the machine)."""
    machine = on_machine(request)
    m = re.search(r'traefik_api_username\s*=\s*"([^"]+)"', machine.output(f"cat {CONFIG}"))
    user = m.group(1) if m else "jupyterhub"
    env_file = f"{SECRETS}/jupyterhub.env"
    has_env = machine.run(f"grep -qs '^TRAEFIK_API_PASSWORD=' {env_file}", check=False).returncode == 0
    password_file = env_file if has_env else f"{SECRETS}/traefik_api_password"
    code = http_status(machine, "http://127.0.0.1:8099/api/http/routers", user, password_file)
    where = API_04
    if code == "401":
        fault(f"Traefik's API on 127.0.0.1:8099 refuses the hub's password (401): the password in "
              f"{SECRETS}/jupyterhub.env changed after the hub wrote its hash into Traefik's routes; "
              f"restart jupyterhub so it writes the new one ({where}).")  # fmt: skip
    if code != "200":
        fault(f"Traefik's API on 127.0.0.1:8099 does not answer ({code}): is traefik running? ({where}).")


@check(applies=lambda stage: has_units(stage) and uses_traefik(stage))
def traefik_reads_the_routes(request: pytest.FixtureRequest) -> None:
    """The user traefik can read the routes the hub writes."""
    machine = on_machine(request)
    for path in (ROUTES, f"{ROUTES}/rules.toml"):
        test = "-d {0} -a -x {0} -a -r {0}" if path == ROUTES else "-r {0}"
        if machine.run(f"runuser -u traefik -- test {test.format(path)}", check=False).returncode != 0:
            found = machine.output(f"stat -c '%A %U:%G' {path}", check=False)
            fault(f"Traefik (user traefik) cannot read {path} ({found}), so it serves no route to anybody: run "
                  f"`chgrp traefik {path}` and `chmod {'2750' if path == ROUTES else '0640'} {path}` "
                  f"({TRAEFIK_05}).")  # fmt: skip


PROMETHEUS_UP = r"""
import json, sys, urllib.parse, urllib.request
query = urllib.parse.urlencode({"query": 'up{job="jupyterhub"}'})
result = json.load(urllib.request.urlopen(f"http://127.0.0.1:9090/api/v1/query?{query}", timeout=5))["data"]["result"]
print(result[0]["value"][1] if result else "no target")
"""


@check(applies=scrapes_metrics)
def prometheus_scrapes_the_hub(request: pytest.FixtureRequest) -> None:
    """Prometheus listens on loopback only and its last scrape of the hub's /hub/metrics succeeded."""
    machine = on_machine(request)
    where = UNIT_SECTIONS["prometheus"]
    listening = listeners(machine, 9090)
    if not listening:
        fault(f"Nothing listens on port 9090: is prometheus.service running? ({where}).")
    if not all(a.startswith(("127.", "[::1]")) for a in listening):
        fault(f"Prometheus listens on {', '.join(listening)}, not on loopback only, and its pages have no login: "
              f"see the drop-in /etc/systemd/system/prometheus.service.d/jupyterhub.conf ({where}).")  # fmt: skip
    deadline = time.monotonic() + 45  # a hub that just started: wait for the next scrape or two
    up = machine.output("python3 -", input=PROMETHEUS_UP, check=False)
    while up != "1" and time.monotonic() < deadline:
        time.sleep(3)
        up = machine.output("python3 -", input=PROMETHEUS_UP, check=False)
    if up != "1":
        log = machine.output("journalctl -u prometheus --no-pager -n 20", check=False)
        fault(f"Prometheus' last scrape of the hub failed (up = {up or 'no answer'}): its copy of the token, "
              f"/etc/prometheus/jupyterhub_token, may be stale; http://127.0.0.1:9090/targets says why ({where}).",
              log)  # fmt: skip


# -- HTTPS on the public name ---------------------------------------------------------


@check(applies=lambda stage: stage.serves_https)
def certificate_is_trusted_for_the_name(request: pytest.FixtureRequest) -> None:
    """The certificate verifies against the system's CAs (Pebble's root on a test VM) for the public name."""
    site = request.getfixturevalue("site")
    ctx = ssl.create_default_context(cafile=site.ca_file)
    refused = None
    try:
        with socket.create_connection(site.https, timeout=10) as sock, ctx.wrap_socket(sock, server_hostname=site.name):
            pass
    except ssl.SSLCertVerificationError as exc:
        refused = exc
    except (ssl.SSLError, OSError) as exc:
        fault(f"{site.name} refuses a TLS handshake for that name ({getattr(exc, 'reason', None) or exc}): Traefik has "
              f"no certificate for {site.name}; put it in the domains of /etc/traefik/traefik.toml "
              f"({NAME_06}).", str(exc))  # fmt: skip
    if refused is not None:
        exc = refused
        cert = peer_certificate(site)
        names = ", ".join(v for k, v in cert.get("subjectAltName", ()) if k == "DNS") or "no name"
        issuer = _issuer(cert)
        if site.name not in names.split(", "):
            fault(f"The certificate served for {site.name} is for {names}: put {site.name} in the domains of "
                  f"/etc/traefik/traefik.toml ({NAME_06}).", str(exc))  # fmt: skip
        if "STAGING" in issuer.upper():
            fault(f"The certificate for {site.name} is from Let's Encrypt's staging CA ({issuer}), which no browser "
                  f"trusts: switch caServer to production ({STAGING_06}).", str(exc))  # fmt: skip
        fault(f"The certificate for {site.name} (issuer: {issuer}) does not verify against this system's CAs: "
              f"{exc.verify_message} ({ARRIVE_06}).", str(exc))  # fmt: skip
    cert = peer_certificate(site)
    days = (ssl.cert_time_to_seconds(cert["notAfter"]) - time.time()) / 86400
    print(f"{site.name}: issued by {_issuer(cert)}, {days:.0f} days left")
    if days < 10:
        fault(f"The certificate for {site.name} expires in {days:.0f} days: Traefik renews 30 days ahead, so "
              f"renewal fails; its journal says why ({RENEWAL_06}).")  # fmt: skip


def peer_certificate(site) -> dict:
    """The certificate the server sends, decoded, whether or not it verifies."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection(site.https, timeout=10) as sock:
        with ctx.wrap_socket(sock, server_hostname=site.name) as tls:
            der = tls.getpeercert(binary_form=True)
    with tempfile.NamedTemporaryFile("w", suffix=".pem") as f:
        f.write(ssl.DER_cert_to_PEM_cert(der))
        f.flush()
        return ssl._ssl._test_decode_cert(f.name)  # the stdlib's own decoder (no extra package)


def _issuer(cert: dict) -> str:
    issuer = dict(pair[0] for pair in cert.get("issuer", ()))
    return issuer.get("commonName") or issuer.get("organizationName") or "unknown"


@check(applies=lambda stage: stage.serves_https)
def http_redirects_to_https(request: pytest.FixtureRequest) -> None:
    """Plain HTTP on port 80 sends browsers to the same page over HTTPS, permanently."""
    site = request.getfixturevalue("site")
    with requests.Session() as s:
        s.trust_env = False
        try:
            r = s.get(f"http://{site.http[0]}:{site.http[1]}/hub/login", headers={"Host": site.name},
                      allow_redirects=False, timeout=10)  # fmt: skip
        except requests.ConnectionError as exc:
            fault(f"Nothing answers on port 80 of {site.name}: open it in the firewall; Let's Encrypt and "
                  f"browsers typing the bare name need it ({PORTS_06}).", str(exc))  # fmt: skip
    want = f"https://{site.name}/hub/login"
    if r.status_code not in (301, 308) or r.headers.get("Location") != want:
        fault(f"http://{site.name}/hub/login answers {r.status_code} {r.headers.get('Location', '')}, not a "
              f"permanent redirect to {want}: see the http entry point in /etc/traefik/traefik.toml "
              f"({TRAEFIK_06}).")  # fmt: skip


@check(applies=lambda stage: stage.serves_https)
def hsts_is_sent(request: pytest.FixtureRequest) -> None:
    """Browsers are told to use HTTPS only (Strict-Transport-Security, at least six months)."""
    hub = request.getfixturevalue("hub")
    r = hub.client().get("/hub/login")
    hsts = r.headers.get("Strict-Transport-Security", "")
    m = re.search(r"max-age=(\d+)", hsts)
    if not m or int(m.group(1)) < 15552000:
        fault(f"https://{hub.url.split('//')[-1]}/hub/login sends no Strict-Transport-Security of six months or "
              f"more (got \"{hsts}\"): see the hsts middleware in /etc/traefik/tls.toml "
              f"({TRAEFIK_06}).")  # fmt: skip


@check(applies=lambda stage: stage.serves_https)
def tls_below_1_2_is_refused(request: pytest.FixtureRequest) -> None:
    """TLS 1.0 and 1.1 are refused, TLS 1.2 works."""
    site = request.getfixturevalue("site")
    for version in ("TLSv1", "TLSv1_1"):
        try:
            agreed = tls_handshake(*site.https, site.name, version)
        except (ssl.SSLError, ConnectionError):
            continue
        fault(f"{site.name} still accepts {agreed}: set minVersion = \"VersionTLS12\" in /etc/traefik/tls.toml "
              f"({TRAEFIK_06}).")  # fmt: skip
    try:
        tls_handshake(*site.https, site.name, "TLSv1_2")
    except (ssl.SSLError, ConnectionError) as exc:
        fault(f"{site.name} refuses TLS 1.2, which some clients still need: see /etc/traefik/tls.toml "
              f"({TRAEFIK_06}).", str(exc))  # fmt: skip


def test_your_server(server_check: Check, request: pytest.FixtureRequest) -> None:
    """The checks you run on your own server (``pytest steps/NN --target local``), here on this stage's machine.

    Each stage module imports this test; the harness runs it once per check of that stage.
    """
    server_check.run(request)
