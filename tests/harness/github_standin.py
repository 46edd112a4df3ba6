"""A stand-in for GitHub's OAuth and REST API, as far as oauthenticator's GitHubOAuthenticator uses them.

GitHub cannot be reached from the test machines. This small server (standard library
only: it runs with the test VM's own python3) speaks the same protocol at the paths
GitHub Enterprise uses, which is what ``GitHubOAuthenticator.github_url`` selects for
any URL other than github.com:

- ``GET /login/oauth/authorize``: a sign-in form (GitHub shows its own login page and,
  the first time, an "Authorize" page; the stand-in has no consent page);
  a ``redirect_uri`` that does not match the registered callback URL is answered as
  GitHub documents it: a redirect to the registered callback with
  ``error=redirect_uri_mismatch``;
- ``POST /login/oauth/access_token``: a code for a token, with GitHub's error answers
  (HTTP 200 with ``error`` and ``error_description``) for a wrong client secret or code;
- ``GET /api/v3/user`` and ``GET /api/v3/orgs/ORG/members/LOGIN``: the user, and
  organization membership. A private membership is visible only to a token with the
  ``read:org`` scope of a member; otherwise GitHub redirects to the public-members
  check, which answers 404.

Run: ``python3 github_standin.py CONFIG.json``. The config names the one registered
OAuth app (client id, secret, callback URL), the accounts, the address and the TLS
key pair. Codes expire after 10 minutes and work once, as GitHub's do.
"""

from __future__ import annotations

import html
import json
import secrets
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

DOCS = "https://docs.github.com/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors/"
MISMATCH = "The redirect_uri MUST match the registered callback URL for this application."
ERRORS = {
    "incorrect_client_credentials": "The client_id and/or client_secret passed are incorrect.",
    "bad_verification_code": "The code passed is incorrect or expired.",
    "redirect_uri_mismatch": MISMATCH,
}
CODE_LIFETIME = 600

FORM = """<!doctype html>
<html><head><meta charset="utf-8"><title>Sign in to GitHub (test stand-in)</title>
<style>body{{font-family:sans-serif;background:#f6f8fa;margin:0}}
main{{width:300px;margin:60px auto;background:#fff;border:1px solid #d0d7de;border-radius:6px;padding:20px}}
h1{{font-size:22px;font-weight:300;text-align:center}} label{{display:block;margin:12px 0 4px}}
input[type=text],input[type=password]{{width:100%;box-sizing:border-box;padding:6px}}
button{{margin-top:16px;width:100%;padding:8px;background:#1f883d;color:#fff;border:0;border-radius:6px}}
.flash{{background:#ffebe9;border:1px solid #ff818266;padding:10px;border-radius:6px}}
.note{{font-size:12px;color:#59636e;text-align:center}}</style></head>
<body><main><h1>Sign in to GitHub</h1>
<p class="note">Test stand-in for GitHub: not github.com.<br>Authorizing <b>{app}</b></p>
{flash}
<form method="post" action="/login/oauth/authorize">
<label for="login_field">Username or email address</label>
<input type="text" id="login_field" name="login" autofocus>
<label for="password">Password</label>
<input type="password" id="password" name="password">
{hidden}
<button type="submit" name="commit" value="Sign in">Sign in</button>
</form></main></body></html>
"""


class StandIn:
    """The state of the stand-in: its registration, accounts, codes and tokens."""

    def __init__(self, config: dict) -> None:
        self.app = config["app"]  # client_id, client_secret, callback_url, name
        # Logins are case-insensitive on GitHub: keyed in lower case, shown as registered.
        self.accounts = {k.lower(): {**v, "login": k} for k, v in config["accounts"].items()}
        self.codes: dict[str, dict] = {}
        self.tokens: dict[str, dict] = {}
        self.lock = threading.Lock()

    def redirect_uri_ok(self, redirect_uri: str) -> bool:
        """GitHub's rule: same scheme, host and port as the callback URL, and a path under its path."""
        if not redirect_uri:
            return True
        given, registered = urlsplit(redirect_uri), urlsplit(self.app["callback_url"])
        return (given.scheme, given.netloc) == (registered.scheme, registered.netloc) and (
            given.path.rstrip("/") + "/"
        ).startswith(registered.path.rstrip("/") + "/")

    def new_code(self, login: str, params: dict[str, str]) -> str:
        code = secrets.token_hex(10)
        with self.lock:
            self.codes[code] = {
                "login": login,
                "scope": params.get("scope", ""),
                "redirect_uri": params.get("redirect_uri", ""),
                "expires": time.time() + CODE_LIFETIME,
            }
        return code

    def exchange(self, form: dict[str, str], basic: tuple[str, str] | None) -> dict:
        """The token endpoint's answer (GitHub answers errors with HTTP 200 too)."""
        client_id, client_secret = basic or (form.get("client_id", ""), form.get("client_secret", ""))
        if client_id != self.app["client_id"] or not secrets.compare_digest(client_secret, self.app["client_secret"]):
            return error("incorrect_client_credentials")
        with self.lock:
            grant = self.codes.pop(form.get("code", ""), None)
        if grant is None or grant["expires"] < time.time():
            return error("bad_verification_code")
        if form.get("redirect_uri") and form["redirect_uri"] != grant["redirect_uri"]:
            return error("redirect_uri_mismatch")
        token = "gho_" + secrets.token_hex(18)
        with self.lock:
            self.tokens[token] = {"login": grant["login"], "scope": grant["scope"]}
        return {"access_token": token, "token_type": "bearer", "scope": grant["scope"]}

    def account(self, login: str) -> dict:
        """The account of ``login`` (any case), or {} when there is none."""
        return self.accounts.get(login.lower(), {})

    def user_json(self, login: str) -> dict:
        account = self.account(login)
        return {"login": account["login"], "id": account["id"], "type": "User", "name": account.get("name"),
                "email": account.get("email"), "site_admin": False}  # fmt: skip

    def is_member(self, token: dict, org: str, login: str) -> int:
        """204 when the token may see that ``login`` is a member of ``org``; 302 (to the public check) otherwise."""
        membership = self.account(login).get("orgs", {}).get(org)
        if membership == "public":
            return 204
        requester_is_member = org in self.account(token["login"]).get("orgs", {})
        scopes = token["scope"].replace(",", " ").split()
        if membership == "private" and requester_is_member and "read:org" in scopes:
            return 204
        return 404 if requester_is_member and "read:org" in scopes else 302


def error(code: str) -> dict:
    return {"error": code, "error_description": ERRORS[code], "error_uri": DOCS}


class Handler(BaseHTTPRequestHandler):
    """One request to the stand-in."""

    server_version = "hhw-github-standin"
    standin: StandIn

    def log_message(self, format: str, *args: object) -> None:
        # Paths only: never a code or a token in the log.
        sys.stderr.write(f"{self.command} {urlsplit(self.path).path} -> {args[1] if len(args) > 1 else ''}\n")

    # -- helpers --------------------------------------------------------------------
    def send(self, status: int, body: str | bytes = b"", content_type: str = "application/json",
             headers: dict[str, str] | None = None) -> None:  # fmt: skip
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", f"{content_type}; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def send_json(self, status: int, data: object) -> None:
        self.send(status, json.dumps(data))

    def form(self) -> dict[str, str]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode()
        if "json" in self.headers.get("Content-Type", ""):
            return {k: str(v) for k, v in json.loads(raw or "{}").items()}
        return {k: v[0] for k, v in parse_qs(raw).items()}

    def query(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}

    def basic_auth(self) -> tuple[str, str] | None:
        import base64

        value = self.headers.get("Authorization", "")
        if not value.lower().startswith("basic "):
            return None
        user, _, password = base64.b64decode(value[6:]).decode().partition(":")
        return user, password

    def token(self) -> dict | None:
        value = self.headers.get("Authorization", "")
        scheme, _, token = value.partition(" ")
        return self.standin.tokens.get(token) if scheme.lower() in ("token", "bearer") else None

    def form_page(self, params: dict[str, str], flash: str = "", status: int = 200) -> None:
        keep = ("client_id", "redirect_uri", "scope", "state", "response_type", "code_challenge",
                "code_challenge_method")  # fmt: skip
        hidden = "\n".join(
            f'<input type="hidden" name="{k}" value="{html.escape(v, quote=True)}">'
            for k, v in params.items()
            if k in keep
        )
        box = f'<div class="flash" role="alert">{html.escape(flash)}</div>' if flash else ""
        page = FORM.format(app=html.escape(self.standin.app.get("name", "an OAuth app")), flash=box, hidden=hidden)
        self.send(status, page, "text/html")

    # -- OAuth ----------------------------------------------------------------------
    def authorize_checks(self, params: dict[str, str]) -> bool:
        """Answer for a bad client id or redirect_uri (and return False); True when the request is good."""
        app = self.standin.app
        if params.get("client_id") != app["client_id"]:
            self.send(404, "<h1>404</h1><p>Not Found: no OAuth app has this client_id.</p>", "text/html")
            return False
        if not self.standin.redirect_uri_ok(params.get("redirect_uri", "")):
            target = app["callback_url"] + "?" + urlencode({
                "error": "redirect_uri_mismatch", "error_description": MISMATCH,
                "error_uri": DOCS + "#redirect-uri-mismatch", "state": params.get("state", ""),
            })  # fmt: skip
            self.send(302, b"", "text/html", {"Location": target})
            return False
        return True

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/login/oauth/authorize":
            params = self.query()
            if self.authorize_checks(params):
                self.form_page(params)
        elif path == "/api/v3/user":
            token = self.token()
            if token is None:
                self.send_json(401, {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"})
            else:
                self.send_json(200, self.standin.user_json(token["login"]))
        elif path.startswith("/api/v3/orgs/"):
            self.membership(path.split("/")[4:])
        elif path == "/hhw/health":
            self.send_json(200, {"ok": True})
        else:
            self.send_json(404, {"message": "Not Found", "documentation_url": "https://docs.github.com/rest"})

    def membership(self, parts: list[str]) -> None:
        """/orgs/ORG/members/LOGIN and /orgs/ORG/public_members/LOGIN."""
        token = self.token()
        if token is None:
            self.send_json(401, {"message": "Bad credentials"})
            return
        if len(parts) != 3 or parts[1] not in ("members", "public_members"):
            self.send_json(404, {"message": "Not Found"})
            return
        org, kind, login = parts
        if kind == "public_members":
            public = self.standin.account(login).get("orgs", {}).get(org) == "public"
            self.send(204) if public else self.send_json(404, {"message": "Not Found"})
            return
        status = self.standin.is_member(token, org, login)
        if status == 302:
            self.send(302, b"", headers={"Location": f"/api/v3/orgs/{org}/public_members/{login}"})
        elif status == 204:
            self.send(204)
        else:
            self.send_json(404, {"message": "Not Found"})

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        if path == "/login/oauth/access_token":
            answer = self.standin.exchange(self.form(), self.basic_auth())
            if "json" in self.headers.get("Accept", ""):
                self.send_json(200, answer)
            else:
                self.send(200, urlencode(answer), "application/x-www-form-urlencoded")
        elif path == "/login/oauth/authorize":
            params = self.form()
            if not self.authorize_checks(params):
                return
            login = params.get("login", "")
            account = self.standin.account(login)
            if not account or not secrets.compare_digest(params.get("password", ""), account["password"]):
                self.form_page(params, "Incorrect username or password.", status=200)
                return
            code = self.standin.new_code(account["login"], params)
            target = params.get("redirect_uri") or self.standin.app["callback_url"]
            sep = "&" if "?" in target else "?"
            query = urlencode({"code": code, **({"state": params["state"]} if "state" in params else {})})
            self.send(302, b"", "text/html", {"Location": f"{target}{sep}{query}"})
        else:
            self.send_json(404, {"message": "Not Found"})


class TLSServer(ThreadingHTTPServer):
    """HTTPS, with each TLS handshake in the connection's own thread (a silent client blocks no one)."""

    daemon_threads = True
    tls: ssl.SSLContext

    def finish_request(self, request, client_address) -> None:
        request.settimeout(30)
        super().finish_request(self.tls.wrap_socket(request, server_side=True), client_address)


def main(config_path: str) -> None:
    config = json.loads(open(config_path).read())
    Handler.standin = StandIn(config)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(config["cert"], config["key"])
    server = TLSServer((config["host"], config["port"]), Handler)
    server.tls = ctx
    print(f"GitHub stand-in on https://{config['host']}:{config['port']}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1])
