"""Screenshots for the book, taken by the tests in headless Chromium (Debian's package)."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
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


@contextmanager
def page(*, resolve: dict[str, int] | None = None, insecure: bool = False) -> Iterator:
    """A Playwright page in headless Chromium, for a test that clicks through a flow itself.

    ``resolve`` maps a host name to a port on this machine's loopback (hub.example.org ->
    the test VM's port 443), as DNS would send a reader's browser to their hub.
    ``insecure`` accepts the test CAs' certificates (Pebble's, the GitHub stand-in's).
    """
    from playwright.sync_api import sync_playwright

    args = list(CHROMIUM_ARGS)
    if resolve:
        rules = ", ".join(f"MAP {name}:443 127.0.0.1:{port}" for name, port in resolve.items())
        args.append(f"--host-resolver-rules={rules}")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=args)
        try:
            context = browser.new_context(viewport={"width": 1100, "height": 560}, ignore_https_errors=insecure)
            yield context.new_page()
        finally:
            browser.close()


def save(pw_page, name: str, *, update_book: bool = False) -> Path:
    """Save a screenshot of ``pw_page`` as NAME.png (and in book/images/, as ``take`` does)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    pw_page.screenshot(path=str(path))
    book_copy = BOOK_IMAGES / path.name
    if update_book or not book_copy.exists():
        BOOK_IMAGES.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, book_copy)
    return path


def oauth_round_trip(public, person, *, button: str, provider_url: str, login_field: str, shots: tuple[str, str, str],
                     update_book: bool = False) -> float:  # fmt: skip
    """Log ``person`` in through an OAuth provider in headless Chromium, as a reader's browser does.

    The hub's login page, its button (``button``), the provider's sign-in form (its login field
    ``login_field``, at a URL under ``provider_url``), back to the hub, the options form with its
    defaults, JupyterLab. Saves three screenshots (``shots``: the hub's login page, the provider's
    form, JupyterLab); returns the seconds from opening the login page until back on the hub.
    """
    started = time.monotonic()
    with page(resolve={public.name: public.https_port}, insecure=True) as pw_page:
        pw_page.goto(f"https://{public.name}/hub/login")
        save(pw_page, shots[0], update_book=update_book)
        pw_page.click(f"text={button}")
        pw_page.wait_for_selector(login_field)
        assert pw_page.url.startswith(provider_url), f"the button led to {pw_page.url}, not {provider_url}"
        save(pw_page, shots[1], update_book=update_book)
        pw_page.fill(login_field, person.login)
        pw_page.fill("#password", person.password)
        pw_page.click("button[type=submit]")
        pw_page.wait_for_url(f"https://{public.name}/hub/**")
        seconds = time.monotonic() - started
        if "/hub/spawn" in pw_page.url:  # the options form: start the defaults
            pw_page.click("input[type=submit], button[type=submit]")
        pw_page.wait_for_url(f"https://{public.name}/user/{person.name}/lab**", timeout=120_000)
        pw_page.wait_for_selector("#jp-main-dock-panel", timeout=60_000)
        pw_page.wait_for_load_state("networkidle")
        save(pw_page, shots[2], update_book=update_book)
    return seconds
