#!/usr/bin/env python3
"""Stop a user's server (their files stay in their volume): hub-stop-server NAME.

Uses the token of the service "server-stopper" (role server-stopper:
delete:servers and read:servers, both only for the group physics), which can stop
the servers of that group and do nothing else: not start one, not open one, not
stop anybody else's. Python's standard library only. Installed by install.sh as
/usr/local/sbin/hub-stop-server.
"""

import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

API_URL = os.environ.get("JUPYTERHUB_API_URL", "https://hub.example.org/hub/api").rstrip("/")
TOKEN_FILE = os.environ.get("JUPYTERHUB_API_TOKEN_FILE", "/etc/jupyterhub/secrets/server_stopper_token")


def call(method: str, path: str, token: str) -> tuple[int, dict]:
    """One request to the hub's API: its status and JSON answer ({} when there is none)."""
    request = urllib.request.Request(API_URL + path, method=method, headers={"Authorization": f"token {token}"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            body = response.read()
            return response.status, json.loads(body) if body.strip().startswith(b"{") else {}
    except urllib.error.HTTPError as e:
        try:
            return e.code, json.load(e)
        except ValueError:
            return e.code, {"message": e.reason}


def main(name: str) -> int:
    token = Path(TOKEN_FILE).read_text().strip()
    user = f"/users/{urllib.parse.quote(name)}"
    status, model = call("GET", user, token)
    if status != 200:
        print(f"hub-stop-server: {status} {model.get('message', '')}", file=sys.stderr)
        return 1
    if "" not in model.get("servers", {}):
        print(f"{name} has no server running.")
        return 0
    status, answer = call("DELETE", f"{user}/server", token)
    if status not in (202, 204):
        print(f"hub-stop-server: {status} {answer.get('message', '')}", file=sys.stderr)
        return 1
    # 204: stopped. 202: stopping (the hub answered before the spawner was done): wait for it.
    deadline = time.monotonic() + 120
    while status == 202 and "" in call("GET", user, token)[1].get("servers", {}):
        if time.monotonic() > deadline:
            print(f"hub-stop-server: {name}'s server is still stopping after 2 minutes", file=sys.stderr)
            return 1
        time.sleep(2)
    print(f"Stopped {name}'s server.")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: hub-stop-server NAME")
    sys.exit(main(sys.argv[1]))
