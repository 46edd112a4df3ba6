"""SSH tunnels into test VMs: how the tests reach a hub that listens on the VM's loopback only.

Until HTTPS (stage 06) the hub is bound to 127.0.0.1 and readers reach it with
``ssh -N -L 8000:127.0.0.1:8000 root@THEIR-VM``; the tests do the same, through the
VM's SSH port published on this machine's loopback, with a key of their own.
"""

from __future__ import annotations

import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from .stages import REPO
from .waits import wait_for

KEY = REPO / ".cache" / "ssh" / "id_ed25519"


class Runs(Protocol):
    """Anything that runs a shell command as root (a Machine)."""

    def run(self, command: str, **kw) -> subprocess.CompletedProcess[str]: ...


def key() -> Path:
    """The tests' SSH key (made once per checkout; never used for anything but test VMs)."""
    if not KEY.exists():
        KEY.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "hhw-tests", "-f", str(KEY)],
                       check=True, capture_output=True)  # fmt: skip
    return KEY


def authorize_key(vm: Runs) -> None:
    """Let the tests' key log in as root on the VM (as a reader's key does on theirs)."""
    public = key().with_suffix(".pub").read_text().strip()
    vm.run(
        "install -d -m 0700 /root/.ssh && touch /root/.ssh/authorized_keys && "
        f"(grep -qxF '{public}' /root/.ssh/authorized_keys || echo '{public}' >> /root/.ssh/authorized_keys) && "
        "chmod 0600 /root/.ssh/authorized_keys"
    )


def free_port() -> int:
    """A TCP port nothing listens on, on this machine's loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Tunnel:
    """``ssh -N -L 127.0.0.1:LOCAL:127.0.0.1:REMOTE root@VM``, kept open until closed."""

    remote_port: int
    local_port: int = 0
    process: subprocess.Popen[bytes] | None = None

    def open(self, ssh_port: int) -> None:
        """Start ssh (unless it runs) and wait until the local end accepts connections."""
        if self.process is not None and self.process.poll() is None:
            return
        self.local_port = self.local_port or free_port()
        command = [
            "ssh", "-N", "-i", str(key()), "-p", str(ssh_port),
            "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "ExitOnForwardFailure=yes", "-o", "ServerAliveInterval=10", "-o", "LogLevel=ERROR",
            "-L", f"127.0.0.1:{self.local_port}:127.0.0.1:{self.remote_port}", "root@127.0.0.1",
        ]  # fmt: skip
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE)  # fmt: skip

        def accepting() -> bool:
            if self.process is not None and self.process.poll() is not None:
                err = self.process.stderr.read().decode() if self.process.stderr else ""
                raise RuntimeError(f"ssh exited {self.process.returncode}: {err.strip()}")
            with socket.socket() as s:
                s.settimeout(2)
                return s.connect_ex(("127.0.0.1", self.local_port)) == 0

        what = f"the SSH tunnel 127.0.0.1:{self.local_port} -> VM's 127.0.0.1:{self.remote_port}"
        wait_for(what, accepting, timeout=30, interval=0.2)

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process = None
