"""Machines the tests act on: a throwaway systemd container ("test VM") or this machine."""

from __future__ import annotations

import os
import shlex
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from . import releases
from .tunnel import Tunnel, authorize_key
from .waits import wait_for

# Flags that make a container boot systemd as PID 1 (see field notes):
# --privileged fails on hosts whose bounding set lacks CAP_SYS_RESOURCE.
SYSTEMD_FLAGS = [
    "--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE",
    "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
    "--cgroupns=host", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
    "--tmpfs", "/run", "--tmpfs", "/run/lock",
    "--stop-signal", "SIGRTMIN+3",  # systemd halts cleanly on this signal
    # Docker lets anyone bind ports below 1024 in a container; a real machine does not.
    "--sysctl", "net.ipv4.ip_unprivileged_port_start=1024",
]  # fmt: skip

# Ports of a VM published on this machine's loopback (random host ports).
# 22: the tests' SSH tunnels (a hub on the VM's loopback is reached as a reader does, through one).
VM_PORTS = (22, 80, 443, 8000, 8099)

LABEL = "hhw.test"
OWNER_LABEL = "hhw.owner-pid"  # the pytest process that started it, for stale clean-up
SESSION = uuid.uuid4().hex[:8]


def owner() -> str:
    """Who owns a new VM: this process (removed once it is gone), or nobody with HHW_KEEP_VM=1."""
    return "kept" if os.environ.get("HHW_KEEP_VM") == "1" else str(os.getpid())


def host_ca_bundle() -> Path | None:
    """The CA bundle this machine trusts; test VMs trust it too (TLS-intercepting networks)."""
    for candidate in (os.environ.get("SSL_CERT_FILE"), os.environ.get("REQUESTS_CA_BUNDLE"),
                      "/etc/ssl/certs/ca-certificates.crt"):  # fmt: skip
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


VM_CA_PATH = "/usr/local/share/hhw/host-ca.pem"
# Environment for commands that download from package registries inside a VM.
VM_INSTALL_ENV = {
    "DEBIAN_FRONTEND": "noninteractive",
    "PIP_CERT": VM_CA_PATH,
    "NODE_EXTRA_CA_CERTS": VM_CA_PATH,
    "PIP_DISABLE_PIP_VERSION_CHECK": "1",
}


def docker(*args: str, check: bool = True, timeout: float = 300, **kw) -> subprocess.CompletedProcess[str]:
    """Run the docker client; on failure raise with its stderr."""
    proc = subprocess.run(["docker", *args], check=False, capture_output=True, text=True, timeout=timeout, **kw)
    if check and proc.returncode != 0:
        raise RuntimeError(f"docker {shlex.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


class CommandFailed(AssertionError):
    """A command on a machine exited non-zero."""


@dataclass
class Machine:
    """What the tests need of a machine: run a command as root, reach a port, explain itself."""

    name: str

    def run(self, command: str, *, check: bool = True, timeout: float = 120,
            env: dict[str, str] | None = None, cwd: str | None = None,
            input: str | None = None) -> subprocess.CompletedProcess[str]:  # fmt: skip
        """Run ``command`` with bash as root, ``input`` on its stdin; raise CommandFailed if ``check`` and it fails."""
        proc = self._exec(command, timeout=timeout, env=env or {}, cwd=cwd, input=input)
        if check and proc.returncode != 0:
            raise CommandFailed(
                f"on {self.name}: {command!r} exited {proc.returncode}\n"
                f"--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-3000:]}"
            )
        return proc

    def output(self, command: str, **kw) -> str:
        """stdout of ``command``, stripped."""
        return self.run(command, **kw).stdout.strip()

    def clock(self) -> str:
        """The machine's time in seconds since the epoch, for ``journal(since=...)``."""
        return self.output("date +%s")

    def journal(self, unit: str | None = None, *, since: str | None = None, lines: int | None = None) -> str:
        """``journalctl`` of one unit (or of everything), optionally only since ``clock()`` said ``since``."""
        args = ["--no-pager"]
        if unit:
            args.append(f"-u {unit}")
        if since:
            args.append(f"--since=@{since}")
        if lines:
            args.append(f"--lines={lines}")
        return self.output(f"journalctl {' '.join(args)}")

    def url(self, port: int, scheme: str = "http") -> str:
        """A URL on this machine's loopback that reaches ``port`` of the machine from outside it."""
        raise NotImplementedError

    def loopback_url(self, port: int, scheme: str = "http") -> str:
        """A URL that reaches ``port`` on the machine's own loopback (through an SSH tunnel on a VM)."""
        raise NotImplementedError

    def _exec(self, command: str, *, timeout: float, env: dict[str, str], cwd: str | None,
              input: str | None = None):  # fmt: skip
        raise NotImplementedError

    def diagnostics(self, units: tuple[str, ...] = ("jupyterhub",)) -> str:
        """What an operator would look at first: unit status and the end of the journal."""
        parts = []
        for unit in units:
            for cmd in (f"systemctl status {unit} --no-pager --lines=0",
                        f"journalctl -u {unit} --no-pager --lines=60"):  # fmt: skip
                try:
                    proc = self._exec(cmd, timeout=30, env={}, cwd=None)
                    parts.append(f"$ {cmd}\n{proc.stdout}{proc.stderr}")
                except Exception as exc:
                    parts.append(f"$ {cmd}\n(could not run: {exc})")
        return "\n".join(parts)


@dataclass
class LocalMachine(Machine):
    """The machine pytest runs on (``--target local``): the reader's own VM, as root."""

    name: str = "local"
    host: str = "127.0.0.1"

    def url(self, port: int, scheme: str = "http") -> str:
        return f"{scheme}://{self.host}:{port}"

    def loopback_url(self, port: int, scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{port}"

    def _exec(self, command: str, *, timeout: float, env: dict[str, str], cwd: str | None,
              input: str | None = None):  # fmt: skip
        return subprocess.run(["bash", "-c", command], check=False, capture_output=True, text=True, input=input,
                              timeout=timeout, env={**os.environ, **env}, cwd=cwd)  # fmt: skip


@dataclass
class RemoteMachine(Machine):
    """A hub seen only through its URL (``--hub-url``): no shell there, so checks that need one skip."""

    name: str = "remote"

    def _exec(self, command: str, *, timeout: float, env: dict[str, str], cwd: str | None,
              input: str | None = None):  # fmt: skip
        pytest.skip("needs a shell on the hub's machine: run it there with --target local")

    def diagnostics(self, units: tuple[str, ...] = ("jupyterhub",)) -> str:
        return "(no shell on the hub's machine: --hub-url)"


@dataclass
class ContainerVM(Machine):
    """A throwaway Debian machine: a container with systemd as PID 1."""

    image: str = ""
    ports: dict[int, int] = field(default_factory=dict)
    volumes: list[str] = field(default_factory=list)  # named volumes removed with the VM
    tunnels: dict[int, Tunnel] = field(default_factory=dict)  # VM port -> SSH tunnel to its loopback

    @classmethod
    def boot(cls, image: str, *, purpose: str = "test", docker_data: str | None = None,
             hostname: str = "hub", network: str | None = None,
             mounts: tuple[str, ...] = ()) -> ContainerVM:  # fmt: skip
        """Start a VM from ``image`` and wait until systemd says the system is up.

        The VM's /var/lib/docker is a fresh named volume (Docker inside needs a real
        filesystem for overlay2), filled with a copy of ``docker_data`` when given.
        On a ``network`` (several machines), the VM's ``hostname`` is also its name there;
        ``mounts`` are extra ``VOLUME:/path`` (e.g. homes shared by every machine).
        """
        name = f"hhw-{purpose}-{SESSION}-{uuid.uuid4().hex[:6]}"
        volume = f"{name}-docker"
        create_volume(volume, copy_of=docker_data)
        args = ["run", "-d", "--name", name, "--hostname", hostname, *SYSTEMD_FLAGS,
                "--label", f"{LABEL}={SESSION}", "--label", f"{OWNER_LABEL}={owner()}"]  # fmt: skip
        if network:
            args += ["--network", network, "--network-alias", hostname]
        for port in VM_PORTS:
            args += ["-p", f"127.0.0.1::{port}"]
        args += ["-v", f"{volume}:/var/lib/docker"]
        for mount in mounts:
            args += ["-v", mount]
        vm = cls(name=name, image=image, volumes=[volume])
        try:
            docker(*args, image)
            vm.wait_booted()
        except BaseException:
            vm.remove()
            raise
        return vm

    def wait_booted(self, timeout: float = 90) -> None:
        """Wait until ``systemctl is-system-running`` settles (running or degraded) and read the ports."""

        def settled() -> str | None:
            state = self._exec("systemctl is-system-running", timeout=10, env={}, cwd=None).stdout.strip()
            return state if state in ("running", "degraded") else None

        wait_for(f"systemd to finish booting in {self.name}", settled, timeout=timeout)
        self.ports = {}
        for port in VM_PORTS:
            out = docker("port", self.name, f"{port}/tcp").stdout.split()
            self.ports[port] = int(out[0].rsplit(":", 1)[1])
        authorize_key(self)

    def url(self, port: int, scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.ports[port]}"

    def loopback_url(self, port: int, scheme: str = "http") -> str:
        """``ssh -L`` to the VM (as the book tells readers to do), opened once per port."""
        tunnel = self.tunnels.get(port)
        if tunnel is None:
            tunnel = self.tunnels[port] = Tunnel(remote_port=port)
        tunnel.open(ssh_port=self.ports[22])
        return f"{scheme}://127.0.0.1:{tunnel.local_port}"

    def _exec(self, command: str, *, timeout: float, env: dict[str, str], cwd: str | None,
              input: str | None = None):  # fmt: skip
        args = ["exec", "-i"]
        for key, value in env.items():
            args += ["-e", f"{key}={value}"]
        if cwd:
            args += ["-w", cwd]
        return docker(*args, self.name, "bash", "-c", command, check=False, timeout=timeout, input=input)

    def copy_in(self, source: Path, target: str, *, exclude_tests: bool = True) -> None:
        """Copy a directory into the VM (as a reader copies a step directory onto a VM)."""
        self.run(f"mkdir -p {shlex.quote(target)}")
        excludes = ["--exclude=__pycache__", "--exclude=.pytest_cache"]
        tar = subprocess.Popen(["tar", "-C", str(source), *excludes, "-c", "."], stdout=subprocess.PIPE)
        docker("exec", "-i", self.name, "tar", "-C", target, "-x", stdin=tar.stdout)
        tar.wait()

    def trust_host_ca(self) -> None:
        """Let pip and npm in the VM trust what this machine trusts."""
        bundle = host_ca_bundle()
        if bundle:
            self.run(f"mkdir -p {Path(VM_CA_PATH).parent}")
            docker("cp", "-L", str(bundle), f"{self.name}:{VM_CA_PATH}")

    def reboot(self) -> None:
        """Stop the container (systemd shuts down) and start it again (systemd boots).

        Its published ports may change; SSH tunnels are opened again on the same local ports.
        """
        for tunnel in self.tunnels.values():
            tunnel.close()
        docker("restart", "-t", "30", self.name, timeout=120)
        self.wait_booted()
        for tunnel in self.tunnels.values():
            tunnel.open(ssh_port=self.ports[22])

    def stop(self) -> None:
        docker("stop", "-t", "30", self.name, timeout=120)

    def commit(self, tag: str, labels: dict[str, str]) -> None:
        changes = []
        for key, value in labels.items():
            changes += ["-c", f"LABEL {key}={value}"]
        docker("commit", *changes, self.name, tag, timeout=600)

    def remove(self) -> None:
        for tunnel in self.tunnels.values():
            tunnel.close()
        docker("rm", "-f", "-v", self.name, check=False, timeout=120)
        if self.volumes:
            docker("volume", "rm", "-f", *self.volumes, check=False, timeout=120)


def volume_is_empty(volume: str) -> bool:
    """True when the named volume holds no files."""
    out = docker("run", "--rm", "-v", f"{volume}:/v:ro", releases.base_image(), "ls", "-A", "/v").stdout
    return not out.strip()


def create_volume(volume: str, copy_of: str | None = None, *, keep: bool = False) -> None:
    """Create a named volume, as a copy of another one when ``copy_of`` is given.

    The copy keeps device files and trusted.* attributes (overlay2's whiteouts), hence SYS_ADMIN.
    A ``keep`` volume outlives the session (no session label: the end-of-session sweep spares it).
    """
    labels = [] if keep else ["--label", f"{LABEL}={SESSION}", "--label", f"{OWNER_LABEL}={owner()}"]
    docker("volume", "create", *labels, volume)
    if copy_of:
        docker("run", "--rm", "--cap-add", "SYS_ADMIN", "-v", f"{copy_of}:/from:ro", "-v", f"{volume}:/to",
               releases.base_image(), "cp", "-a", "/from/.", "/to/", timeout=900)  # fmt: skip


def remove_session_containers() -> None:
    """Remove every container this test session started (also after a crash mid-test)."""
    ids = docker("ps", "-aq", "--filter", f"label={LABEL}={SESSION}", check=False).stdout.split()
    if ids:
        docker("rm", "-f", "-v", *ids, check=False, timeout=300)
    volumes = docker("volume", "ls", "-q", "--filter", f"label={LABEL}={SESSION}", check=False).stdout.split()
    if volumes:
        docker("volume", "rm", "-f", *volumes, check=False, timeout=300)
    networks = docker("network", "ls", "-q", "--filter", f"label={LABEL}={SESSION}", check=False).stdout.split()
    if networks:
        docker("network", "rm", *networks, check=False, timeout=120)


def remove_stale_containers() -> None:
    """Remove test VMs and volumes left by test runs whose process is gone (killed, crashed)."""
    owner = '{{.Label "' + OWNER_LABEL + '"}}'
    for kind, ls, name in (("container", ["ps", "-a"], "{{.Names}}"), ("volume", ["volume", "ls"], "{{.Name}}"),
                           ("network", ["network", "ls"], "{{.Name}}")):  # fmt: skip
        out = docker(*ls, "--filter", f"label={LABEL}", "--format", f"{name} {owner}", check=False).stdout
        stale = []
        for line in out.splitlines():
            found, _, pid = line.partition(" ")
            if pid.isdigit() and not Path(f"/proc/{pid}").exists():
                stale.append(found)
        if stale and kind == "container":
            docker("rm", "-f", "-v", *stale, check=False, timeout=300)
        elif stale and kind == "volume":
            docker("volume", "rm", "-f", *stale, check=False, timeout=300)
        elif stale:
            docker("network", "rm", *stale, check=False, timeout=120)
