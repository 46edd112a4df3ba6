"""Several test VMs on one private network: a hub machine and workers (stages 12 Slurm, 13 Swarm).

A cluster stage's test module says what it needs at module level:

- ``MACHINES = ("hub", "node1", "node2")``: each machine's hostname, also its name on the network;
- ``SHARED = ("/home",)`` (optional): paths that every machine mounts from one volume (the stand-in
  for the NFS a real site shares homes with; the chapter says so);
- ``install_cluster(cluster)``: the chapter's commands on each machine (``cluster.run_script``);
- ``start_cluster(cluster)`` (optional): what must run after every boot of the saved machines.

The first run boots every machine from the base image, runs ``install_cluster`` and saves each
machine (its Docker data and the shared volume too) as images keyed by the step's files; later
runs boot those images, which is also a reboot test of every unit.
"""

from __future__ import annotations

import fcntl
import shlex
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import ModuleType

from . import releases
from .images import (
    INSTALL_LOGS,
    LOCK_DIR,
    LOG_DIR,
    PRELOAD_DIR,
    PRELOAD_DROPIN,
    STAGE_REPO,
    docker_data_of,
    drift,
    image_id,
    install_answers,
    provide_images,
    stage_key,
    stage_prefix,
)
from .machine import (
    LABEL,
    OWNER_LABEL,
    SESSION,
    VM_INSTALL_ENV,
    ContainerVM,
    create_volume,
    docker,
    owner,
    volume_is_empty,
)
from .stages import Stage

SHARED_LABEL = "hhw.shared-data"  # on the hub machine's image: the saved volume behind SHARED paths


@dataclass
class Cluster:
    """The machines of one cluster stage, by hostname, on one private Docker network."""

    stage: Stage
    network: str
    vms: dict[str, ContainerVM] = field(default_factory=dict)
    shared_volume: str | None = None
    units: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def __getitem__(self, name: str) -> ContainerVM:
        return self.vms[name]

    @property
    def hub(self) -> ContainerVM:
        """The machine the hub runs on (the first of MACHINES)."""
        return next(iter(self.vms.values()))

    @property
    def nodes(self) -> list[ContainerVM]:
        """Every machine but the hub's: the workers."""
        return list(self.vms.values())[1:]

    def name_of(self, vm: ContainerVM) -> str:
        """The hostname of one of the cluster's VMs."""
        return next(name for name, v in self.vms.items() if v is vm)

    def run_script(self, machine: str, script: str, *, timeout: float = 1800, env: dict[str, str] | None = None) -> str:
        """``bash SCRIPT`` in the step directory on one machine, as the reader runs it there.

        Its output is kept on that machine (for the chapter's "You should see") and in .cache/logs;
        a failure raises with the end of the output.
        """
        vm = self.vms[machine]
        proc = vm.run(f"bash {shlex.quote(script)}", cwd=self.stage.vm_dir, timeout=timeout, check=False,
                      env={**VM_INSTALL_ENV, **install_answers(), **(env or {})})  # fmt: skip
        out = proc.stdout + proc.stderr
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        log = LOG_DIR / f"install-d{releases.current()}-{self.stage.name}-{machine}-{script}.log"
        log.write_text(f"$ bash {script}\n{proc.stdout}\n--- stderr\n{proc.stderr}")
        vm.run(f"mkdir -p {INSTALL_LOGS} && cat > {INSTALL_LOGS}/{self.stage.name}-{script}.log", input=out)
        if proc.returncode != 0:
            tail = "\n".join(out.splitlines()[-40:])
            raise RuntimeError(f"{machine}: {self.stage.name}/{script} exited {proc.returncode} (log: {log}):\n{tail}")
        return proc.stdout

    def copy(self, source: str, path: str, targets: list[str] | tuple[str, ...], *, mode: str = "0400",
             owner: str = "root:root") -> None:  # fmt: skip
        """Copy one file from a machine to others, as the reader's ``scp`` does (then chmod, chown).

        Streamed (a saved image of hundreds of MB as well as a key), and written under umask 077, so a
        secret is never readable by others on the way.
        """
        q = shlex.quote(path)
        for target in targets:
            cat = subprocess.Popen(["docker", "exec", self.vms[source].name, "cat", path], stdout=subprocess.PIPE)
            docker("exec", "-i", self.vms[target].name, "sh", "-c",
                   f"umask 077 && mkdir -p $(dirname {q}) && cat > {q} && chmod {mode} {q} && chown {owner} {q}",
                   stdin=cat.stdout, timeout=900)  # fmt: skip
            if cat.wait() != 0:
                raise RuntimeError(f"reading {path} on {source} failed")

    def run_everywhere(self, command: str, **kw) -> dict[str, str]:
        """``command`` on every machine; its output by machine."""
        return {name: vm.output(command, **kw) for name, vm in self.vms.items()}

    def diagnostics(self) -> str:
        """Failed units, the stage's units and the end of the journal, from every machine."""
        parts = []
        for name, vm in self.vms.items():
            parts.append(f"===== {name} ({vm.name})")
            parts.append(vm.diagnostics(self.units.get(name, ())))
            for cmd in ("systemctl --failed --no-pager", "journalctl --no-pager --lines=40"):
                try:
                    proc = vm.run(cmd, check=False, timeout=30)
                    parts.append(f"$ {cmd}\n{proc.stdout}{proc.stderr}")
                except Exception as exc:
                    parts.append(f"$ {cmd}\n(could not run: {exc})")
        return "\n".join(parts)

    def remove(self) -> None:
        """Remove every machine, the shared volume and the network."""
        with ThreadPoolExecutor(len(self.vms) or 1) as pool:
            list(pool.map(lambda vm: vm.remove(), self.vms.values()))
        if self.shared_volume:
            docker("volume", "rm", "-f", self.shared_volume, check=False, timeout=120)
        docker("network", "rm", self.network, check=False, timeout=120)


def machine_tag(stage: Stage, key: str, machine: str) -> str:
    """The saved image of one machine of a cluster stage: hhw/stage:d13-12-KEY-node1."""
    return f"{STAGE_REPO}:{stage_prefix(stage)}{key}-{machine}"


def new_network(stage: Stage) -> str:
    """A private network for one cluster (removed with it, or by the end-of-session sweep)."""
    name = f"hhw-net{stage.number:02d}-{SESSION}-{uuid.uuid4().hex[:6]}"
    docker("network", "create", "--label", f"{LABEL}={SESSION}", "--label", f"{OWNER_LABEL}={owner()}", name)
    return name


def boot_cluster(stage: Stage, images: dict[str, str], *, shared: tuple[str, ...] = (),
                 shared_copy_of: str | None = None, purpose: str = "") -> Cluster:  # fmt: skip
    """Boot one VM per machine (in parallel) on a new network; ``images`` maps each hostname to its image."""
    cluster = Cluster(stage=stage, network=new_network(stage))
    mounts: tuple[str, ...] = ()
    if shared:
        cluster.shared_volume = f"hhw-shared{stage.number:02d}-{SESSION}-{uuid.uuid4().hex[:6]}"
        create_volume(cluster.shared_volume, copy_of=shared_copy_of)
        # One volume for every shared path: each path is a directory in it.
        mounts = tuple(f"{cluster.shared_volume}:{path}" for path in shared[:1])
        if len(shared) > 1:
            raise NotImplementedError("one SHARED path per cluster (say which, e.g. /home)")

    def boot(name: str) -> ContainerVM:
        return ContainerVM.boot(images[name], purpose=f"{purpose or 'stage'}{stage.number:02d}-{name}",
                                docker_data=docker_data_of(images[name]), hostname=name,
                                network=cluster.network, mounts=mounts)  # fmt: skip

    try:
        with ThreadPoolExecutor(len(images)) as pool:
            booted = dict(zip(images, pool.map(boot, images), strict=True))
        cluster.vms = {name: booted[name] for name in images}
    except BaseException:
        cluster.remove()
        raise
    return cluster


def build_cluster_images(stage: Stage, module: ModuleType, key: str) -> dict[str, str]:
    """Boot every machine from the base image, run ``install_cluster`` and save each machine."""
    machines: tuple[str, ...] = module.MACHINES
    shared: tuple[str, ...] = getattr(module, "SHARED", ())
    started = time.monotonic()
    print(f"\n[hhw] building the {stage.name} cluster ({', '.join(machines)}) from {releases.base_image()}",
          file=sys.stderr)  # fmt: skip
    base = dict.fromkeys(machines, releases.base_image())
    cluster = boot_cluster(stage, base, shared=shared, purpose="build")
    try:
        uses_docker = any("docker" in p.read_text(errors="ignore") for p in stage.path.glob("install*.sh"))
        for vm in cluster.vms.values():
            vm.trust_host_ca()
            vm.copy_in(stage.path, stage.vm_dir)
            if drift():  # a drift run: the pins lifted in every machine's copy of the step directory
                drift().prepare(vm, stage)
            if uses_docker:
                provide_images(vm)
        module.install_cluster(cluster)
        if drift():  # what each machine got, for the drift report
            for name, vm in cluster.vms.items():
                drift().record(vm, stage, machine_tag(stage, key, name))
        for vm in cluster.vms.values():
            vm.run(f"rm -rf {PRELOAD_DIR} {PRELOAD_DROPIN} /root/.cache/pip /root/.npm /var/cache/apt/archives/*.deb")
        with ThreadPoolExecutor(len(machines)) as pool:
            list(pool.map(lambda vm: vm.stop(), cluster.vms.values()))
        tags = {}
        shared_kept = None
        if cluster.shared_volume:
            shared_kept = f"hhw-stage-{stage_prefix(stage)}{key}-shared"
            docker("volume", "rm", "-f", shared_kept, check=False)
            create_volume(shared_kept, copy_of=cluster.shared_volume, keep=True)
        for name, vm in cluster.vms.items():
            labels = {"hhw.stage": f"{stage.number:02d}", "hhw.parent": releases.base_image(), "hhw.machine": name}
            if not volume_is_empty(vm.volumes[0]):
                kept = f"hhw-stage-{stage_prefix(stage)}{key}-{name}-docker"
                docker("volume", "rm", "-f", kept, check=False)
                create_volume(kept, copy_of=vm.volumes[0], keep=True)
                labels["hhw.docker-data"] = kept
            if shared_kept and name == machines[0]:
                labels[SHARED_LABEL] = shared_kept
            tags[name] = machine_tag(stage, key, name)
            vm.commit(tags[name], labels)
    finally:
        cluster.remove()
    print(f"[hhw] built the {stage.name} cluster in {time.monotonic() - started:.0f} s", file=sys.stderr)
    prune_cluster_images(stage, key)
    return tags


def prune_cluster_images(stage: Stage, key: str) -> None:
    """Remove this stage's saved machines of other keys (and their volumes), so the cache does not grow."""
    out = docker("image", "ls", STAGE_REPO, "--format", "{{.Repository}}:{{.Tag}}", check=False).stdout
    for ref in out.split():
        tag = ref.split(":", 1)[1]
        if tag.startswith(stage_prefix(stage)) and not tag.startswith(f"{stage_prefix(stage)}{key}-"):
            volumes = [docker_data_of(ref), shared_data_of(ref)]
            docker("image", "rm", ref, check=False)
            for volume in filter(None, volumes):
                docker("volume", "rm", "-f", volume, check=False)


def shared_data_of(image: str) -> str | None:
    """The saved volume behind the SHARED paths, labelled on the hub machine's image."""
    proc = docker("image", "inspect", "-f", '{{index .Config.Labels "' + SHARED_LABEL + '"}}', image, check=False)
    volume = proc.stdout.strip()
    return volume if proc.returncode == 0 and volume and volume != "<no value>" else None


def ensure_cluster_images(stage: Stage, module: ModuleType) -> dict[str, str]:
    """The saved image of every machine of the stage, built first when one is missing."""
    key = stage_key(stage)
    tags = {name: machine_tag(stage, key, name) for name in module.MACHINES}
    if all(image_id(t) for t in tags.values()):
        return tags
    LOCK_DIR.mkdir(parents=True, exist_ok=True)
    with open(LOCK_DIR / f"cluster-{stage_prefix(stage)}{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if all(image_id(t) for t in tags.values()):
            return tags
        return build_cluster_images(stage, module, key)


@contextmanager
def running_cluster(stage: Stage, module: ModuleType, *, keep: bool = False) -> Iterator[Cluster]:
    """A cluster booted from the stage's saved machines, ``start_cluster`` run; removed afterwards."""
    images = ensure_cluster_images(stage, module)
    shared: tuple[str, ...] = getattr(module, "SHARED", ())
    hub_image = images[module.MACHINES[0]]
    cluster = boot_cluster(stage, images, shared=shared, shared_copy_of=shared_data_of(hub_image))
    cluster.units = getattr(module, "UNITS", {})
    try:
        start: Callable[[Cluster], None] | None = getattr(module, "start_cluster", None)
        if start:
            start(cluster)
        yield cluster
    finally:
        if not keep:
            cluster.remove()


def nodes_seen_by(vm: ContainerVM, names: list[str]) -> dict[str, str]:
    """Each name as ``getent hosts`` resolves it on ``vm`` (a quick check that the machines see each other)."""
    out = {}
    for name in names:
        proc = subprocess.run(["docker", "exec", vm.name, "getent", "hosts", name], capture_output=True, text=True,
                              check=False)  # fmt: skip
        out[name] = proc.stdout.split()[0] if proc.stdout.strip() else ""
    return out
