"""An OpenID Connect provider for the tests: panva's oidc-provider (oidc_provider/) run in the test VM.

Like the GitHub stand-in (github.py), it listens on the VM's loopback, on the same port
number as an SSH tunnel from this machine's loopback, so its issuer
(https://127.0.0.1:PORT) is the same for the hub (in the VM) and for the tests (here).
Its TLS certificate comes from a test CA made per run; ``BUNDLE`` in the VM is the
system's CAs plus that CA (for the hub's ``SSL_CERT_FILE``).

The provider has one confidential client (client_secret_basic), test accounts with a
``groups`` claim, refresh tokens, revocation, and an RFC 8693 token exchange for the
audiences in ``audiences`` (see oidc_provider/provider.mjs). Its sign-in form takes
a login and password; consent is given automatically.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from dataclasses import dataclass, field
from html import unescape
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import requests

from .github import follow_to_hub
from .machine import VM_INSTALL_ENV, ContainerVM
from .secrets_audit import remember_code, remember_secret
from .testca import certificates_script
from .tunnel import Tunnel, free_port
from .waits import wait_for

SOURCE_DIR = Path(__file__).with_name("oidc_provider")
SOURCE_FILES = ("package.json", "package-lock.json", "provider.mjs")
PROVIDER_DIR = "/opt/hhw-oidc"
UNIT = "hhw-oidc"
BUNDLE = f"{PROVIDER_DIR}/bundle.pem"
CALLBACK_URL = "https://hub.example.org/hub/oauth_callback"
AFTER_LOGOUT_URL = "https://hub.example.org/hub/login"
HUB_DROPIN = "/etc/systemd/system/jupyterhub.service.d/hhw-oidc.conf"
ENV_FILE = "/etc/jupyterhub/secrets/jupyterhub.env"
CATALOGUE = "https://catalogue.example.org"
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"

# The provider's signing key, made once per VM (openssl, not Node: see start()).
SIGNING_KEY = f"""
set -e
cd {PROVIDER_DIR}
test -f signing.pem || openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out signing.pem 2>/dev/null
chmod 0600 signing.pem
"""


@dataclass(frozen=True)
class Account:
    """A test account of the provider: login (the ``sub``), password, name, and groups."""

    login: str
    password: str
    name: str = ""
    groups: tuple[str, ...] = ()

    @property
    def email(self) -> str:
        return f"{self.login}@example.org"


def default_accounts() -> dict[str, Account]:
    """alice (staff and physics), bob (physics), carol (chemistry), mallory (no group)."""

    def pw() -> str:
        return "idp-" + secrets.token_urlsafe(12)

    return {
        "alice": Account("alice", pw(), "Alice Example", ("staff", "physics")),
        "bob": Account("bob", pw(), "Bob Example", ("physics",)),
        "carol": Account("carol", pw(), "Carol Example", ("chemistry",)),
        "mallory": Account("mallory", pw(), "Mallory Example"),
    }


class OAuthError(AssertionError):
    """An OAuth error answer (``error``, ``error_description``) where a token was expected."""

    def __init__(self, response: requests.Response) -> None:
        self.status = response.status_code
        try:
            self.body: dict = response.json()
        except ValueError:
            self.body = {"error": "(not JSON)", "error_description": response.text[:300]}
        super().__init__(f"HTTP {self.status}: {json.dumps(self.body)}")


@dataclass
class OIDCProvider:
    """The provider running in a test VM, with its one client."""

    machine: ContainerVM
    accounts: dict[str, Account] = field(default_factory=default_accounts)
    client_id: str = field(default_factory=lambda: "hub-" + secrets.token_hex(6))
    client_secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    redirect_uris: list[str] = field(default_factory=lambda: [CALLBACK_URL])
    post_logout_redirect_uris: list[str] = field(default_factory=lambda: [AFTER_LOGOUT_URL])
    audiences: list[str] = field(default_factory=lambda: [CATALOGUE])
    access_token_ttl: int = 600
    refresh_token_ttl: int = 86400
    exchange_token_ttl: int = 300
    clock_tolerance: int = 0  # oidc-provider's default, 15 s, keeps expired tokens valid that long
    port: int = 0
    ca_file: Path | None = None
    tunnel: Tunnel | None = None
    timings: dict[str, float] = field(default_factory=dict)
    cookie_key: str = field(default_factory=lambda: secrets.token_hex(32))

    @property
    def issuer(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def config(self) -> dict:
        return {
            "issuer": self.issuer, "host": "127.0.0.1", "port": self.port,
            "cert": f"{PROVIDER_DIR}/cert.pem", "key": f"{PROVIDER_DIR}/key.pem",
            "signing_key": f"{PROVIDER_DIR}/signing.pem", "cookie_keys": [self.cookie_key],
            "client": {"client_id": self.client_id, "client_secret": self.client_secret,
                       "redirect_uris": self.redirect_uris, "name": "JupyterHub (test)",
                       "post_logout_redirect_uris": self.post_logout_redirect_uris},
            "accounts": {a.login: {"password": a.password, "name": a.name or a.login, "email": a.email,
                                   "groups": list(a.groups)} for a in self.accounts.values()},
            "access_token_ttl": self.access_token_ttl, "refresh_token_ttl": self.refresh_token_ttl,
            "clock_tolerance": self.clock_tolerance,
            "exchange": {"audiences": self.audiences, "token_ttl": self.exchange_token_ttl},
        }  # fmt: skip

    # -- in the VM ------------------------------------------------------------------------
    def install(self) -> None:
        """Copy the provider into the VM and install its locked dependencies there (npm ci)."""
        self.machine.run(f"install -d -m 0755 {PROVIDER_DIR}")
        for name in SOURCE_FILES:
            self.machine.run(f"cat > {PROVIDER_DIR}/{name}", input=(SOURCE_DIR / name).read_text())
        self.machine.trust_host_ca()
        started = time.monotonic()
        self.machine.run(f"cd {PROVIDER_DIR} && npm ci --omit=dev --no-audit --no-fund --loglevel=error",
                         env=VM_INSTALL_ENV, timeout=600)  # fmt: skip
        self.timings["npm ci"] = time.monotonic() - started

    def start(self, tmp: Path) -> None:
        """Install, make the test CA, start the provider (a transient unit), open the tunnel."""
        self.port = self.port or free_port()
        self.ca_file = tmp / "oidc-ca.pem"
        self.install()
        self.machine.run(certificates_script(PROVIDER_DIR, "hhw-oidc-test-ca") + SIGNING_KEY)
        self.ca_file.write_text(self.machine.output(f"cat {PROVIDER_DIR}/ca.pem") + "\n")
        self.restart()
        self.tunnel = Tunnel(remote_port=self.port, local_port=self.port)
        self.tunnel.open(ssh_port=self.machine.ports[22])

    def restart(self) -> None:
        """Write the config and (re)start the provider; a restart forgets every session and token."""
        self.machine.run(f"umask 077 && cat > {PROVIDER_DIR}/config.json", input=json.dumps(self.config()))
        started = time.monotonic()
        self.machine.run(f"systemctl stop {UNIT} 2>/dev/null; systemctl reset-failed {UNIT} 2>/dev/null; "
                         f"systemd-run --unit={UNIT} -p WorkingDirectory={PROVIDER_DIR} /usr/bin/node "
                         f"{PROVIDER_DIR}/provider.mjs {PROVIDER_DIR}/config.json", check=False)  # fmt: skip
        discovery = f"curl -sf --cacert {PROVIDER_DIR}/ca.pem {self.issuer}/.well-known/openid-configuration"

        def answers() -> bool:
            return self.machine.run(discovery, check=False).returncode == 0

        try:
            wait_for("the OpenID Connect provider to answer", answers, timeout=60, interval=0.3)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- journalctl -u {UNIT}\n{self.machine.journal(UNIT, lines=30)}") from exc
        self.timings["start"] = time.monotonic() - started

    def stop(self) -> None:
        if self.tunnel:
            self.tunnel.close()
        self.machine.run(f"systemctl stop {UNIT}; rm -f {HUB_DROPIN}; systemctl daemon-reload", check=False)

    def point_hub_here(self) -> None:
        """A test-only drop-in: the hub's ``OIDC_ISSUER`` is this provider, and it trusts the test CA.

        Not in the EnvironmentFile: systemd lets EnvironmentFile= override Environment=.
        The hub reads it at its next (re)start.
        """
        self.machine.run(
            f"mkdir -p {HUB_DROPIN.rsplit('/', 1)[0]} && printf '%s\\n' '[Service]' "
            f"'Environment=OIDC_ISSUER={self.issuer}' 'Environment=SSL_CERT_FILE={BUNDLE}' > {HUB_DROPIN} "
            "&& systemctl daemon-reload"
        )

    @classmethod
    def registered_with(cls, machine: ContainerVM, **kw) -> OIDCProvider:
        """A provider whose client is the hub's: the ID and secret install.sh put in the hub's EnvironmentFile."""
        values = dict(line.split("=", 1) for line in machine.output(f"cat {ENV_FILE}").splitlines() if "=" in line)
        for key in ("OIDC_CLIENT_ID", "OIDC_CLIENT_SECRET"):
            assert values.get(key), f"{key} is not in {ENV_FILE}"
        remember_secret("OAuth client secret", values["OIDC_CLIENT_SECRET"])
        return cls(machine, client_id=values["OIDC_CLIENT_ID"], client_secret=values["OIDC_CLIENT_SECRET"], **kw)

    def log(self) -> str:
        """The provider's journal (requests by method and path, errors by code; never a token)."""
        return self.machine.journal(UNIT)

    # -- from this machine, through the tunnel ----------------------------------------------
    def session(self) -> requests.Session:
        """A browser-like session for the provider's pages (trusting its test CA)."""
        s = requests.Session()
        s.trust_env = False
        s.verify = str(self.ca_file)
        return s

    def discovery(self) -> dict:
        with self.session() as s:
            return s.get(f"{self.issuer}/.well-known/openid-configuration", timeout=30).json()

    def jwks(self) -> dict:
        """The provider's public signing key (made once per VM by openssl, kept across restarts)."""
        with self.session() as s:
            return s.get(self.discovery()["jwks_uri"], timeout=30).json()

    def authorize_url(self, scope: str = "openid profile email groups offline_access", state: str = "",
                      redirect_uri: str = CALLBACK_URL, **extra: str) -> str:  # fmt: skip
        """An authorization request of the client, as a hub would send the browser to it."""
        query = {"response_type": "code", "client_id": self.client_id, "redirect_uri": redirect_uri,
                 "scope": scope, "state": state or secrets.token_urlsafe(8), **extra}  # fmt: skip
        return f"{self.issuer}/auth?{urlencode(query)}"

    def sign_in(self, authorize_url: str, login: str, password: str,
                session: requests.Session | None = None) -> requests.Response:  # fmt: skip
        """Open the authorize URL, fill in the sign-in form, follow the provider's redirects.

        Returns the first answer that leaves the provider (a redirect to the client's
        callback, with ``code`` and ``state``), or the form again when the password is wrong.
        """
        remember_secret("password", password)
        s = session or self.session()
        answer = self._follow(s, s.get(authorize_url, allow_redirects=False, timeout=30))
        if answer.is_redirect:  # already signed in (the session's cookie)
            remember_code(answer.headers.get("Location"))
            return answer
        assert answer.status_code == 200 and "<form" in answer.text, f"no sign-in form: {answer.status_code}"
        form = re.search(r'<form[^>]*action="([^"]+)"', answer.text)
        assert form, "the sign-in page has no form action"
        action = unescape(form.group(1))
        answer = s.post(urljoin(answer.url, action), data={"login": login, "password": password},
                        allow_redirects=False, timeout=30)  # fmt: skip
        answer = self._follow(s, answer)
        remember_code(answer.headers.get("Location"))
        return answer

    def login(self, client, login: str, password: str, next_url: str | None = None) -> requests.Response:
        """The whole round trip as a browser makes it: the hub, the provider's form, the hub's callback.

        ``client`` is a HubClient; returns the callback's answer (302 when the hub let the user in).
        """
        start = client.get("/hub/oauth_login" + (f"?next={next_url}" if next_url else ""), allow_redirects=False)
        assert start.status_code == 302, f"/hub/oauth_login answered {start.status_code}: {start.text[:300]}"
        answer = self.sign_in(start.headers["Location"], login, password)
        assert answer.is_redirect, f"the provider's sign-in answered {answer.status_code}: {answer.text[:500]}"
        return follow_to_hub(client, answer.headers["Location"])

    def _follow(self, s: requests.Session, answer: requests.Response) -> requests.Response:
        """Follow redirects while they stay on the provider."""
        for _ in range(10):
            if not answer.is_redirect:
                return answer
            target = urljoin(answer.url, answer.headers["Location"])
            if not target.startswith(self.issuer + "/"):
                return answer
            answer = s.get(target, allow_redirects=False, timeout=30)
        raise AssertionError("the provider redirected more than 10 times")

    @staticmethod
    def callback_params(answer: requests.Response) -> dict[str, str]:
        """The query of a redirect to the client's callback (code, state, iss; or error)."""
        assert answer.is_redirect, f"expected a redirect to the callback, got {answer.status_code}"
        return {k: v[0] for k, v in parse_qs(urlsplit(answer.headers["Location"]).query).items()}

    def _token_request(self, data: dict[str, str], auth: tuple[str, str] | None = None) -> dict:
        with self.session() as s:
            r = s.post(f"{self.issuer}/token", data=data, auth=auth or (self.client_id, self.client_secret),
                       timeout=30)  # fmt: skip
        if r.status_code != 200:
            raise OAuthError(r)
        answer = r.json()
        for key in ("access_token", "refresh_token", "id_token"):
            remember_secret(f"OIDC {key.replace('_', ' ')}", answer.get(key))
        return answer

    def token(self, code: str, redirect_uri: str = CALLBACK_URL) -> dict:
        """Exchange an authorization code (client_secret_basic)."""
        return self._token_request({"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri})

    def refresh(self, refresh_token: str) -> dict:
        return self._token_request({"grant_type": "refresh_token", "refresh_token": refresh_token})

    def exchange(self, subject_token: str, audience: str = CATALOGUE, **extra: str) -> dict:
        """RFC 8693: the user's access token for a JWT access token for ``audience``."""
        data = {"grant_type": TOKEN_EXCHANGE, "subject_token": subject_token,
                "subject_token_type": ACCESS_TOKEN_TYPE, "audience": audience, **extra}  # fmt: skip
        return self._token_request(data)

    def revoke(self, token: str, hint: str = "refresh_token") -> None:
        """Revoke a token (RFC 7009); revoking a refresh token ends its whole grant (the user's tokens)."""
        with self.session() as s:
            r = s.post(f"{self.issuer}/token/revocation", data={"token": token, "token_type_hint": hint},
                       auth=(self.client_id, self.client_secret), timeout=30)  # fmt: skip
        assert r.status_code == 200, f"revocation answered {r.status_code}: {r.text[:300]}"

    def userinfo(self, access_token: str) -> requests.Response:
        """The userinfo endpoint's answer (oidc-provider's default path, /me)."""
        with self.session() as s:
            return s.get(f"{self.issuer}/me", headers={"Authorization": f"Bearer {access_token}"}, timeout=30)
