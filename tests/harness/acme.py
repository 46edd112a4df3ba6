"""An ACME server for HTTPS tests: Debian's Pebble, run inside the test VM by the harness.

Let's Encrypt cannot reach a test VM, so the tests point Traefik at Pebble, a small
ACME server made for testing. Pebble's issuing root changes at every start; the
tests fetch it and verify the hub's certificate against it.
"""

from __future__ import annotations

import socket
import ssl
import time
import warnings
from dataclasses import dataclass

import requests
from requests.adapters import HTTPAdapter

from .machine import Machine
from .waits import wait_for

PEBBLE_DIR = "/etc/hhw-pebble"
DIRECTORY_URL = "https://127.0.0.1:14000/dir"

SETUP = f"""
set -e
command -v pebble >/dev/null || {{ apt-get update -qq && apt-get install -y -qq pebble openssl curl >/dev/null; }}
install -d -m 0755 {PEBBLE_DIR}
cd {PEBBLE_DIR}
# A CA for Pebble's own listener (the ACME API), and a certificate for 127.0.0.1.
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=hhw-pebble-listener-ca \\
    -keyout ca.key -out ca.pem 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout key.pem -out req.csr 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' > san.ext
openssl x509 -req -in req.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \\
    -extfile san.ext -out cert.pem 2>/dev/null
cat > pebble-config.json <<'JSON'
{{"pebble": {{"listenAddress": "127.0.0.1:14000", "managementListenAddress": "127.0.0.1:15000",
  "certificate": "{PEBBLE_DIR}/cert.pem", "privateKey": "{PEBBLE_DIR}/key.pem",
  "httpPort": 80, "tlsPort": 443, "ocspResponderURL": "", "externalAccountBindingRequired": false}}}}
JSON
systemctl stop hhw-pebble 2>/dev/null || true
systemctl reset-failed hhw-pebble 2>/dev/null || true
systemd-run --unit=hhw-pebble --setenv=PEBBLE_VA_NOSLEEP=1 --setenv=PEBBLE_VA_ALWAYS_VALID=1 \\
    /usr/bin/pebble -config {PEBBLE_DIR}/pebble-config.json
"""


def start_pebble(machine: Machine) -> str:
    """Start Pebble in the VM (as a transient unit); return the path of its listener's CA there."""
    machine.run(SETUP, timeout=300)
    wait_for(
        "Pebble's ACME directory to answer",
        lambda: machine.run(f"curl -sf --cacert {PEBBLE_DIR}/ca.pem {DIRECTORY_URL}", check=False).returncode == 0,
        timeout=30,
    )
    return f"{PEBBLE_DIR}/ca.pem"


def pebble_root(machine: Machine) -> str:
    """The root certificate Pebble issues under (PEM); it is new at every Pebble start."""
    return machine.output(f"curl -sf --cacert {PEBBLE_DIR}/ca.pem https://127.0.0.1:15000/roots/0")


class PinnedHostAdapter(HTTPAdapter):
    """Send requests for https://NAME/ to a fixed address, checking the certificate against NAME.

    The test client reaches the hub by its public name without any hosts-file edit.
    """

    def __init__(self, name: str, **kw) -> None:
        self.name = name
        super().__init__(**kw)

    def init_poolmanager(self, *args, **kw) -> None:
        kw["server_hostname"] = self.name
        kw["assert_hostname"] = self.name
        super().init_poolmanager(*args, **kw)


@dataclass
class PublicName:
    """A hub's public name and where this machine reaches it (loopback ports of the VM)."""

    name: str
    https_port: int
    http_port: int

    def session(self, ca_file: str | None) -> requests.Session:
        """A session for https://127.0.0.1:PORT that sends Host and SNI = name, verifying with ``ca_file``."""
        s = requests.Session()
        s.trust_env = False
        s.verify = ca_file if ca_file else True
        s.headers["Host"] = self.name
        s.mount("https://", PinnedHostAdapter(self.name))
        return s

    @property
    def https_url(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"


def tls_handshake(host: str, port: int, name: str, version: str) -> str:
    """Try a TLS handshake of exactly ``version`` ("TLSv1", "TLSv1_1", "TLSv1_2", ...).

    Returns the version agreed, or raises ssl.SSLError when the server refuses.
    """
    with warnings.catch_warnings():  # naming TLS 1.0 and 1.1 is deprecated: that is the point here
        warnings.simplefilter("ignore", DeprecationWarning)
        tls_version = getattr(ssl.TLSVersion, version)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.minimum_version = tls_version
        ctx.maximum_version = tls_version
    ctx.set_ciphers("ALL:@SECLEVEL=0")  # let the client offer old versions; the server must refuse
    with socket.create_connection((host, port), timeout=10) as sock, ctx.wrap_socket(sock, server_hostname=name) as tls:
        return tls.version() or ""


TRAEFIK_STATIC = "/etc/traefik/traefik.toml"
ACME_JSON = "/var/lib/traefik/acme.json"
DROPIN = "/etc/systemd/system/traefik.service.d/hhw-pebble.conf"


def certificate_domains(machine: Machine) -> list[str]:
    """The domains Traefik holds a certificate for, read from its acme.json."""
    script = (
        "import json,sys\n"
        "try: d=json.load(open(sys.argv[1]))\n"
        "except Exception: d={}\n"
        "print(' '.join(c['domain']['main'] for r in d.values() for c in (r.get('Certificates') or [])))"
    )
    return machine.output(f'python3 -c "{script}" {ACME_JSON}', check=False).split()


def point_traefik_at_pebble(machine: Machine, name: str) -> float:
    """Test-only changes: Traefik asks Pebble (not Let's Encrypt) and trusts Pebble's listener.

    Replaces the caServer line of the reader's traefik.toml in the VM, adds a drop-in
    with LEGO_CA_CERTIFICATES, starts from an empty acme.json, restarts Traefik and
    waits for the certificate. Returns the seconds from restart to certificate.
    """
    ca = start_pebble(machine)
    machine.run(
        f"sed -i 's#^ *caServer = .*#  caServer = \"{DIRECTORY_URL}\"#' {TRAEFIK_STATIC}\n"
        f"mkdir -p {DROPIN.rsplit('/', 1)[0]}\n"
        f"printf '[Service]\\nEnvironment=LEGO_CA_CERTIFICATES={ca}\\n' > {DROPIN}\n"
        f"rm -f {ACME_JSON}\n"
        "systemctl daemon-reload"
    )
    started = time.monotonic()
    machine.run("systemctl restart traefik")
    wait_for(f"Traefik to obtain a certificate for {name} from Pebble",
             lambda: name in certificate_domains(machine), timeout=120)  # fmt: skip
    return time.monotonic() - started
