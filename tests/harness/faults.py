"""Helpers of the fault catalogue (``pytest -m fault``): what a user reads, and proof that nothing was lost."""

from __future__ import annotations

import html
import json
import re
import shlex
from collections.abc import Iterator
from contextlib import contextmanager

import requests

from .machine import Machine

DATABASE = "/var/lib/jupyterhub/jupyterhub.sqlite"  # from stage 02 on (stage 01: /etc/jupyterhub/jupyterhub.sqlite)

_CHECK = """
import json, sqlite3, sys
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
print(json.dumps({"integrity": db.execute("pragma integrity_check").fetchone()[0],
                  "users": sorted(r[0] for r in db.execute("select name from users"))}))
"""


def database(machine: Machine, path: str = DATABASE) -> dict:
    """The hub's SQLite database as an operator checks it (read-only): ``integrity`` ("ok") and ``users``."""
    return json.loads(machine.output(f"python3 -c {shlex.quote(_CHECK)} {shlex.quote(path)}"))


def assert_database_intact(machine: Machine, users_before: list[str], path: str = DATABASE) -> None:
    """The database passes SQLite's integrity check and still holds every user it held before."""
    now = database(machine, path)
    assert now["integrity"] == "ok", f"{path}: integrity_check says {now['integrity']}"
    lost = set(users_before) - set(now["users"])
    assert not lost, f"users lost from {path}: {sorted(lost)}"


def page_text(response: requests.Response) -> str:
    """The words a person reads on a page: no scripts, no tags, whitespace collapsed."""
    body = re.sub(r"(?s)<(script|style|head)\b[^>]*>.*?</\1>", " ", response.text)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", body)).split())


def forged(value: str) -> str:
    """A signed cookie value with its signature changed (what someone without the cookie secret can make)."""
    head, _, signature = value.rpartition("|")
    return f"{head}|{'0' * len(signature)}" if signature != "0" * len(signature) else f"{head}|{'1' * len(signature)}"


@contextmanager
def saved_file(machine: Machine, path: str) -> Iterator[None]:
    """Keep a copy of ``path`` (mode and owner too) and put it back afterwards, whatever the test did to it."""
    machine.run(f"cp -p {path} {path}.hhw-fault-saved")
    try:
        yield
    finally:
        machine.run(f"mv {path}.hhw-fault-saved {path}")
