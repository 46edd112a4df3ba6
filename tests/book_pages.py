"""What the book's chapters include: parsed from their MyST source."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

from tests.harness.stages import REPO, all_stages

BOOK = REPO / "book"
INCLUDE = re.compile(r"^```\{literalinclude\}\s+(\S+)", re.M)
DIFF = re.compile(r"^:diff:\s+(\S+)", re.M)
IMAGE = re.compile(r"^```\{image\}\s+(\S+)|!\[[^\]]*\]\(([^)\s]+)\)", re.M)


def chapter_of(stage_number: int) -> Path:
    """book/NN-*.md for stage NN."""
    return next(s for s in all_stages() if s.number == stage_number).chapter


def included(page: Path) -> set[Path]:
    """Files a page shows with literalinclude (not the :diff: bases)."""
    return {(page.parent / p).resolve() for p in INCLUDE.findall(page.read_text())}


def referenced(page: Path) -> set[Path]:
    """Every file a page points at: includes, diff bases, images."""
    text = page.read_text()
    paths = set(INCLUDE.findall(text)) | set(DIFF.findall(text))
    paths |= {a or b for a, b in IMAGE.findall(text) if not (a or b).startswith("http")}
    return {(page.parent / p).resolve() for p in paths}


def load_extension(path: Path) -> ModuleType:
    """A Sphinx extension of the book (book/_ext/NAME.py), loaded as a module, to ask it what it draws."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec and spec.loader, path
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def typed_prose(text: str, role: re.Pattern[str]) -> str:
    """A page without code blocks, directives, inline code, its results ``role`` and link targets: what is
    typed in (so a test can check that no figure is)."""
    text = re.sub(r"^```.*?^```\s*$", "", text, flags=re.S | re.M)
    text = role.sub("", text)
    text = re.sub(r"\{\w+\}`[^`]*`", "", text)  # {doc}`...`
    text = re.sub(r"`[^`]*`", "", text)
    return re.sub(r"\]\([^)]*\)", "]", text)
