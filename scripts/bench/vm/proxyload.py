"""Run inside a stage-05 test VM with the hub's Python (tornado): CHP against Traefik, paired, on one user server.

    /opt/jupyterhub/bin/python - SETTINGS_JSON

SETTINGS_JSON: {"proxies": {"traefik": "http://127.0.0.1:8000", "chp": "http://127.0.0.1:8010"},
"order": ["traefik", "chp"], "chp_api": "http://127.0.0.1:8011", "chp_token": "...", "user": "alice",
"token": "...", "kernel": "KERNEL-ID", "round": 0, "requests": 200, "concurrency": [1, 10, 50],
"ws_messages": 50, "new_route": true, "routes_dir": "/var/lib/jupyterhub-proxy"}

One round: every measurement through each proxy in the order given (the caller alternates it from
round to round, A B then B A, so both proxies see the same machine). Prints one JSON object: per
proxy and measurement, the round's median in milliseconds.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import time
import uuid

from tornado import httpclient, web, websocket

httpclient.AsyncHTTPClient.configure(None, max_clients=200)
ROUTE_BODY = b"hhw-bench-route"


class Answer(web.RequestHandler):
    def get(self, path: str) -> None:
        self.write(ROUTE_BODY)


async def latencies(base: str, path: str, headers: dict, count: int, concurrency: int) -> list[float]:
    """``count`` GETs of ``path``, ``concurrency`` at a time; each one's milliseconds."""
    client = httpclient.AsyncHTTPClient()
    queue = list(range(count))
    found: list[float] = []

    async def worker() -> None:
        while queue:
            queue.pop()
            t0 = time.perf_counter()
            r = await client.fetch(base + path, headers=headers, raise_error=False, request_timeout=60)
            if r.code != 200:
                raise RuntimeError(f"{base}{path}: {r.code} {r.body[:200]!r}")
            found.append((time.perf_counter() - t0) * 1000)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return found


async def ws_round_trips(base: str, user: str, headers: dict, kernel: str, count: int) -> list[float]:
    """Open the kernel's WebSocket through the proxy; milliseconds of ``count`` kernel_info round trips."""
    url = base.replace("http", "ws", 1) + f"/user/{user}/api/kernels/{kernel}/channels"
    conn = await websocket.websocket_connect(httpclient.HTTPRequest(url, headers=headers))
    session, found = uuid.uuid4().hex, []
    try:
        for _ in range(count):
            msg_id = uuid.uuid4().hex
            header = {"msg_id": msg_id, "msg_type": "kernel_info_request", "session": session,
                      "username": user, "version": "5.3", "date": ""}  # fmt: skip
            t0 = time.perf_counter()
            await conn.write_message(json.dumps({"header": header, "parent_header": {}, "metadata": {},
                                                 "content": {}, "channel": "shell", "buffers": []}))  # fmt: skip
            while True:
                raw = await asyncio.wait_for(conn.read_message(), 30)
                if raw is None:
                    raise RuntimeError("the kernel's WebSocket closed")
                reply = json.loads(raw)
                if reply.get("parent_header", {}).get("msg_id") == msg_id and reply["msg_type"] == "kernel_info_reply":
                    break
            found.append((time.perf_counter() - t0) * 1000)
    finally:
        conn.close()
    return found


async def served(base: str, prefix: str, deadline: float) -> float:
    """Poll base/prefix every 5 ms until the stand-in answers it; the time it did."""
    client = httpclient.AsyncHTTPClient()
    while time.time() < deadline:
        r = await client.fetch(base + prefix, raise_error=False, request_timeout=5)
        if r.code == 200 and r.body == ROUTE_BODY:
            return time.time()
        await asyncio.sleep(0.005)
    raise RuntimeError(f"{base}{prefix} never served the new route")


async def new_route(settings: dict, proxy: str, n: int, target: str) -> float:
    """Add a route to the stand-in; milliseconds until the proxy serves it. Removes it after."""
    prefix = f"/hhw-bench-{n}-{uuid.uuid4().hex[:6]}/"
    name = prefix.strip("/")
    client = httpclient.AsyncHTTPClient()
    base = settings["proxies"][proxy]
    if proxy == "chp":
        api = settings["chp_api"] + "/api/routes" + prefix.rstrip("/")
        auth = {"Authorization": f"token {settings['chp_token']}"}
        t0 = time.time()
        await client.fetch(api, method="POST", body=json.dumps({"target": target}), headers=auth)
        done = await served(base, prefix, t0 + 30)
        await client.fetch(api, method="DELETE", headers=auth)
    else:
        path = os.path.join(settings["routes_dir"], f"{name}.toml")
        text = (f'[http.routers.{name}]\n  rule = "PathPrefix(`{prefix}`)"\n  entryPoints = ["http"]\n'
                f'  service = "{name}"\n[http.services.{name}.loadBalancer]\n'
                f'  [[http.services.{name}.loadBalancer.servers]]\n    url = "{target}"\n')  # fmt: skip
        with open(path + ".tmp", "w") as f:
            f.write(text)
        os.chmod(path + ".tmp", 0o644)
        t0 = time.time()
        os.replace(path + ".tmp", path)
        try:
            done = await served(base, prefix, t0 + 30)
        finally:
            os.remove(path)
    return (done - t0) * 1000


async def main(settings: dict) -> dict:
    """One round: every measurement through each proxy, in the order given; {proxy: {measurement: ms}}."""
    user, order = settings["user"], settings["order"]
    headers = {"Authorization": f"token {settings['token']}"}
    app = web.Application([(r"/(.*)", Answer)])
    server = app.listen(0, "127.0.0.1")
    port = next(iter(server._sockets.values())).getsockname()[1]
    target = f"http://127.0.0.1:{port}"
    out: dict = {p: {} for p in order}
    try:
        for c in settings["concurrency"]:
            for p in order:
                found = await latencies(settings["proxies"][p], f"/user/{user}/api/status", headers,
                                        settings["requests"], c)  # fmt: skip
                out[p][f"http_c{c}_ms"] = round(statistics.median(found), 3)
        for p in order:
            found = await ws_round_trips(settings["proxies"][p], user, headers, settings["kernel"],
                                         settings["ws_messages"])  # fmt: skip
            out[p]["websocket_ms"] = round(statistics.median(found), 3)
        if settings["new_route"]:
            for p in order:
                out[p]["new_route_ms"] = round(await new_route(settings, p, settings["round"], target), 1)
    finally:
        server.stop()
    return out


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(json.loads(sys.argv[1])))))
