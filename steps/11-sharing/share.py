#!/usr/bin/env python3
"""Share your JupyterHub server with colleagues, see with whom, take it back.

Run it on your own computer (Python 3's standard library only), with a token of yours
that has the scope shares!user (the hub's page /hub/token makes one):

    export HUB_URL=https://hub.example.org
    read -rs HUB_TOKEN && export HUB_TOKEN      # paste the token; it is not echoed
    python3 share.py with bob                   # bob may open your default server
    python3 share.py with-group physics         # everybody in the group physics may
    python3 share.py list                       # with whom it is shared
    python3 share.py revoke bob                 # bob no longer may
    python3 share.py revoke-all                 # nobody but you may
    python3 share.py code 3600                  # a link anybody logged in may accept, for an hour

The token travels in a header only (never on a command line other users could read).
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request

USAGE = "usage: share.py with NAME | with-group GROUP | list | revoke NAME | revoke-all | code [SECONDS]"


def call(method: str, path: str, body: dict | None = None) -> dict:
    """One request to the hub's REST API with the token; the JSON answer (an error exits with the hub's message)."""
    url = os.environ.get("HUB_URL", "https://hub.example.org").rstrip("/") + "/hub/api" + path
    token = os.environ.get("HUB_TOKEN", "")
    if not token:
        sys.exit("share.py: set HUB_TOKEN to a token of yours with the scope shares!user (make one at /hub/token)")
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Authorization": f"token {token}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            text = response.read().decode()
    except urllib.error.HTTPError as error:
        try:
            message = json.loads(error.read().decode()).get("message", error.reason)
        except ValueError:
            message = error.reason
        sys.exit(f"share.py: {error.code} {message}")
    except urllib.error.URLError as error:
        sys.exit(f"share.py: cannot reach {url}: {error.reason}")
    return json.loads(text) if text else {}


def main(args: list[str]) -> None:
    if not args:
        sys.exit(USAGE)
    me = call("GET", "/user")["name"]  # whose token this is: the owner of the server shared
    what, rest = args[0], args[1:]
    if what == "with" and len(rest) == 1:
        share = call("POST", f"/shares/{me}/", {"user": rest[0]})
        print(f"{rest[0]} may now open {me}'s server ({', '.join(share['scopes'])}).")
    elif what == "with-group" and len(rest) == 1:
        share = call("POST", f"/shares/{me}/", {"group": rest[0]})
        print(f"The group {rest[0]} may now open {me}'s server ({', '.join(share['scopes'])}).")
    elif what == "list" and not rest:
        shares = call("GET", f"/shares/{me}/")["items"]
        for s in shares:
            who = f"user {s['user']['name']}" if s["user"] else f"group {s['group']['name']}"
            print(f"{who}, since {s['created_at']}")
        print(f"{me}'s server is shared with {len(shares)}." if shares else f"{me}'s server is shared with nobody.")
    elif what == "revoke" and len(rest) == 1:
        call("PATCH", f"/shares/{me}/", {"user": rest[0]})
        print(f"{rest[0]} may no longer open {me}'s server (an open session ends within the server's cache time).")
    elif what == "revoke-all" and not rest:
        call("DELETE", f"/shares/{me}/")
        print(f"{me}'s server is shared with nobody now.")
    elif what == "code" and len(rest) <= 1 and all(r.isdigit() for r in rest):
        seconds = int(rest[0]) if rest else 86400
        code = call("POST", f"/share-codes/{me}/", {"expires_in": seconds})
        hub = os.environ.get("HUB_URL", "https://hub.example.org").rstrip("/")
        print(f"{hub}{code['accept_url']}")
        print(f"Anybody logged in who opens that link may open {me}'s server; the link expires {code['expires_at']}.")
    else:
        sys.exit(USAGE)


if __name__ == "__main__":
    main(sys.argv[1:])
