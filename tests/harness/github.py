"""GitHub for the tests: the stand-in (github_standin.py) run in the test VM, and logging in through it.

The stand-in listens on the VM's loopback, on the same port number as an SSH tunnel
from this machine's loopback, so its URL (https://127.0.0.1:PORT) is the same for the
hub (in the VM) and for the test's browser (here). Its TLS certificate comes from a
test CA made per run. A test-only drop-in tells the hub where "GitHub" is
(``GITHUB_URL``, which GitHubOAuthenticator reads) and to trust that CA
(``SSL_CERT_FILE``: the system's CAs plus the test CA); the step files keep github.com.
"""

from __future__ import annotations

import json
import secrets
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import requests

from .hubclient import HubClient
from .machine import ContainerVM
from .secrets_audit import remember_code, remember_secret
from .testca import STRICT_CA, certificates_script
from .tunnel import Tunnel, free_port
from .waits import wait_for

STANDIN_DIR = "/etc/hhw-github"
UNIT = "hhw-github"
HUB_DROPIN = "/etc/systemd/system/jupyterhub.service.d/hhw-github.conf"
ENV_FILE = "/etc/jupyterhub/secrets/jupyterhub.env"
SOURCE = Path(__file__).with_name("github_standin.py")
ORG = "example-lab"  # the organization of steps/07-github-oauth/jupyterhub_config.py


@dataclass(frozen=True)
class Account:
    """A GitHub account of the stand-in: its login, password, and organizations (org -> public|private)."""

    login: str
    password: str
    orgs: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The hub's name for this account (JupyterHub lower-cases GitHub logins)."""
        return self.login.lower()


def default_accounts() -> dict[str, Account]:
    """alice (named in allowed_users, an admin), bob (a private member of the organization),
    Carol (a public member, with a capital in her login), mallory (neither)."""

    def pw() -> str:
        return "gh-" + secrets.token_urlsafe(12)

    return {
        "alice": Account("alice", pw(), {ORG: "private"}),
        "bob": Account("bob", pw(), {ORG: "private"}),
        "carol": Account("Carol", pw(), {ORG: "public"}),
        "mallory": Account("mallory", pw(), {"another-org": "public"}),
    }


def env_value(machine, key: str) -> str:
    """A value from the hub's EnvironmentFile (where install.sh put the OAuth app's id and secret)."""
    for line in machine.output(f"cat {ENV_FILE}").splitlines():
        if line.startswith(f"{key}="):
            return line.split("=", 1)[1]
    raise AssertionError(f"{key} is not in {ENV_FILE}")


@dataclass
class GitHubStandIn:
    """The stand-in running in a test VM, registered with the hub's OAuth app."""

    machine: ContainerVM
    callback_url: str
    accounts: dict[str, Account]
    port: int = 0
    ca_file: Path | None = None
    client_id: str = ""
    client_secret: str = ""
    tunnel: Tunnel | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def config(self) -> dict:
        return {
            "host": "127.0.0.1", "port": self.port, "cert": f"{STANDIN_DIR}/cert.pem", "key": f"{STANDIN_DIR}/key.pem",
            "app": {"name": "Hub the Hard Way (test)", "client_id": self.client_id,
                    "client_secret": self.client_secret, "callback_url": self.callback_url},
            "accounts": {a.login: {"password": a.password, "id": 1000 + i, "name": a.login.title(),
                                   "email": f"{a.login}@example.org", "orgs": a.orgs}
                         for i, a in enumerate(self.accounts.values())},
        }  # fmt: skip

    def start(self, tmp: Path) -> None:
        """Make the CA, start the stand-in (a transient unit), open the tunnel, point the hub at it."""
        self.port = self.port or free_port()
        self.client_id = env_value(self.machine, "GITHUB_CLIENT_ID")
        self.client_secret = env_value(self.machine, "GITHUB_CLIENT_SECRET")
        remember_secret("OAuth client secret", self.client_secret)
        self.ca_file = tmp / "github-ca.pem"
        self.machine.run(f"install -d -m 0755 {STANDIN_DIR} && cat > {STANDIN_DIR}/github_standin.py",
                         input=SOURCE.read_text())  # fmt: skip
        self.issue_certificates()
        self.tunnel = Tunnel(remote_port=self.port, local_port=self.port)
        self.tunnel.open(ssh_port=self.machine.ports[22])
        self.machine.run(
            f"mkdir -p {HUB_DROPIN.rsplit('/', 1)[0]} && printf '%s\\n' '[Service]' "
            f"'Environment=GITHUB_URL={self.url}' 'Environment=SSL_CERT_FILE={STANDIN_DIR}/bundle.pem' > {HUB_DROPIN} "
            "&& systemctl daemon-reload"
        )

    def issue_certificates(self, ca_extensions: str = STRICT_CA) -> None:
        """A new test CA and certificate (a hub already running keeps trusting the old CA until it restarts)."""
        self.machine.run(certificates_script(STANDIN_DIR, "hhw-github-standin-ca", ca_extensions))
        assert self.ca_file is not None
        self.ca_file.write_text(self.machine.output(f"cat {STANDIN_DIR}/ca.pem") + "\n")
        self.restart()

    def restart(self) -> None:
        """Write the stand-in's config (app registration, accounts) and (re)start it."""
        self.machine.run(f"umask 077 && cat > {STANDIN_DIR}/config.json", input=json.dumps(self.config()))
        self.machine.run(f"systemctl stop {UNIT} 2>/dev/null; systemctl reset-failed {UNIT} 2>/dev/null; "
                         f"systemd-run --unit={UNIT} /usr/bin/python3 {STANDIN_DIR}/github_standin.py "
                         f"{STANDIN_DIR}/config.json", check=False)  # fmt: skip
        health = f"curl -sf --cacert {STANDIN_DIR}/ca.pem {self.url}/hhw/health"
        wait_for("the GitHub stand-in to answer", lambda: self.machine.run(health, check=False).returncode == 0,
                 timeout=30, interval=0.3)  # fmt: skip

    def stop(self) -> None:
        if self.tunnel:
            self.tunnel.close()
        self.machine.run(f"systemctl stop {UNIT}; rm -f {HUB_DROPIN}; systemctl daemon-reload", check=False)

    def session(self) -> requests.Session:
        """A browser-like session for the stand-in's pages (trusting its test CA)."""
        s = requests.Session()
        s.trust_env = False
        s.verify = str(self.ca_file)
        return s

    # -- the OAuth round trip, as a browser makes it ------------------------------------
    def sign_in(self, authorize_url: str, login: str, password: str) -> requests.Response:
        """Open GitHub's authorize page and submit its form; GitHub's answer (a redirect when signed in)."""
        remember_secret("password", password)
        with self.session() as s:
            form = s.get(authorize_url, allow_redirects=False, timeout=30)
            if form.status_code != 200:
                return form
            params = dict(p.split("=", 1) for p in urlsplit(authorize_url).query.split("&") if "=" in p)
            from urllib.parse import unquote_plus

            data = {k: unquote_plus(v) for k, v in params.items()}
            answer = s.post(f"{self.url}/login/oauth/authorize", data={**data, "login": login, "password": password},
                            allow_redirects=False, timeout=30)  # fmt: skip
            remember_code(answer.headers.get("Location"))
            return answer

    def login(self, client: HubClient, login: str, password: str, next_url: str | None = None) -> requests.Response:
        """The whole round trip: hub -> GitHub -> the hub's callback. Returns the callback's answer."""
        start = client.get("/hub/oauth_login" + (f"?next={next_url}" if next_url else ""), allow_redirects=False)
        assert start.status_code == 302, f"/hub/oauth_login answered {start.status_code}: {start.text[:300]}"
        answer = self.sign_in(start.headers["Location"], login, password)
        assert answer.status_code == 302, f"GitHub's sign-in answered {answer.status_code}: {answer.text[:500]}"
        return follow_to_hub(client, answer.headers["Location"])


def follow_to_hub(client: HubClient, location: str) -> requests.Response:
    """Follow a redirect to https://hub.example.org/... on the hub the client talks to (its path and query)."""
    parts = urlsplit(location)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    return client.get(path, allow_redirects=False)


def write_secret(machine: ContainerVM, key: str, value: str) -> None:
    """Replace one line KEY=VALUE of the hub's EnvironmentFile."""
    machine.run(f"sed -i {shlex.quote(f's|^{key}=.*|{key}={value}|')} {ENV_FILE}")
