"""The book builds strictly and offline, and shows the step files verbatim."""

from __future__ import annotations

import html
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness.stages import REPO, STEPS


def text_of(page: Path) -> str:
    """The visible text of an HTML page (tags dropped, entities decoded)."""
    return html.unescape(re.sub(r"<[^>]+>", "", page.read_text()))


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("book")
    jb = Path(sys.executable).parent / "jupyter-book"
    proc = subprocess.run(
        [str(jb), "build", str(REPO), "--path-output", str(out), "--warningiserror", "--keep-going"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, f"strict book build failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return out / "_build" / "html"


def test_book_builds_with_an_index(built):
    assert (built / "index.html").exists()
    assert (built / "book" / "intro.html").exists()


def test_stage_02_config_is_shown_verbatim(built):
    page = text_of(built / "book" / "02-configuration.html")
    config = (STEPS / "02-configuration" / "jupyterhub_config.py").read_text()
    missing = [line for line in config.splitlines() if line.strip() and line not in page]
    assert not missing, f"lines of the stage 02 config not in its chapter: {missing}"


def test_diffs_name_repo_paths_not_build_paths(built):
    page = text_of(built / "book" / "02-configuration.html")
    assert "--- steps/01-install/jupyterhub_config.py" in page
    assert "+++ steps/02-configuration/jupyterhub_config.py" in page
    assert str(REPO) not in page


def test_screenshots_are_in_the_built_book(built):
    for name in ("01-login-page.png", "02-admin-page.png"):
        assert list(built.rglob(name)), f"{name} missing from the built book"


def test_chapters_link_the_layout_css(built):
    """book/_static/layout.css (wider content column, wrapped code) is copied and linked."""
    page = (built / "book" / "05-systemd.html").read_text()
    assert re.search(r'<link [^>]*href="\.\./_static/layout\.css(\?[^"]*)?"', page), "layout.css not linked"
    shipped = (built / "_static" / "layout.css").read_text()
    assert shipped == (REPO / "book" / "_static" / "layout.css").read_text()
