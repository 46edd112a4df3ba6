"""Stage 06: HTTPS with a certificate Traefik obtains by ACME (Pebble stands in for Let's Encrypt)."""

from __future__ import annotations

import socket
import ssl
import time

import pytest
import requests

from tests.harness.acme import ACME_JSON, DROPIN, certificate_domains, tls_handshake
from tests.harness.chapter_outputs import check as check_chapter_outputs
from tests.harness.hardening import audit
from tests.harness.kernels import one_plus_one
from tests.harness.localcheck import test_target_local_passes_on_a_machine_built_by_the_book  # noqa: F401
from tests.harness.results import record
from tests.harness.secrets_audit import assert_no_leaks, secret_file_problems
from tests.harness.server_checks import test_your_server  # noqa: F401  (the checks of your own server)
from tests.harness.waits import wait_for

BIND_DENIED = "listen tcp :80: bind: permission denied"
NAME = "hub.example.org"  # as in traefik.toml and jupyterhub_config.py


def test_certificate_verifies_for_the_hub_name(hub, public, root_ca):
    ctx = ssl.create_default_context(cafile=root_ca)
    with socket.create_connection(("127.0.0.1", public.https_port), timeout=10) as sock:
        with ctx.wrap_socket(sock, server_hostname=NAME) as tls:
            cert = tls.getpeercert()
    assert ("DNS", NAME) in cert["subjectAltName"]
    issuer = dict(pair[0] for pair in cert["issuer"])
    assert "Pebble" in issuer["commonName"]


def test_http_redirects_permanently_to_https(hub, public):
    with requests.Session() as s:
        s.trust_env = False
        r = s.get(f"{public.http_url}/hub/login", headers={"Host": NAME}, allow_redirects=False, timeout=10)
    assert r.status_code == 301
    assert r.headers["Location"] == f"https://{NAME}/hub/login"


@pytest.mark.parametrize("version", ["TLSv1", "TLSv1_1"])
def test_old_tls_versions_are_refused(hub, public, version):
    with pytest.raises(ssl.SSLError, match="TLSV1_ALERT_PROTOCOL_VERSION|UNSUPPORTED_PROTOCOL|NO_PROTOCOLS"):
        tls_handshake("127.0.0.1", public.https_port, NAME, version)
    assert tls_handshake("127.0.0.1", public.https_port, NAME, "TLSv1_2") == "TLSv1.2"


def test_hsts_header(hub):
    r = hub.client().get("/hub/login")
    assert r.status_code == 200
    assert r.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"


def test_login_spawn_and_server_over_https(hub, people):
    alice = people["alice"]
    client = hub.session(alice)
    client.ensure_server(alice.name, data={"image": "JupyterLab"})  # the --target local proof may have started it
    assert client.server_api(alice.name, "status").status_code == 200
    assert one_plus_one(client, alice.name) == "2", "code does not run: does the WebSocket pass over wss://?"
    cookie = next(c for c in client.session.cookies if c.name == "jupyterhub-hub-login")
    assert cookie.secure, "the login cookie must be Secure over https"


@pytest.mark.fault
def test_client_that_does_not_trust_the_ca_fails(hub, public):
    """No silent downgrade: a client with only the usual CAs gets a certificate error."""
    with public.session(None) as s, pytest.raises(requests.exceptions.SSLError, match="CERTIFICATE_VERIFY_FAILED"):
        s.get(f"{public.https_url}/hub/login", timeout=10)
    proc = hub.machine.run(f"curl -sS --resolve {NAME}:443:127.0.0.1 https://{NAME}/hub/login", check=False)
    assert proc.returncode == 60
    assert "curl: (60) SSL certificate problem: unable to get local issuer certificate" in proc.stderr


def test_acme_json_is_traefiks_alone(hub, root_ca):
    assert hub.machine.output(f"stat -c '%a %U' {ACME_JSON}") == "600 traefik"
    assert hub.machine.output("stat -c '%a %U' /var/lib/traefik") == "700 traefik"


@pytest.mark.fault
@pytest.mark.disruptive
def test_traefik_refuses_an_acme_server_it_does_not_trust(hub, root_ca):
    """Without LEGO_CA_CERTIFICATES (test-only), Traefik cannot talk to Pebble: the message the book quotes."""
    since = hub.machine.clock()
    restart = f"systemctl daemon-reload && rm -f {ACME_JSON} && systemctl restart traefik"
    hub.machine.run(f"mv {DROPIN} {DROPIN}.off && {restart}")
    try:
        wait_for("Traefik's certificate error in its journal",
                 lambda: "x509: certificate signed by unknown authority" in hub.machine.journal("traefik", since=since),
                 timeout=60)  # fmt: skip
    finally:
        hub.machine.run(f"mv {DROPIN}.off {DROPIN} && {restart}")
        wait_for("a new certificate", lambda: NAME in certificate_domains(hub.machine), timeout=120)
        hub.wait_up()


@pytest.mark.fault
@pytest.mark.disruptive
def test_port_80_taken_keeps_traefik_restarting(hub, root_ca):
    """Another server on port 80: traefik.service fails to start and systemd keeps retrying; the certificate stays."""
    certificate = hub.machine.output(f"sha256sum {ACME_JSON}")
    since = hub.machine.clock()
    hub.machine.run("systemctl stop traefik && systemd-run --unit=hhw-squatter python3 -m http.server 80")
    try:
        hub.machine.run("systemctl start traefik", check=False)

        def bind_error() -> str | None:
            log = hub.machine.journal("traefik", since=since)
            return log if "address already in use" in log else None

        log = wait_for("traefik's bind error in its journal", bind_error, timeout=60)
        assert "building listener: error opening listener: listen tcp :80: bind: address already in use" in log
        assert "traefik.service: Failed with result 'exit-code'." in log
    finally:
        hub.machine.run("systemctl stop hhw-squatter; systemctl reset-failed hhw-squatter", check=False)
        # Stopping traefik stopped the hub too (Requires=); starting the hub starts both.
        hub.machine.run("systemctl restart traefik && systemctl start jupyterhub")
        hub.wait_up()
    # Nothing lost: the same certificate (no new order at Let's Encrypt), and it verifies.
    assert hub.machine.output(f"sha256sum {ACME_JSON}") == certificate
    assert hub.client().get("/hub/login").status_code == 200


def test_traefik_unit_exposure(hub):
    """One capability more than stage 05 (ports 80 and 443): the exposure stays at 2.0 or better.
    Every unit of the stages is recorded."""
    found = audit(hub.machine)
    record("systemd-security-06", {unit: found[unit]["exposure"] for unit in found} | {"open": found})
    assert found["traefik"]["exposure"] <= 2.0, found["traefik"]
    assert found["jupyterhub"]["exposure"] <= 2.0, found["jupyterhub"]


def restore_traefik(hub) -> None:
    """Start Traefik and the hub again after a test broke Traefik on purpose, and wait for both."""
    hub.machine.run("systemctl daemon-reload && systemctl reset-failed traefik; systemctl restart traefik", check=False)
    hub.machine.run("systemctl start jupyterhub")
    wait_for("a certificate for the hub's name", lambda: NAME in certificate_domains(hub.machine), timeout=120)
    hub.wait_up()


@pytest.mark.fault
@pytest.mark.disruptive
def test_traefik_without_the_bind_capability_cannot_listen_on_80(hub, root_ca):
    """Drop CAP_NET_BIND_SERVICE (as a unit without AmbientCapabilities= would): ports 80 and 443 are refused."""
    dropin = "/etc/systemd/system/traefik.service.d/hhw-no-bind.conf"
    since = hub.machine.clock()
    hub.machine.run(f"printf '[Service]\\nAmbientCapabilities=\\n' > {dropin} && systemctl daemon-reload")
    try:
        hub.machine.run("systemctl restart traefik", check=False)
        log = wait_for("traefik's bind error in its journal",
                       lambda: (j := hub.machine.journal("traefik", since=since)) and "permission denied" in j and j,
                       timeout=60)  # fmt: skip
        # Traefik opens its entry points in no fixed order: the first refused is :80 or :443.
        assert BIND_DENIED in log or BIND_DENIED.replace(":80:", ":443:") in log, log[-2000:]
    finally:
        hub.machine.run(f"rm -f {dropin}")
        restore_traefik(hub)


@pytest.mark.fault
@pytest.mark.disruptive
def test_without_tls_domains_no_certificate_is_requested(hub, root_ca):
    """No domains on the https entry point: Traefik requests nothing, and (sniStrict) refuses the handshake."""
    static = "/etc/traefik/traefik.toml"
    hub.machine.run(f"cp -p {static} {static}.hhw-saved && sed -i '/tls.domains\\]\\]/,+1d' {static}")
    try:
        since = hub.machine.clock()
        hub.machine.run(f"rm -f {ACME_JSON} && systemctl restart traefik && systemctl start jupyterhub")
        wait_for("the hub to say it is running",
                 lambda: "JupyterHub is now running" in hub.machine.journal("jupyterhub", since=since),
                 timeout=90)  # fmt: skip
        time.sleep(5)  # time enough for Pebble (it answers within 2 s when asked)
        assert certificate_domains(hub.machine) == []
        proc = hub.machine.run(f"echo | openssl s_client -connect 127.0.0.1:443 -servername {NAME}", check=False)
        assert "tlsv1 unrecognized name" in proc.stdout + proc.stderr
        with pytest.raises(requests.exceptions.SSLError, match="TLSV1_UNRECOGNIZED_NAME"):
            hub.client().get("/hub/login")
    finally:
        hub.machine.run(f"mv {static}.hhw-saved {static} && rm -f {ACME_JSON}")
        restore_traefik(hub)


def test_firewall_lets_in_ssh_http_and_https(hub):
    chain = hub.machine.output("nft list chain inet hub_firewall input")
    assert "policy drop;" in chain
    accepted = [line.strip() for line in chain.splitlines() if "dport" in line and line.strip().endswith("accept")]
    assert accepted == ["tcp dport { 22, 80, 443 } accept", 'iifname "docker0" tcp dport 8081 accept']


def test_chapter_shows_what_install_printed(hub):
    """Each "You should see" block after an install.sh section matches what it printed on this VM."""
    print(f"{check_chapter_outputs(hub.machine, hub.stage)} quoted lines checked")


def test_tls_scan_meets_mozilla_intermediate(hub, public, root_ca):
    """sslyze from outside: TLS 1.2 and 1.3 only, no cipher outside Mozilla's "intermediate" profile, HSTS.

    Certificate issues are recorded apart: in the tests the certificate is Pebble's (5 years), not Let's Encrypt's.
    """
    from tests.harness.tlsscan import scan  # sslyze: in requirements.txt, not in requirements-check.txt

    found = scan(NAME, public.https_port, ca_file=root_ca)
    record("tls-scan-06", found)
    assert found["protocols"] == ["TLS 1.2", "TLS 1.3"], found["protocols"]
    assert not found["mozilla"]["intermediate"]["server"], found["mozilla"]["intermediate"]
    assert found["hsts"] and found["hsts"]["max_age"] >= 31536000, found["hsts"]


def test_secret_files_are_private(machine, stage):
    """Every secret file of the stages so far: 0600 and root's, or a service's where it must read it (the reason
    is in tests/harness/secrets_audit.py)."""
    problems = secret_file_problems(machine, stage.number)
    assert not problems, "; ".join(problems)


# Keep this test last: it reads the logs after every other test of the stage has run.
def test_no_secret_of_the_tests_in_any_log(machine):
    """No password, API token, OAuth code or client secret the tests used, nor the machine's own secrets, in the
    journal, Traefik's access log or the containers' logs."""
    record("secrets-in-logs-06", assert_no_leaks(machine))
