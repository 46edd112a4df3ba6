#!/usr/bin/env python3
"""List the servers running on the hub: whose, since when, last active when.

Uses the token of the service "monitoring" (role monitoring: list:users,
read:users:activity, read:servers), which can read and change nothing else.
Python's standard library only. Installed by install.sh as /usr/local/sbin/hub-servers.

    hub-servers              # every running server, one a line, then how many
    JUPYTERHUB_API_URL=https://hub.example.org/hub/api hub-servers
"""

import json
import os
import sys
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

API_URL = os.environ.get("JUPYTERHUB_API_URL", "https://hub.example.org/hub/api").rstrip("/")
TOKEN_FILE = os.environ.get("JUPYTERHUB_API_TOKEN_FILE", "/etc/jupyterhub/secrets/monitoring_token")


def get(path: str, token: str):
    """GET API_URL + path with the token; the JSON answer."""
    request = urllib.request.Request(
        API_URL + path,
        headers={"Authorization": f"token {token}", "Accept": "application/jupyterhub-pagination+json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def ago(timestamp: str | None, now: datetime) -> str:
    if not timestamp:
        return "never"
    seconds = int((now - datetime.fromisoformat(timestamp.replace("Z", "+00:00"))).total_seconds())
    return f"{seconds // 60} min ago" if seconds >= 60 else f"{seconds} s ago"


def main() -> int:
    token = Path(TOKEN_FILE).read_text().strip()
    now = datetime.now(UTC)
    count, offset = 0, 0
    while True:
        try:
            # Only users with a server that runs (state=active), a page at a time.
            page = get(f"/users?state=active&offset={offset}", token)
        except urllib.error.HTTPError as e:
            print(f"hub-servers: {e.code} {json.load(e).get('message', e.reason)}", file=sys.stderr)
            return 1
        for user in page["items"]:
            for name, server in user["servers"].items():
                count += 1
                label = f"{user['name']}/{name}" if name else user["name"]
                print(f"{label:20} started {ago(server['started'], now):>12}   "
                      f"last active {ago(server['last_activity'], now):>12}")  # fmt: skip
        following = page["_pagination"]["next"]
        if not following:
            break
        offset = following["offset"]
    print(f"{count} server{'s' if count != 1 else ''} running")
    return 0


if __name__ == "__main__":
    sys.exit(main())
