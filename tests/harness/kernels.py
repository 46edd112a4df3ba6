"""Run code in a kernel of a user's server, over the WebSocket, through the hub's public URL.

This is what JupyterLab does when you press Shift+Enter: a REST call starts a kernel,
then messages travel over a WebSocket through every proxy in front of the server. A
proxy that breaks WebSockets (the most reported hub failure) fails here, not in a
user's browser.
"""

from __future__ import annotations

import json
import ssl
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import websocket

from .hubclient import HubClient


def _ws_url(client: HubClient, path: str) -> str:
    parts = urlsplit(client.base_url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    return f"{scheme}://{parts.netloc}{path}"


def _cookie_header(client: HubClient, path: str) -> str:
    """The cookies a browser sends to ``path`` (the hub's and the user's server's)."""
    return "; ".join(f"{c.name}={c.value}" for c in client.session.cookies if path.startswith(c.path or "/"))


class Kernel:
    """One kernel of a user's server, with its open WebSocket."""

    def __init__(self, client: HubClient, username: str, kernel_id: str, ws: websocket.WebSocket) -> None:
        self.client, self.username, self.id, self.ws = client, username, kernel_id, ws
        self.session = uuid.uuid4().hex

    def execute(self, code: str, timeout: float = 60) -> str:
        """Run ``code``; return what it printed and its result, as the notebook shows them.

        Raises AssertionError with the traceback when the code fails.
        """
        msg_id = uuid.uuid4().hex
        header = {"msg_id": msg_id, "msg_type": "execute_request", "session": self.session,
                  "username": self.username, "version": "5.3", "date": ""}  # fmt: skip
        content = {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                   "allow_stdin": False, "stop_on_error": True}  # fmt: skip
        message = {"header": header, "parent_header": {}, "metadata": {}, "content": content,
                   "channel": "shell", "buffers": []}  # fmt: skip
        self.ws.send(json.dumps(message))
        out: list[str] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.ws.settimeout(max(0.1, deadline - time.monotonic()))
            reply = json.loads(self.ws.recv())
            if reply.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, body = reply["msg_type"], reply["content"]
            if kind == "stream":
                out.append(body["text"])
            elif kind in ("execute_result", "display_data"):
                out.append(body["data"].get("text/plain", "") + "\n")
            elif kind == "error":
                raise AssertionError(f"{body['ename']}: {body['evalue']}\n" + "\n".join(body["traceback"]))
            elif kind == "status" and body["execution_state"] == "idle":
                return "".join(out)
        raise AssertionError(f"no reply from {self.username}'s kernel within {timeout:.0f} s to {code!r}")

    def alive(self) -> bool:
        """True when the WebSocket still carries messages (a kernel_info round trip within 5 s)."""
        msg_id = uuid.uuid4().hex
        header = {"msg_id": msg_id, "msg_type": "kernel_info_request", "session": self.session,
                  "username": self.username, "version": "5.3", "date": ""}  # fmt: skip
        try:
            self.ws.send(json.dumps({"header": header, "parent_header": {}, "metadata": {}, "content": {},
                                     "channel": "shell", "buffers": []}))  # fmt: skip
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                self.ws.settimeout(max(0.1, deadline - time.monotonic()))
                reply = json.loads(self.ws.recv())
                if reply.get("parent_header", {}).get("msg_id") == msg_id and reply["msg_type"] == "kernel_info_reply":
                    return True
        except (websocket.WebSocketException, OSError):
            return False
        return False

    def reconnect(self) -> None:
        """Open a new WebSocket to the same kernel, as JupyterLab does after losing its connection."""
        try:
            self.ws.close()
        except (websocket.WebSocketException, OSError):
            pass  # already cut
        self.ws = connect(self.client, self.username, self.id)


def connect(client: HubClient, username: str, kernel_id: str, timeout: float = 60) -> websocket.WebSocket:
    """Open the kernel's WebSocket as the browser does: the same URL, cookies and Origin."""
    path = f"/user/{username}/api/kernels/{kernel_id}/channels"
    parts = urlsplit(client.base_url)
    host = str(client.session.headers.get("Host") or parts.netloc)  # an HTTPS hub is reached by its name
    sslopt: dict = {}
    if parts.scheme == "https":
        sslopt = {"server_hostname": host.split(":")[0], "check_hostname": True, "cert_reqs": ssl.CERT_REQUIRED}
        if isinstance(client.verify, str):
            sslopt["ca_certs"] = client.verify
    return websocket.create_connection(
        _ws_url(client, path) + f"?session_id={uuid.uuid4().hex}",
        header={"Cookie": _cookie_header(client, path)},
        host=host,
        origin=f"{parts.scheme}://{host}",
        sslopt=sslopt,
        timeout=timeout,
    )


@contextmanager
def kernel(client: HubClient, username: str, timeout: float = 60) -> Iterator[Kernel]:
    """Start a kernel in NAME's running server, open its WebSocket as the browser does, shut it down after."""
    headers = {"X-XSRFToken": client.xsrf(f"/user/{username}/")}
    r = client.post(f"/user/{username}/api/kernels", json={"name": "python3"}, headers=headers)
    assert r.status_code == 201, f"starting a kernel in {username}'s server: {r.status_code} {r.text[:300]}"
    kernel_id = r.json()["id"]
    k = Kernel(client, username, kernel_id, connect(client, username, kernel_id, timeout))
    try:
        yield k
    finally:
        k.ws.close()
        client.request("DELETE", f"/user/{username}/api/kernels/{kernel_id}", headers=headers)


def one_plus_one(client: HubClient, username: str) -> str:
    """Run ``1+1`` in a new kernel of NAME's server through the public URL; return what it answered."""
    with kernel(client, username) as k:
        return k.execute("1+1").strip()


def run_notebook(client: HubClient, username: str, path: str) -> list[str]:
    """Run every code cell of the notebook ``path`` in NAME's server, as "Run All Cells" does there.

    The notebook is read from the user's server (upload it first); each cell's output is returned.
    Raises AssertionError with the traceback of the first cell that fails.
    """
    headers = {"X-XSRFToken": client.xsrf(f"/user/{username}/")}
    r = client.get(f"/user/{username}/api/contents/{path}", params={"content": "1"}, headers=headers)
    assert r.status_code == 200, f"reading {path} from {username}'s server: {r.status_code} {r.text[:300]}"
    cells = [c for c in r.json()["content"]["cells"] if c["cell_type"] == "code"]
    with kernel(client, username) as k:
        return [k.execute("".join(c["source"]) if isinstance(c["source"], list) else c["source"]) for c in cells]


def connection_survives(client: HubClient, username: str, event: Callable[[], None]) -> bool:
    """Hold a kernel's WebSocket open while ``event`` happens (a restart); return whether it stayed open.

    Either way the kernel must keep its state: checked on the same WebSocket, or on a new one,
    as JupyterLab reconnects by itself.
    """
    with kernel(client, username) as k:
        k.execute("x = 41")
        event()
        client.wait_server(username, timeout=60)
        stayed = k.alive()
        if not stayed:
            k.reconnect()
        assert k.execute("print(x + 1)").strip() == "42", f"{username}'s kernel lost its state"
        return stayed
