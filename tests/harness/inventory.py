"""What of the book is on a machine: packages, users, files, enabled units, listening ports, firewall.

Stage 14's chapter lists what each stage changed; its tests compare that list with the stage
images (each one against the one before it) and check that teardown.sh leaves a machine as the
base image was. An image is read without booting it (``docker run --rm IMAGE bash``), a running
VM with ``Machine.run``.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field

from .machine import Machine, docker

# Where the book writes (one level deep each): the files it adds are found there.
ROOTS = ("/etc", "/etc/docker", "/etc/pam.d", "/etc/prometheus", "/etc/default", "/etc/systemd/system",
         "/opt", "/usr/local/bin", "/usr/local/sbin", "/usr/local/lib", "/var/lib", "/var/log",
         "/var/backups", "/home")  # fmt: skip

# New paths that are no step's doing: Debian's packages make them when installed (their own
# scripts; purging the packages removes them), useradd keeps copies of what it changed, systemd
# marks an updated /usr, and the test VMs keep what each install.sh printed.
NOT_THE_BOOKS = {
    "/etc/.updated": "systemd, after packages changed /usr",
    "/etc/cni": "docker.io",
    "/etc/inputrc": "readline-common",
    "/etc/networks": "netbase",
    "/etc/python3": "python3",
    "/etc/subgid-": "useradd's copy of /etc/subgid",
    "/etc/subuid-": "useradd's copy of /etc/subuid",
    "/usr/local/lib/python3.13": "python3.13",
    "/usr/local/lib/python3.11": "python3.11",
    "/var/lib/containerd": "containerd",
    "/var/lib/docker": "docker.io (on a test VM, a volume of its own)",
    "/var/lib/python": "python3",
    "/var/log/hhw-install": "the test VM: what each install.sh printed",
    "/etc/systemd/system/sockets.target.wants": "docker.io (docker.socket enabled)",
}

SCRIPT = r"""
set -u
echo '##packages'
dpkg-query -W -f '${db:Status-Abbrev} ${Package}\n' | awk '$1 == "ii" {print $2}' | sort > /tmp/.hhw-ii
cat /tmp/.hhw-ii
# Asked for by name: installed and not marked as installed automatically (what apt-mark showmanual says).
echo '##manual'
awk '/^Package:/ {p=$2} /^Auto-Installed: 1/ {print p}' /var/lib/apt/extended_states 2>/dev/null | sort -u \
    | comm -23 /tmp/.hhw-ii -
echo '##users'; cut -d: -f1 /etc/passwd | sort
echo '##groups'; cut -d: -f1 /etc/group | sort
echo '##files'
find ROOTS -xdev -mindepth 1 -maxdepth 1 ! -name '*.wants' ! -name '*.requires' 2>/dev/null | sort -u > /tmp/.hhw-found
grep -hxF -f /tmp/.hhw-found /var/lib/dpkg/info/*.list | sort -u | comm -23 /tmp/.hhw-found -
rm -f /tmp/.hhw-ii /tmp/.hhw-found
echo '##enabled'; find /etc/systemd/system -mindepth 2 -maxdepth 2 -path '*.wants/*' -printf '%f\n' | sort -u
echo '##end'
""".replace("ROOTS", " ".join(ROOTS))


@dataclass
class Inventory:
    """One machine's (or image's) state, as sets of names."""

    packages: set[str] = field(default_factory=set)
    manual: set[str] = field(default_factory=set)  # packages asked for by name (apt-mark showmanual)
    users: set[str] = field(default_factory=set)
    groups: set[str] = field(default_factory=set)
    files: set[str] = field(default_factory=set)
    enabled: set[str] = field(default_factory=set)  # units enabled in /etc/systemd/system
    ports: set[str] = field(default_factory=set)  # "ADDRESS:PORT" listening (a running machine only)
    firewall: list[str] = field(default_factory=list)  # nft tables (a running machine only)
    docker: dict[str, list[str]] = field(default_factory=dict)

    def book_files(self) -> set[str]:
        return {f for f in self.files if f not in NOT_THE_BOOKS}


def parse(text: str) -> Inventory:
    inv = Inventory()
    part = None
    for line in text.splitlines():
        if line.startswith("##"):
            part = line[2:]
            continue
        if line.strip() and part in ("packages", "manual", "users", "groups", "files", "enabled"):
            getattr(inv, part).add(line.strip())
    return inv


def of_image(image: str) -> Inventory:
    """The inventory of an image, read without booting it."""
    proc = docker("run", "--rm", "-i", "--entrypoint", "bash", image, input=SCRIPT, timeout=120)
    return parse(proc.stdout)


def of_machine(machine: Machine, nft_image: str | None = None) -> Inventory:
    """The inventory of a running machine: also its listening ports, firewall tables and Docker.

    ``nft_image`` (an image with nft, e.g. a stage image) reads the firewall of a test VM from outside
    (its network namespace), so that it is seen even when the VM has no nft any more.
    """
    inv = parse(machine.output(SCRIPT))
    for line in machine.output("ss -Htln").splitlines():
        local = line.split()[3]
        inv.ports.add(local)
    if nft_image:
        proc = subprocess.run(["docker", "run", "--rm", "--network", f"container:{machine.name}", "--cap-add",
                               "NET_ADMIN", "--entrypoint", "nft", nft_image, "list", "tables"],
                              capture_output=True, text=True, timeout=120, check=True)  # fmt: skip
        inv.firewall = sorted(proc.stdout.split("\n"))
        inv.firewall = [t for t in inv.firewall if t.strip()]
    if machine.run("command -v docker", check=False).returncode == 0:
        for kind, args in (("containers", "ps -a"), ("volumes", "volume ls"), ("images", "image ls")):
            out = machine.run(f"docker {args} --format '{{{{json .}}}}'", check=False).stdout
            inv.docker[kind] = [json.dumps(json.loads(x), sort_keys=True) for x in out.splitlines() if x.strip()]
    return inv
