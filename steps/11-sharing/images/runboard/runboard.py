"""Runboard: the single-user UI server of a (small, pretend) workflow tool, run by JupyterHub.

The hub starts it in a user's container instead of JupyterLab. Everything it needs
comes from the environment the hub sets. What the hub expects of a server:

- listen where $JUPYTERHUB_SERVICE_URL says (http://0.0.0.0:8888/user/NAME/), and serve
  every page under that prefix (the proxy does not strip it);
- answer the hub's check GET PREFIX/api with anything but a 5xx, within Spawner.http_timeout;
- log people in through the hub (OAuth, PREFIX/oauth_callback) and serve whom the hub lets in:
  its owner, and (stage 11) whom the owner shares it with, instructors, admins;
- tell the hub when it was last used ($JUPYTERHUB_ACTIVITY_URL), so idle servers can be culled.
"""

from __future__ import annotations

import html
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from jupyterhub import __version__ as hub_version
from jupyterhub.services.auth import HubOAuth, HubOAuthCallbackHandler, HubOAuthenticated
from jupyterhub.utils import isoformat, url_path_join
from tornado import ioloop, web
from tornado.httpclient import AsyncHTTPClient, HTTPRequest

PREFIX = os.environ["JUPYTERHUB_SERVICE_PREFIX"]  # /user/alice/
OWNER = os.environ["JUPYTERHUB_USER"]
RUNS = Path.home() / "work" / "runs"  # the user's volume: runs/NAME.json, {"status": ...}
ACTIVITY_EVERY = 60  # seconds: report a page view at once, then at most once a minute


class Page(web.RequestHandler):
    """Every answer names the hub version it was built for (the hub logs a warning otherwise)."""

    def set_default_headers(self) -> None:
        self.set_header("X-JupyterHub-Version", hub_version)

    def write_error(self, status_code: int, **kwargs) -> None:
        """A short page with the reason (tornado's default page leaves it out)."""
        error = kwargs.get("exc_info", (None, None))[1]
        reason = getattr(error, "log_message", None) or self._reason
        if status_code == 403:
            reason += f" Ask {OWNER} to share this Runboard with you."
        self.finish(f"<!doctype html><title>{status_code}</title><h1>{status_code}</h1><p>{html.escape(reason)}</p>")


class Home(HubOAuthenticated, Page):
    """Whoever the hub says may open this server (the scope access:servers!server=NAME/): the owner,
    and those the owner shared it with. Stage 08's Runboard let in its owner alone."""

    @web.authenticated
    async def get(self) -> None:
        settings = self.application.settings
        settings["last_activity"] = now = datetime.now(UTC)
        if (now - settings["last_reported"]).total_seconds() >= ACTIVITY_EVERY:
            ioloop.IOLoop.current().spawn_callback(report_activity, self.application)
        rows = []
        for run in sorted(RUNS.glob("*.json")):
            status = json.loads(run.read_text()).get("status", "?")
            rows.append(f"<tr><td>{html.escape(run.stem)}</td><td>{html.escape(status)}</td></tr>")
        env = os.environ
        self.write(
            f"""<!doctype html><title>Runboard</title>
<h1>Runboard: {html.escape(OWNER)}'s workflow runs</h1>
<p>Signed in as {html.escape(self.current_user["name"])}.</p>
<p>Size {html.escape(env.get("SERVER_SIZE", "?"))}: {html.escape(env.get("CPU_LIMIT", "?"))} CPUs, \
{int(env.get("MEM_LIMIT", "0")) // 2**20} MiB, image {html.escape(env.get("JUPYTER_IMAGE", "?"))}.</p>
<table><tr><th>Run</th><th>Status</th></tr>{"".join(rows) or "<tr><td colspan=2>no runs yet</td></tr>"}</table>"""
        )


class Status(Page):
    """GET PREFIX/api: the hub's "are you up?" check after the start (no login needed, as in Jupyter Server)."""

    def get(self) -> None:
        self.write({"version": hub_version, "app": "runboard"})


async def report_activity(app: web.Application) -> None:
    """POST the time of the last page view to the hub, as jupyterhub-singleuser does."""
    last = app.settings["last_activity"]
    if last <= app.settings["last_reported"]:
        return
    app.settings["last_reported"] = last
    stamp = isoformat(last)
    body = {"servers": {os.environ.get("JUPYTERHUB_SERVER_NAME", ""): {"last_activity": stamp}}, "last_activity": stamp}
    request = HTTPRequest(
        os.environ["JUPYTERHUB_ACTIVITY_URL"],
        method="POST",
        headers={"Authorization": f"token {os.environ['JUPYTERHUB_API_TOKEN']}", "Content-Type": "application/json"},
        body=json.dumps(body),
    )
    try:
        await AsyncHTTPClient().fetch(request)
    except Exception as e:  # the hub restarting, say: the next report carries a later time anyway
        print(f"runboard: could not report activity to the hub: {e}", flush=True)


def auth_cache_seconds(args: list[str]) -> int:
    """--HubOAuth.cache_max_age=N from the hub's Spawner.args, as jupyterhub-singleuser reads it (default 300)."""
    for arg in args:
        if arg.startswith("--HubOAuth.cache_max_age="):
            return int(arg.split("=", 1)[1])
    return 300


def main() -> None:
    # How long the hub's answer about a visitor counts before it is asked again (a revoked share ends then).
    HubOAuth.instance(cache_max_age=auth_cache_seconds(sys.argv[1:]))
    url = urlsplit(os.environ["JUPYTERHUB_SERVICE_URL"])  # http://0.0.0.0:8888/user/alice/
    app = web.Application(
        [
            (PREFIX, Home),
            (url_path_join(PREFIX, "api"), Status),
            (url_path_join(PREFIX, "oauth_callback"), HubOAuthCallbackHandler),
        ],
        cookie_secret=os.urandom(32),  # signs the login cookie; a new one at each start means logging in again
        last_activity=datetime.fromtimestamp(0, UTC),
        last_reported=datetime.fromtimestamp(0, UTC),
    )
    app.listen(url.port, url.hostname)
    print(f"runboard: serving {OWNER}'s runs at {url.hostname}:{url.port}{PREFIX}", flush=True)
    ioloop.PeriodicCallback(lambda: report_activity(app), ACTIVITY_EVERY * 1000).start()
    ioloop.IOLoop.current().start()


if __name__ == "__main__":
    main()
