"""Stage images: a VM that finished stage N, saved and keyed by the files of stages 1..N.

``pytest steps/05`` boots the saved stage-05 image instead of redoing stages 01-04.
The key changes whenever the base image (the Debian release) or a file of any
stage up to N (tests excepted) changes.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import secrets
import subprocess
import sys
import time

from . import releases
from .machine import VM_INSTALL_ENV, ContainerVM, create_volume, docker, volume_is_empty
from .stages import REPO, Stage, stages_up_to

STAGE_REPO = "hhw/stage"
# Bump when the way stages are provisioned (not their files) changes.
PROVISION_VERSION = "2"  # 2: the install log is kept in the image
LOG_DIR = REPO / ".cache" / "logs"
LOCK_DIR = REPO / ".cache" / "locks"
INSTALL_LOGS = "/var/log/hhw-install"  # in a stage image: what each stage's install.sh printed


def install_answers() -> dict[str, str]:
    """What a reader gives an install.sh that asks (without a terminal, it reads them from its environment).

    Stage 07 asks for the GitHub OAuth app's client ID and secret, stage 09 for the OpenID
    Connect client's; the tests' GitHub stand-in and OpenID Connect provider later read them
    back from the hub's EnvironmentFile, as if registered so.
    """
    return {
        "GITHUB_CLIENT_ID": "hhw" + secrets.token_hex(10),
        "GITHUB_CLIENT_SECRET": secrets.token_hex(20),
        "OIDC_CLIENT_ID": "hub-" + secrets.token_hex(6),
        "OIDC_CLIENT_SECRET": secrets.token_urlsafe(32),
    }


def drift():
    """``scripts/latest`` in a drift run (``make test-latest`` sets HHW_LATEST: the newest releases instead of
    the pins, in images tagged apart), else None: a normal run never imports it."""
    if not os.environ.get("HHW_LATEST"):
        return None
    from scripts import latest

    return latest


def image_id(ref: str) -> str | None:
    """The image ID of ``ref``, or None when there is no such image."""
    proc = docker("image", "inspect", "-f", "{{.Id}}", ref, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None


def docker_data_of(image: str) -> str | None:
    """The cached /var/lib/docker volume that belongs with a stage image, if it has one."""
    proc = docker("image", "inspect", "-f", '{{index .Config.Labels "hhw.docker-data"}}', image, check=False)
    volume = proc.stdout.strip()
    return volume if proc.returncode == 0 and volume and volume != "<no value>" else None


def boot_stage(image: str, purpose: str) -> ContainerVM:
    """Boot a VM from a stage image, with a fresh copy of that stage's Docker data."""
    return ContainerVM.boot(image, purpose=purpose, docker_data=docker_data_of(image))


def stage_key(stage: Stage) -> str:
    """A short hash of the base image and every stage file up to ``stage``."""
    base = image_id(releases.base_image())
    if base is None:
        raise RuntimeError(f"no base image {releases.base_image()}: run scripts/build-base-images.sh (make test does)")
    h = hashlib.sha256(f"{PROVISION_VERSION}\0{base}\0".encode())
    for s in stages_up_to(stage):
        h.update(s.digest().encode())
    if drift():
        h.update(drift().key(stages_up_to(stage)).encode())
    return h.hexdigest()[:16]


def stage_prefix(stage: Stage) -> str:
    """The start of the tags of this stage's images on this run's Debian release: d13-05-."""
    return f"{'latest-' if drift() else ''}d{releases.current()}-{stage.number:02d}-"


def stage_tag(stage: Stage) -> str:
    return f"{STAGE_REPO}:{stage_prefix(stage)}{stage_key(stage)}"


def previous(stage: Stage) -> Stage | None:
    """The stage whose image this one is built on (none for a cluster stage: it starts from the base image)."""
    earlier = stages_up_to(stage)[:-1]
    return earlier[-1] if earlier else None


def ensure_stage_image(stage: Stage) -> str:
    """The tag of an image of a VM that finished ``stage``; built (with its predecessors) if missing.

    Two test runs that need the same missing image take turns: the second waits, then finds it.
    """
    tag = stage_tag(stage)
    if image_id(tag):
        return tag
    before = previous(stage)
    parent = ensure_stage_image(before) if before else releases.base_image()
    LOCK_DIR.mkdir(parents=True, exist_ok=True)
    with open(LOCK_DIR / f"{tag.replace('/', '_').replace(':', '_')}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if image_id(tag):
            return tag
        return build_stage_image(stage, tag, parent)


def build_stage_image(stage: Stage, tag: str, parent: str) -> str:
    """Run the stage's install.sh on a VM booted from ``parent`` and save the VM as ``tag``."""
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log = LOG_DIR / f"install-{'latest-' if drift() else ''}d{releases.current()}-{stage.name}.log"
    print(f"\n[hhw] building {tag}: {stage.name}/install.sh on {parent} (log: {log})", file=sys.stderr)
    started = time.monotonic()
    vm = boot_stage(parent, purpose=f"build{stage.number:02d}")
    try:
        vm.trust_host_ca()
        provide_images(vm)
        vm.copy_in(stage.path, stage.vm_dir)
        if drift():
            drift().prepare(vm, stage)
        env = {**VM_INSTALL_ENV, **install_answers()}
        proc = vm.run("bash install.sh", cwd=stage.vm_dir, env=env, timeout=1800, check=False)
        log.write_text(f"$ bash install.sh\n{proc.stdout}\n--- stderr\n{proc.stderr}")
        # Keep what install.sh printed in the VM itself: the chapter's "You should see" is checked against it.
        keep = subprocess.run(["docker", "exec", "-i", vm.name, "sh", "-c",
                               f"mkdir -p {INSTALL_LOGS} && cat > {INSTALL_LOGS}/{stage.name}.log"],
                              input=proc.stdout + proc.stderr, text=True, capture_output=True, check=False)  # fmt: skip
        if keep.returncode != 0:
            raise RuntimeError(f"could not keep the install log in the VM: {keep.stderr}")
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-40:])
            raise RuntimeError(f"{stage.name}/install.sh exited {proc.returncode} (full log: {log}):\n{tail}")
        if drift():
            drift().record(vm, stage, tag)
        # Leave no download caches in the saved image (they only make it bigger).
        vm.run(f"rm -rf {PRELOAD_DIR} {PRELOAD_DROPIN} /root/.cache/pip /root/.npm /var/cache/apt/archives/*.deb")
        vm.stop()
        labels = {"hhw.stage": f"{stage.number:02d}", "hhw.parent": parent}
        data = vm.volumes[0]
        if not volume_is_empty(data):
            # Keep the VM's Docker data (images built by install.sh) beside the image.
            kept = f"hhw-stage-{stage_prefix(stage)}{tag.rsplit('-', 1)[1]}-docker"
            docker("volume", "rm", "-f", kept, check=False)
            create_volume(kept, copy_of=data, keep=True)
            labels["hhw.docker-data"] = kept
        vm.commit(tag, labels)
    finally:
        vm.remove()
    print(f"[hhw] built {tag} in {time.monotonic() - started:.0f} s", file=sys.stderr)
    prune_stage_images(stage, keep=tag)
    return tag


def prune_stage_images(stage: Stage, keep: str) -> None:
    """Remove older images of the same stage (other keys), so the cache does not grow forever."""
    out = docker("image", "ls", STAGE_REPO, "--format", "{{.Repository}}:{{.Tag}}", check=False).stdout
    for ref in out.split():
        if ref != keep and ref.split(":", 1)[1].startswith(stage_prefix(stage)):
            data = docker_data_of(ref)
            docker("image", "rm", ref, check=False)
            if data:
                docker("volume", "rm", "-f", data, check=False)


# Images a reader's Docker would pull from a registry; the tests have none, so the
# harness hands them to the VM's Docker when it starts (a drop-in), standing in for `docker pull`.
PRELOAD_DIR = "/var/cache/hhw-images"
PRELOAD_DROPIN = "/etc/systemd/system/docker.service.d/hhw-preload.conf"


def provide_images(vm: ContainerVM) -> None:
    """Make debian:CODENAME-slim (what a reader's Dockerfile pulls) appear in the VM's Docker when it starts."""
    vm.run(f"mkdir -p {PRELOAD_DIR} {PRELOAD_DROPIN.rsplit('/', 1)[0]}")
    for ref in (releases.slim_image(),):
        if not image_id(ref):
            raise RuntimeError(f"no image {ref} on this machine: run scripts/build-base-images.sh")
        tar = f"{PRELOAD_DIR}/{ref.replace(':', '_').replace('/', '_')}.tar"
        save = subprocess.Popen(["docker", "save", ref], stdout=subprocess.PIPE)
        docker("exec", "-i", vm.name, "sh", "-c", f"cat > {tar}", stdin=save.stdout, timeout=600)
        save.wait()
    vm.run(
        f"cat > {PRELOAD_DROPIN} <<'EOF'\n[Service]\n"
        f"ExecStartPost=-/bin/sh -c 'for t in {PRELOAD_DIR}/*.tar; do docker load -i \"$t\"; done'\nEOF\n"
        "systemctl daemon-reload"
    )
