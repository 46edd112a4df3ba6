"""Drift: every stage with the newest releases of its Python and npm packages (``make test-latest``).

The harness calls the three hooks below from ``tests/harness/images.py`` when ``HHW_LATEST`` is set:

- ``key(stages)``: what a drift run's stage image key adds (the run's date, the held pins), so drift
  images never share a tag with the pinned ones (their tags also start with ``latest-``);
- ``prepare(vm, stage)``: lift the pins in the VM's copy of the step directory (``unpin.rewrite``);
- ``record(vm, stage, tag)``: what got installed (pip, npm, the Python packages of the images the
  stage built), kept in ``.cache/latest/versions/`` for the runner's report.

``python -m scripts.latest`` (the runner) runs the stages and writes ``book/drift/latest.json``.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import subprocess
from pathlib import Path

from .unpin import enabled, holds, rewritable, rewrite, run_stamp, stage_pins

__all__ = ["enabled", "key", "prepare", "record", "VERSIONS"]

REPO = Path(__file__).resolve().parents[2]
VERSIONS = REPO / ".cache" / "latest" / "versions"
VENV = "/opt/jupyterhub"


def key(stages: list) -> str:
    """The part of a drift image's key that the pinned key lacks: the run, and which pins were held."""
    h = hashlib.sha256(f"latest\0{run_stamp()}\0".encode())
    held = holds()
    for stage in stages:
        names = sorted({p.name for p in stage_pins(stage.path, "13") + stage_pins(stage.path, "12")} & held)
        h.update(f"{stage.number}:{','.join(names)}\0".encode())
    return h.hexdigest()


def prepare(vm, stage) -> list[str]:
    """Rewrite the pins of the VM's copy of ``stage`` (already copied to ``stage.vm_dir``); return what was lifted."""
    lifted: list[str] = []
    for path in stage.files():
        rel = path.relative_to(stage.path).as_posix()
        if not rewritable(path):
            continue
        text, here = rewrite(path.read_text(), rel, holds())
        if not here:
            continue
        lifted += here
        target = f"{stage.vm_dir}/{rel}"
        proc = subprocess.run(["docker", "exec", "-i", vm.name, "sh", "-c", f"cat > {shlex.quote(target)}"],
                              input=text, text=True, capture_output=True, check=False)  # fmt: skip
        if proc.returncode != 0:
            raise RuntimeError(f"could not rewrite {target} in {vm.name}: {proc.stderr}")
    print(f"[hhw-latest] {stage.name}: newest releases of {' '.join(lifted) or 'nothing'}; held: "
          f"{' '.join(sorted(holds())) or 'none'}")  # fmt: skip
    return lifted


def _json(vm, command: str) -> object:
    proc = vm.run(command, check=False, timeout=180)
    try:
        return json.loads(proc.stdout) if proc.returncode == 0 and proc.stdout.strip() else None
    except json.JSONDecodeError:
        return None


def record(vm, stage, tag: str) -> Path:
    """What the stage's VM has installed after its install.sh, written to .cache/latest/versions/."""
    found: dict[str, object] = {"stage": stage.name, "tag": tag}
    pip = _json(vm, f"test -x {VENV}/bin/pip && {VENV}/bin/pip list --format=json --disable-pip-version-check")
    found["pip"] = {p["name"].lower(): p["version"] for p in pip or []}
    npm = _json(vm, "command -v npm >/dev/null && npm ls --global --depth=0 --json")
    found["npm"] = {n: d.get("version", "") for n, d in ((npm or {}).get("dependencies") or {}).items()}
    found["node"] = vm.run("node --version 2>/dev/null | sed 's/^v//'", check=False).stdout.strip()
    found["python"] = vm.run("python3 -c 'import platform; print(platform.python_version())'",
                             check=False).stdout.strip()  # fmt: skip
    images: dict[str, dict[str, str]] = {}
    refs = vm.run("command -v docker >/dev/null && docker images --format '{{.Repository}}:{{.Tag}}' | grep ^local/",
                  check=False, timeout=60).stdout.split()  # fmt: skip
    for ref in refs:
        listed = _json(vm, f"docker run --rm {shlex.quote(ref)} pip list --format=json --disable-pip-version-check")
        images[ref] = {p["name"].lower(): p["version"] for p in listed or []}
    found["images"] = images
    VERSIONS.mkdir(parents=True, exist_ok=True)
    out = VERSIONS / f"{tag.replace('/', '_').replace(':', '_')}.json"
    out.write_text(json.dumps(found, indent=1, sort_keys=True) + "\n")
    return out
