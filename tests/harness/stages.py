"""Stages: the directories steps/NN-name/ and what belongs to each."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
STEPS = REPO / "steps"
STAGE_DIR = re.compile(r"^(\d\d)-[a-z0-9-]+$")

# Files in a step directory that the reader does not copy to run the stage.
NOT_STAGE_FILES = re.compile(r"(^|/)(test_[^/]*\.py|conftest\.py|__pycache__|\.pytest_cache)(/|$)|\.pyc$")


@dataclass(frozen=True)
class Stage:
    """One stage of the book: its number, its directory, and where it sits on a VM."""

    number: int
    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def chapter(self) -> Path:
        """The book's chapter of this stage: book/NN-*.md."""
        found = sorted((REPO / "book").glob(f"{self.number:02d}-*.md"))
        assert len(found) == 1, f"expected one chapter book/{self.number:02d}-*.md, found {found}"
        return found[0]

    @property
    def vm_dir(self) -> str:
        """Where the step directory is copied on a test VM (the reader's copy)."""
        return f"/root/hhw/steps/{self.name}"

    def latest(self, name: str) -> Path | None:
        """The newest version of a step file (e.g. jupyterhub_config.py) in this stage or an earlier one."""
        for s in reversed(stages_up_to(self)):
            if (s.path / name).is_file():
                return s.path / name
        return None

    @property
    def is_cluster(self) -> bool:
        """True for a stage that runs on several machines (12 Slurm, 13 Swarm): it has an install-node.sh.

        Its VMs boot from the base image and are provisioned by its own scripts; it is a side branch,
        so the single-machine stages after it (14 on) do not go through it.
        """
        return (self.path / "install-node.sh").is_file()

    @property
    def serves_https(self) -> bool:
        """True from the stage on that serves the hub over HTTPS on its public name (stage 06)."""
        config = self.latest("jupyterhub_config.py")
        return bool(config and 'bind_url = "https://' in config.read_text())

    @property
    def login(self) -> str:
        """How people log in at this stage: "oidc" (an OpenID Connect provider), "github" (GitHub's OAuth)
        or "pam" (a password form)."""
        config = self.latest("jupyterhub_config.py")
        text = config.read_text() if config else ""
        if "c.GenericOAuthenticator." in text:
            return "oidc"
        return "github" if 'authenticator_class = "github"' in text else "pam"

    def files(self) -> list[Path]:
        """The files a reader copies: everything but tests and caches."""
        return sorted(
            p
            for p in self.path.rglob("*")
            if p.is_file() and not NOT_STAGE_FILES.search(p.relative_to(self.path).as_posix())
        )

    def digest(self) -> str:
        """A hash of this stage's files (names and contents)."""
        h = hashlib.sha256()
        for p in self.files():
            h.update(p.relative_to(STEPS).as_posix().encode() + b"\0")
            h.update(p.read_bytes() + b"\0")
            h.update(b"x" if p.stat().st_mode & 0o111 else b"-")
        return h.hexdigest()


def all_stages() -> list[Stage]:
    """Every stage, in book order."""
    found = []
    for p in sorted(STEPS.iterdir()):
        m = STAGE_DIR.match(p.name)
        if p.is_dir() and m:
            found.append(Stage(int(m.group(1)), p))
    return found


def stage_of(path: Path) -> Stage:
    """The stage a test file belongs to."""
    for stage in all_stages():
        if stage.path in path.resolve().parents or stage.path == path.resolve():
            return stage
    raise LookupError(f"{path} is not inside a steps/NN-name/ directory")


def stages_up_to(stage: Stage) -> list[Stage]:
    """The stages a VM goes through to reach ``stage``, in order, ``stage`` last.

    A cluster stage (12, 13) starts from the base image, so it goes through itself only; a
    single-machine stage goes through every earlier single-machine stage and no cluster stage.
    """
    if stage.is_cluster:
        return [stage]
    return [s for s in all_stages() if s.number <= stage.number and not s.is_cluster]
