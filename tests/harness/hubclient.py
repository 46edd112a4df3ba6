"""An HTTP client that uses a hub as a person does: log in, start a server, reach it."""

from __future__ import annotations

import html
import re
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import requests

from .secrets_audit import remember_secret
from .waits import wait_for

# The hidden fields of a form the hub serves (e.g. its page "Authorize access").
HIDDEN = re.compile(r'<input type="hidden" name="(\w+)" value="([^"]*)"')

LOGIN_ERROR = re.compile(r'<p class="login_error">\s*(.*?)\s*</p>', re.S)


@dataclass
class HubClient:
    """One browser-like session against a hub at ``base_url`` (e.g. http://127.0.0.1:32768)."""

    base_url: str
    verify: bool | str = True
    session: requests.Session = field(default_factory=requests.Session)
    history: list[requests.Response] = field(default_factory=list)
    spawn_seconds: float | None = None

    def __post_init__(self) -> None:
        # Ignore proxy and CA settings of the environment: talk straight to the test hub,
        # trusting exactly what ``verify`` says.
        self.session.trust_env = False
        self.base_url = self.base_url.rstrip("/")

    # -- plain requests, remembered for failure reports -------------------------------
    def request(self, method: str, path: str, **kw) -> requests.Response:
        kw.setdefault("timeout", 30)
        kw.setdefault("verify", self.verify)
        response = self.session.request(method, self.base_url + path, **kw)
        self.history.append(response)
        del self.history[:-5]
        return response

    def get(self, path: str, **kw) -> requests.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw) -> requests.Response:
        return self.request("POST", path, **kw)

    def xsrf(self, path: str = "/hub/") -> str:
        """The ``_xsrf`` cookie the hub (or a user's server) set for ``path``."""
        token = self.session.cookies.get("_xsrf", path=path)
        if not token:
            raise AssertionError(f"no _xsrf cookie for path {path}; cookies: {list(self.session.cookies)}")
        return token

    # -- the hub ----------------------------------------------------------------------
    def login(self, username: str, password: str) -> requests.Response:
        """Submit the login form. Success: a redirect (302). Refused: 403 and the form again."""
        remember_secret("password", password)  # the last test of each stage looks for it in the logs
        self.get("/hub/login").raise_for_status()
        return self.post(
            "/hub/login",
            data={"username": username, "password": password, "_xsrf": self.xsrf()},
            allow_redirects=False,
        )

    @staticmethod
    def login_error(response: requests.Response) -> str | None:
        """The message the login page shows under the form, if any."""
        m = LOGIN_ERROR.search(response.text)
        return html.unescape(m.group(1)) if m else None

    def logged_in(self) -> bool:
        """True when /hub/home answers without sending us to the login page."""
        r = self.get("/hub/home", allow_redirects=False)
        return r.status_code == 200

    def start_server(self, username: str, timeout: float = 120, path: str = "/hub/spawn",
                     data: dict[str, str] | None = None) -> requests.Response:  # fmt: skip
        """Ask for the user's server (GET, or POST the options form) and wait until it answers."""
        started = time.monotonic()
        if data is None:
            first = self.get(path)
        else:
            first = self.post(path, data={**data, "_xsrf": self.xsrf()})
        first.raise_for_status()
        response = self.wait_server(username, timeout=timeout)
        self.spawn_seconds = time.monotonic() - started
        return response

    def ensure_server(self, username: str, data: dict[str, str] | None = None) -> None:
        """Start the user's server (with the options form ``data``) unless it already answers."""
        lab = self.get(f"/user/{username}/lab")
        if not (lab.status_code == 200 and f"/user/{username}/" in lab.url):
            self.start_server(username, data=data)

    def wait_server(self, username: str, timeout: float = 120) -> requests.Response:
        """Wait until /user/NAME/lab is served by the user's own server, through the proxy."""

        def lab() -> requests.Response | None:
            r = self.get(f"/user/{username}/lab")
            served = r.status_code == 200 and r.url.split(self.base_url, 1)[-1].startswith(f"/user/{username}/")
            return r if served else None

        return wait_for(f"{username}'s server to answer /user/{username}/lab", lab, timeout=timeout, interval=1)

    def server_api(self, username: str, endpoint: str = "status") -> requests.Response:
        """GET /user/NAME/api/ENDPOINT as the logged-in browser would (with the server's XSRF token)."""
        headers = {"X-XSRFToken": self.xsrf(f"/user/{username}/")}
        return self.get(f"/user/{username}/api/{endpoint}", headers=headers)

    def post_form(self, data: dict[str, str]) -> requests.Response:
        """POST the spawn form as a browser would (or as someone who edited it by hand)."""
        self.get("/hub/spawn")
        return self.post("/hub/spawn", data={**data, "_xsrf": self.xsrf()})

    @staticmethod
    def form_error(page: requests.Response) -> str:
        """The error line the spawn page shows above the form."""
        m = re.search(r'class="[^"]*spawn-error-msg[^"]*"[^>]*>(.*?)</p>', page.text, re.S)
        assert m, f"no error on the spawn page ({page.status_code}): {page.text[:1500]}"
        return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", m.group(1))).split())

    def open_server(self, owner: str, path: str = "lab") -> requests.Response:
        """Open OWNER's server as a browser does: the hub asks "Authorize access?" the first time somebody opens
        a server that is not their own; click **Authorize**, as a person would. The last answer."""
        r = self.get(f"/user/{owner}/{path}")
        if r.status_code == 200 and "/hub/api/oauth2/authorize" in r.url and "Authorize" in r.text:
            where = urlsplit(r.url)
            fields = [(name, html.unescape(value)) for name, value in HIDDEN.findall(r.text)]
            r = self.post(f"{where.path}?{where.query}", data=fields)
        return r

    def create_token(self, username: str, note: str = "hhw test") -> str:
        """Create an API token for the logged-in user, as the /hub/token page does."""
        r = self.post(
            f"/hub/api/users/{username}/tokens",
            json={"note": note, "expires_in": 3600},
            headers={"X-XSRFToken": self.xsrf()},
        )
        r.raise_for_status()
        token = r.json()["token"]
        remember_secret("API token", token)
        return token

    def api(self, method: str, path: str, token: str, **kw) -> requests.Response:
        """Call the hub's REST API (/hub/api/...) with a token, no cookies."""
        kw.setdefault("timeout", 30)
        kw.setdefault("verify", self.verify)
        headers = {"Authorization": f"token {token}", **kw.pop("headers", {})}
        # A session without cookies, but with this client's way to the hub (an HTTPS stage pins the name).
        s = requests.Session()
        s.trust_env = False
        if "Host" in self.session.headers:
            s.headers["Host"] = self.session.headers["Host"]
        for prefix, adapter in self.session.adapters.items():
            s.mount(prefix, adapter)
        response = s.request(method, f"{self.base_url}/hub/api{path}", headers=headers, **kw)
        self.history.append(response)
        return response

    def report(self) -> str:
        """The last responses this client saw, for a failure report."""
        lines = []
        for r in self.history:
            wide = "html" in r.headers.get("content-type", "") or r.status_code >= 400
            body = r.text[:1500] if wide else r.text[:500]
            lines.append(f"{r.request.method} {r.url} -> {r.status_code}\n{body}")
        return "\n\n".join(lines) or "(no requests)"
