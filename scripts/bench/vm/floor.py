"""Run inside a test VM (its own python3, stdlib only): the floors a spawn is compared with.

    python3 - server IMAGE      a bare ``jupyter lab`` in a container of IMAGE, no hub: seconds from
                                ``docker run`` until /lab answers 200 (polled every 0.1 s), and the CPU
                                seconds its processes used until then
    python3 - container IMAGE   ``docker run --rm IMAGE true``: a bare container start and stop

Prints one JSON object.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request

NAME = "hhw-bench-floor"


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], check=True, capture_output=True, text=True).stdout.strip()


def cpu_seconds(container: str) -> float:
    """utime + stime (and those of reaped children) of every process in the container."""
    out = docker("exec", container, "sh", "-c", "cat /proc/[0-9]*/stat 2>/dev/null")
    ticks = 0
    for line in out.splitlines():
        fields = line.rsplit(")", 1)[1].split()
        ticks += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def server(image: str) -> dict[str, float]:
    subprocess.run(["docker", "rm", "-f", NAME], capture_output=True, check=False)
    started = time.time()
    docker("run", "-d", "--name", NAME, image, "jupyter", "lab", "--ip=0.0.0.0", "--port=8888",
           "--no-browser", "--IdentityProvider.token=", "--ServerApp.password=")  # fmt: skip
    ip = docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", NAME)
    deadline = started + 120
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://{ip}:8888/lab", timeout=5) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        time.sleep(0.1)
    else:
        raise SystemExit(f"bare server not up after 120 s:\n{docker('logs', NAME)}")
    seconds = time.time() - started
    cpu = cpu_seconds(NAME)
    docker("rm", "-f", NAME)
    return {"seconds": seconds, "cpu_seconds": cpu}


def container(image: str) -> dict[str, float]:
    started = time.time()
    docker("run", "--rm", image, "true")
    return {"seconds": time.time() - started}


if __name__ == "__main__":
    mode, image = sys.argv[1], sys.argv[2]
    print(json.dumps(server(image) if mode == "server" else container(image)))
