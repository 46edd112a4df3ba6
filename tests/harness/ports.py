"""Who can reach a port: the machine's loopback only, or the network too."""

from __future__ import annotations

import requests

from .machine import ContainerVM, Machine


def listeners(machine: Machine, port: int) -> list[str]:
    """The local addresses listening on TCP ``port`` (``ss -tln``), e.g. ["127.0.0.1:8000"]."""
    out = machine.output(f"ss -Htln 'sport = :{port}'")
    return [line.split()[3] for line in out.splitlines() if line.strip()]


def reachable_from_outside(machine: ContainerVM, port: int) -> bool:
    """True when a connection from another machine (this one) to ``port`` of the VM gets an HTTP answer.

    Refused or reset (nothing listens there) and no answer at all (a firewall drops it) both count as no.
    """
    with requests.Session() as s:
        s.trust_env = False
        try:
            s.get(machine.url(port) + "/", timeout=5)
        except (requests.ConnectionError, requests.Timeout):
            return False
    return True


def assert_loopback_only(machine: Machine, port: int) -> None:
    """``port`` listens on 127.0.0.1 (or ::1) only, and, on a test VM, nothing answers it from outside."""
    found = listeners(machine, port)
    assert found, f"nothing listens on port {port}"
    exposed = [a for a in found if not a.startswith(("127.0.0.1:", "[::1]:"))]
    assert not exposed, f"port {port} listens beyond loopback on {exposed}: passwords would cross the network"
    if isinstance(machine, ContainerVM):
        assert not reachable_from_outside(machine, port), f"port {port} of {machine.name} answers from outside"
