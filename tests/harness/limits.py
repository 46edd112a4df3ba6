"""Resource limits as a user and an operator see them: a kernel that dies, what Docker set."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid

import websocket

from .kernels import Kernel
from .machine import Machine
from .users import container


def states_while_running(k: Kernel, code: str, timeout: float = 60) -> list[str]:
    """Run ``code`` in the kernel and return the kernel states its WebSocket reports, until it is idle again.

    A kernel killed mid-run (by the memory limit, say) reports "restarting", then
    "starting" (the new process): what JupyterLab turns into its "Kernel Restarting" dialog.
    This WebSocket carries no replies of the new process; open a new one (``k.reconnect()``).
    Output lines the code printed are included as "stream: TEXT".
    """
    msg_id = uuid.uuid4().hex
    header = {"msg_id": msg_id, "msg_type": "execute_request", "session": k.session,
              "username": k.username, "version": "5.3", "date": ""}  # fmt: skip
    content = {"code": code, "silent": False, "store_history": False, "user_expressions": {},
               "allow_stdin": False, "stop_on_error": True}  # fmt: skip
    k.ws.send(json.dumps({"header": header, "parent_header": {}, "metadata": {}, "content": content,
                          "channel": "shell", "buffers": []}))  # fmt: skip
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    # Seen twice: a read on this TLS WebSocket blocked past its timeout once the kernel was killed.
    # A watchdog cuts the connection then, so the wait ends as the deadline says.
    watchdog = threading.Timer(timeout + 5, cut, args=(k,))
    watchdog.start()
    try:
        while time.monotonic() < deadline:
            k.ws.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                reply = json.loads(k.ws.recv())
            except (websocket.WebSocketException, OSError):
                break
            ours = reply.get("parent_header", {}).get("msg_id") == msg_id
            kind, body = reply["msg_type"], reply["content"]
            if kind == "status":
                seen.append(body["execution_state"])
                if (body["execution_state"] == "idle" and ours) or (
                    body["execution_state"] == "starting" and "restarting" in seen
                ):
                    break
            elif kind == "stream" and ours:
                seen.append(f"stream: {body['text'].strip()}")
    finally:
        watchdog.cancel()
    return seen


def cut(k: Kernel) -> None:
    """Shut the kernel's WebSocket down under a blocked read (which then fails at once)."""
    try:
        k.ws.sock.shutdown(socket.SHUT_RDWR)
    except (OSError, AttributeError):
        pass


def docker_limits(machine: Machine, name: str) -> dict[str, int]:
    """What ``docker inspect`` says of a container's limits: Memory, MemorySwap, NanoCpus (0: none)."""
    info = container(machine, name)
    assert info is not None, f"no container {name}"
    return {key: info["HostConfig"][key] for key in ("Memory", "MemorySwap", "NanoCpus")}


def container_env(machine: Machine, name: str) -> dict[str, str]:
    """The environment Docker gave a container (``docker inspect``'s Config.Env)."""
    info = container(machine, name)
    assert info is not None, f"no container {name}"
    return dict(item.split("=", 1) for item in info["Config"]["Env"])
