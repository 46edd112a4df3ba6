"""What a user does with their server beyond starting it, and how an operator sees its container."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import requests

from .hubclient import HubClient
from .machine import Machine
from .waits import wait_for


def login(client: HubClient, name: str, password: str) -> HubClient:
    """Log ``client`` in; fail with the login page's message when refused."""
    r = client.login(name, password)
    assert r.status_code == 302, f"login of {name} refused ({r.status_code}): {client.login_error(r)}"
    return client


def contents(client: HubClient, username: str, method: str, path: str, **kw) -> requests.Response:
    """Call the Jupyter contents API of the user's server (through the proxy, as the browser does)."""
    headers = {"X-XSRFToken": client.xsrf(f"/user/{username}/")}
    return client.request(method, f"/user/{username}/api/contents/{path}", headers=headers, **kw)


def write_text(client: HubClient, username: str, path: str, text: str) -> None:
    """Save a text file in the user's work directory."""
    r = contents(client, username, "PUT", path, json={"type": "file", "format": "text", "content": text})
    assert r.status_code in (200, 201), f"saving {path} failed: {r.status_code} {r.text[:300]}"


def read_text(client: HubClient, username: str, path: str) -> str:
    """Read a text file from the user's work directory."""
    r = contents(client, username, "GET", path, params={"type": "file", "format": "text", "content": "1"})
    assert r.status_code == 200, f"reading {path} failed: {r.status_code} {r.text[:300]}"
    return r.json()["content"]


def server_state(client: HubClient, username: str, token: str) -> dict:
    """The hub's model of the user's default server ({} when there is none)."""
    r = client.api("GET", f"/users/{username}", token)
    r.raise_for_status()
    return r.json()["servers"].get("", {})


def stop_server(client: HubClient, username: str, token: str, timeout: float = 60) -> None:
    """Stop the user's server through the REST API and wait until the hub says it is gone."""
    r = client.api("DELETE", f"/users/{username}/server", token)
    assert r.status_code in (202, 204), f"stopping {username}'s server: {r.status_code} {r.text[:300]}"
    wait_for(f"the hub to report {username}'s server stopped", lambda: not server_state(client, username, token),
             timeout=timeout)  # fmt: skip


def container(machine: Machine, name: str) -> dict | None:
    """``docker inspect`` of a container in the machine's Docker, or None when there is none."""
    proc = machine.run(f"docker container inspect {shlex.quote(name)}", check=False)
    return json.loads(proc.stdout)[0] if proc.returncode == 0 else None


def volume_exists(machine: Machine, name: str) -> bool:
    """True when the machine's Docker has a volume of that name."""
    return machine.run(f"docker volume inspect {shlex.quote(name)}", check=False).returncode == 0


def upload(client: HubClient, username: str, local: Path, name: str | None = None) -> str:
    """Upload a file (a notebook, say) into the user's work directory, as JupyterLab's upload does."""
    name = name or local.name
    if local.suffix == ".ipynb":
        model = {"type": "notebook", "format": "json", "content": json.loads(local.read_text())}
    else:
        model = {"type": "file", "format": "text", "content": local.read_text()}
    r = contents(client, username, "PUT", name, json=model)
    assert r.status_code in (200, 201), f"uploading {name}: {r.status_code} {r.text[:300]}"
    return name


def in_database(machine: Machine) -> set[str]:
    """The names of the users in the hub's database (read-only, as an operator would look)."""
    script = (
        "import sqlite3; db = sqlite3.connect('file:/var/lib/jupyterhub/jupyterhub.sqlite?mode=ro', uri=True); "
        "print(' '.join(r[0] for r in db.execute('select name from users')))"
    )
    return set(machine.output(f'python3 -c "{script}"').split())
