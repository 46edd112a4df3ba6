"""Screenshots for the book, taken by the tests in headless Chromium (Debian's package)."""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import quote, urlsplit

from .stages import REPO

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = REPO / ".cache" / "screenshots"
BOOK_IMAGES = REPO / "book" / "images"
# Quiet, offline-friendly Chromium (it runs as root in CI, hence --no-sandbox).
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


def take(url: str, name: str, *, login: tuple[str, str] | None = None, wait_for: str = "body",
         update_book: bool = False) -> Path:  # fmt: skip
    """Open ``url`` (after logging in through the form when ``login`` is given) and save NAME.png.

    The picture goes to .cache/screenshots/; the book's copy in book/images/ is written
    when missing or when ``update_book`` is set (pytest --update-screenshots).
    """
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 560})
            if login:
                # Log in with ?next= the page itself, so logging in does not start a server
                # (a /user/NAME/ page works too: the hub sends the browser on to it).
                parts = urlsplit(url)
                page.goto(f"{parts.scheme}://{parts.netloc}/hub/login?next={quote(parts.path)}")
                page.fill("#username_input", login[0])
                page.fill("#password_input", login[1])
                page.click("#login_submit")
                page.wait_for_load_state("networkidle")
            page.goto(url)
            page.wait_for_selector(wait_for, timeout=60_000)
            page.wait_for_load_state("networkidle")
            page.screenshot(path=str(path))
        finally:
            browser.close()
    book_copy = BOOK_IMAGES / path.name
    if update_book or not book_copy.exists():
        BOOK_IMAGES.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, book_copy)
    return path
