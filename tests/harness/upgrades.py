"""Stage 15's "old machine": the stage's VM with older versions installed, kept as an image.

The book has always pinned one set of versions, so the upgrade tests make the machine they
upgrade from: the stage image, the pins of ``previous-versions.txt`` installed into the hub's
venv, and no database (the old hub makes a new one at its first start). Installing takes a
minute; the image is kept, keyed by the stage image and that file, so warm runs boot it at once.
"""

from __future__ import annotations

import fcntl
import hashlib
import sys
import time

from . import releases
from .images import LOCK_DIR, STAGE_REPO, docker_data_of, drift, ensure_stage_image, image_id
from .machine import VM_INSTALL_ENV, ContainerVM, docker
from .stages import Stage

PREVIOUS = "previous-versions.txt"
RECIPE = "2"  # bump when build() changes


def old_machine_image(stage: Stage) -> str:
    """The tag of the old machine's image (built from the stage image when missing)."""
    base = ensure_stage_image(stage)
    h = hashlib.sha256(f"{RECIPE}\0{image_id(base)}\0".encode() + (stage.path / PREVIOUS).read_bytes())
    # A drift run's old machine (built on its latest- stage image) is tagged apart, so that making it does not
    # remove the pinned one below (nor the pinned run the drift one).
    prefix = f"{'latest-' if drift() else ''}d{releases.current()}-{stage.number:02d}old-"
    tag = f"{STAGE_REPO}:{prefix}{h.hexdigest()[:16]}"
    if image_id(tag):
        return tag
    LOCK_DIR.mkdir(parents=True, exist_ok=True)
    with open(LOCK_DIR / f"{tag.replace('/', '_').replace(':', '_')}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not image_id(tag):
            build(stage, base, tag)
    out = docker("image", "ls", STAGE_REPO, "--format", "{{.Repository}}:{{.Tag}}", check=False).stdout
    for ref in out.split():
        if ref != tag and ref.split(":", 1)[1].startswith(prefix):
            docker("image", "rm", ref, check=False)
    return tag


def build(stage: Stage, base: str, tag: str) -> None:
    print(f"\n[hhw] building {tag}: {PREVIOUS} installed on {base}", file=sys.stderr)
    started = time.monotonic()
    # No copy of the stage's Docker data (images only): pip needs none, and the image keeps pointing at it.
    vm = ContainerVM.boot(base, purpose=f"build{stage.number:02d}old")
    try:
        vm.trust_host_ca()
        vm.run(f"/opt/jupyterhub/bin/pip install --quiet --disable-pip-version-check -r {PREVIOUS}",
               cwd=stage.vm_dir, env=VM_INSTALL_ENV, timeout=900)  # fmt: skip
        # The new versions' wheels in pip's cache, as a reader's pip would download them: the tests time the
        # upgrade, not the test machine's network.
        vm.run("/opt/jupyterhub/bin/pip download --quiet --disable-pip-version-check -d /tmp/wheels -r versions.txt "
               "&& rm -rf /tmp/wheels", cwd=stage.vm_dir, env=VM_INSTALL_ENV, timeout=900)  # fmt: skip
        # No database and no routes file: the old hub makes its own at its next start (the boot of this image),
        # as on a machine that never ran the new versions.
        vm.run("systemctl stop jupyterhub && rm -f /var/lib/jupyterhub/jupyterhub.sqlite* "
               "/var/lib/jupyterhub-proxy/rules.toml")  # fmt: skip
        vm.stop()
        labels = {"hhw.stage": f"{stage.number:02d}old", "hhw.parent": base}
        data = docker_data_of(base)
        if data:
            labels["hhw.docker-data"] = data
        vm.commit(tag, labels)
    finally:
        vm.remove()
    print(f"[hhw] built {tag} in {time.monotonic() - started:.0f} s", file=sys.stderr)
