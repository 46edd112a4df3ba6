"""How a check of a reader's server fails: one plain sentence first, then the details.

The sentence says what is wrong, names the file, unit or setting, and points at the
chapter section with the fix; it is the first line of the failure, so it is what
pytest's short summary shows. No stack trace follows: the details do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NoReturn

import pytest

from .stages import REPO


@dataclass(frozen=True)
class Section:
    """A section of a chapter that has the fix, e.g. ``Section("03", "The configuration")``."""

    chapter: str
    title: str

    def __str__(self) -> str:
        return f'chapter {self.chapter}, section "{self.title}"'

    def exists(self) -> bool:
        """True when book/NN-*.md has a heading with this title (a repo test checks every one)."""
        for page in (REPO / "book").glob(f"{self.chapter}-*.md"):
            if re.search(rf"^#+ {re.escape(self.title)}\s*$", page.read_text(), re.M):
                return True
        return False


SECTIONS: set[Section] = set()


def section(chapter: str, title: str) -> Section:
    """A chapter section a sentence points at (remembered, so a repo test can check it exists)."""
    s = Section(chapter, title)
    SECTIONS.add(s)
    return s


def fault(sentence: str, details: str = "") -> NoReturn:
    """Fail the running check: ``sentence`` on the first line, ``details`` after a blank line."""
    text = " ".join(sentence.split())
    if details.strip():
        text += "\n\n" + details.strip()
    pytest.fail(text, pytrace=False)
