"""Secrets: where they may live (files only root, or one service, can read; never in steps/) and where
they must never show up (the journal, Traefik's access log, the containers' logs).

The tests tell this module every secret they use (``remember_secret``): the passwords they set or type,
the API tokens they create, the OAuth codes and tokens and the client secrets the stand-ins see. The last
test of each stage greps the machine's logs for each of them, and for the machine's own secrets (the
files in /etc/jupyterhub/secrets, the secret values of the hub's EnvironmentFile).
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from .machine import Machine

MIN_LENGTH = 12  # shorter values could match by chance; every secret the tests make is longer
_SEEN: dict[str, set[str]] = {}


def remember_secret(kind: str, value: str | None) -> None:
    """Remember a secret the tests used (``kind``: "password", "API token", "OAuth code", ...)."""
    if value and len(value) >= MIN_LENGTH and "\n" not in value:
        _SEEN.setdefault(kind, set()).add(value)


def remember_code(location: str | None) -> None:
    """Remember the OAuth code in a redirect's Location (to a client's callback), if there is one."""
    for value in parse_qs(urlsplit(location or "").query).get("code", []):
        remember_secret("OAuth code", value)


def remembered() -> dict[str, set[str]]:
    """Every secret remembered in this test session, by kind."""
    return {kind: set(values) for kind, values in _SEEN.items()}


# -- secret files on the machine ------------------------------------------------------


@dataclass(frozen=True)
class SecretFile:
    """A file (or directory) that holds secrets: who must own it, its mode, and why that mode."""

    path: str
    mode: str
    owner: str
    group: str
    since: int  # the stage whose install.sh writes it
    why: str = "root's alone: only the hub (root) reads it"


SECRETS = "/etc/jupyterhub/secrets"
SECRET_FILES = (
    SecretFile(SECRETS, "700", "root", "root", 2, "the directory of the hub's secrets: root's alone"),
    SecretFile(f"{SECRETS}/cookie_secret", "600", "root", "root", 2),
    SecretFile(f"{SECRETS}/proxy_auth_token", "600", "root", "root", 2),
    SecretFile(f"{SECRETS}/traefik_api_password", "600", "root", "root", 4),
    SecretFile(f"{SECRETS}/jupyterhub.env", "600", "root", "root", 5,
               "systemd (root) reads it for the hub: Traefik's API password, later the OAuth client secret"),
    SecretFile("/var/lib/jupyterhub", "700", "root", "root", 2,
               "the hub's database: hashed tokens, and (stage 09) encrypted auth_state"),
    # From stage 05 the routes (with the bcrypt hash of Traefik's API password) are Traefik's to read;
    # in stage 04 they are in /var/lib/jupyterhub (0700), as Traefik runs as root, started by the hub.
    SecretFile("/var/lib/jupyterhub-proxy", "2750", "root", "traefik", 5,
               "Traefik (group traefik) reads the routes, which hold the bcrypt hash of its API password"),
    SecretFile("/var/lib/jupyterhub-proxy/rules.toml", "640", "root", "traefik", 5,
               "Traefik (group traefik) must read the routes and the hash of its API password; nobody else"),
    SecretFile("/var/lib/traefik", "700", "traefik", "traefik", 6, "Traefik's state: acme.json"),
    SecretFile("/var/lib/traefik/acme.json", "600", "traefik", "traefik", 6,
               "the certificate's private key and the ACME account key: Traefik (its user) reads and writes it"),
)  # fmt: skip


def secret_file_problems(machine: Machine, stage_number: int) -> list[str]:
    """Each secret file of the stages up to ``stage_number`` with another mode or owner, in one sentence each."""
    expected = [f for f in SECRET_FILES if f.since <= stage_number]
    paths = " ".join(shlex.quote(f.path) for f in expected)
    out = machine.run(f"stat -c '%n %a %U %G' {paths}", check=False).stdout
    seen = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.strip()}
    problems = []
    for f in expected:
        if f.path not in seen:
            problems.append(f"{f.path} is missing (stage {f.since:02d}'s install.sh makes it)")
            continue
        mode, owner, group = seen[f.path]
        if (mode, owner, group) != (f.mode, f.owner, f.group):
            problems.append(f"{f.path} is {mode} {owner}:{group}, should be {f.mode} {f.owner}:{f.group} ({f.why})")
    return problems


# -- secrets in logs ------------------------------------------------------------------

ACCESS_LOG = "/var/log/traefik/access.log"
PLACES = {
    "the journal": "journalctl --no-pager",
    "Traefik's access log": f"test ! -f {ACCESS_LOG} || cat {ACCESS_LOG}",
    "the containers' logs": "command -v docker >/dev/null || exit 0; "
    "for c in $(docker ps -aq); do docker logs $c 2>&1; done",
}
# The machine's own secrets, by kind: files of /etc/jupyterhub/secrets, secret values of the EnvironmentFile.
MACHINE_SECRETS = rf"""
cd {SECRETS} 2>/dev/null || exit 0
for f in cookie_secret proxy_auth_token traefik_api_password; do
    [ -s "$f" ] && awk 'length >= {MIN_LENGTH}' "$f" > "$1/machine: $f"
done
[ -s jupyterhub.env ] && grep -E '^[A-Z_]*(SECRET|PASSWORD|TOKEN|KEY)[A-Z_]*=' jupyterhub.env |
    while IFS== read -r key value; do
        [ ${{#value}} -ge {MIN_LENGTH} ] && printf '%s\n' "$value" > "$1/machine: $key in jupyterhub.env"
    done
true
"""


def slug(kind: str) -> str:
    return re.sub(r"[^A-Za-z0-9:. -]", "_", kind)


# Leaks that are upstream's, each with the reason it is tolerated: (kind, pattern of the masked line, why).
KNOWN_LEAKS = (
    ("test: OAuth code",
     r"JupyterHub web:\d+\] (4\d\d|Uncaught exception) GET /hub/oauth_callback\?code=\[test: OAuth code\]"
     r"|HTTPServerRequest\(.*uri='/hub/oauth_callback\?code=\[test: OAuth code\]",
     "Tornado logs the request line of a refused or failed OAuth callback (400: a forged or missing state; "
     "403: a wrong client secret; 500: an uncaught exception in the callback, its request repeated on the "
     "next line) unmasked, where JupyterHub's own request log masks code= and state=; only the holder of "
     "the client secret can exchange the code, once, within minutes"),
)  # fmt: skip

# Run on the machine: for each kind file in the work directory, the lines of .log that hold one of its values,
# counted, with the first three shown (each value replaced by [KIND]), as JSON; lines that match a known
# leak of their kind (.known) are counted apart.
COUNT = r"""
import json, os, re, sys
work = sys.argv[1]
log = open(os.path.join(work, ".log"), errors="replace").read().splitlines()
known = json.load(open(os.path.join(work, ".known")))
found = {}
for kind in sorted(os.listdir(work)):
    if kind.startswith("."):
        continue
    values = [v for v in open(os.path.join(work, kind)).read().splitlines() if v]
    hits, tolerated = [], 0
    for line in log:
        if any(v in line for v in values):
            for v in values:
                line = line.replace(v, "[" + kind + "]")
            if any(k == kind and re.search(pattern, line) for k, pattern in known):
                tolerated += 1
            else:
                hits.append(line[:500])
    if hits or tolerated:
        found[kind] = {"lines": len(hits), "shown": hits[:3], "known": tolerated}
print(json.dumps(found))
"""


def leaks(machine: Machine, extra: dict[str, set[str]] | None = None) -> dict[str, dict[str, dict]]:
    """For every secret kind (the tests' and the machine's) found in a place: how many lines hold one, and the
    first three of them with each secret replaced by its kind. No secret's value leaves the machine.
    """
    kinds = remembered()
    for kind, values in (extra or {}).items():
        kinds.setdefault(kind, set()).update(values)
    work = machine.output("umask 077 && mktemp -d /root/hhw-secrets-audit.XXXXXX")
    try:
        for kind, values in kinds.items():
            machine.run(f"umask 077 && cat > {shlex.quote(f'{work}/test: {slug(kind)}')}",
                        input="\n".join(sorted(values)) + "\n")  # fmt: skip
        machine.run(f"bash -c {shlex.quote(MACHINE_SECRETS)} audit {work}")
        machine.run(f"cat > {work}/.known", input=json.dumps([[kind, pattern] for kind, pattern, _ in KNOWN_LEAKS]))
        found: dict[str, dict[str, dict]] = {}
        for where, command in PLACES.items():
            machine.run(f"umask 077 && ({command}) > {work}/.log 2>/dev/null", check=False, timeout=300)
            out = machine.output(f"python3 - {work}", input=COUNT, timeout=300)
            for kind, hit in json.loads(out).items():
                found.setdefault(kind, {})[where] = hit
        return found
    finally:
        machine.run(f"rm -rf {shlex.quote(work)}", check=False)


def assert_no_leaks(machine: Machine, extra: dict[str, set[str]] | None = None) -> dict[str, int]:
    """Fail naming each kind of secret found and where (with the lines, the secrets masked); return how many
    secrets of each kind the tests looked for."""
    found = leaks(machine, extra)
    leaked = {kind: {w: hit for w, hit in places.items() if hit["lines"]} for kind, places in found.items()}
    leaked = {kind: places for kind, places in leaked.items() if places}
    if leaked:
        said = "; ".join(kind + " in " + ", ".join(f"{w} ({hit['lines']} lines)" for w, hit in places.items())
                         for kind, places in sorted(leaked.items()))  # fmt: skip
        shown = "\n".join(f"--- {kind}, {w}:\n" + "\n".join(hit["shown"])
                          for kind, places in sorted(leaked.items()) for w, hit in places.items())  # fmt: skip
        raise AssertionError(f"secrets leaked into logs: {said}\n{shown}")
    looked: dict = {f"test: {k}": len(v) for k, v in remembered().items()}
    for kind, values in (extra or {}).items():
        looked[f"test: {kind}"] = looked.get(f"test: {kind}", 0) + len(values)
    known = {f"{kind} in {w}": hit["known"] for kind, places in found.items() for w, hit in places.items()}
    if known:
        looked["known upstream leaks (lines)"] = known
    return looked


# -- secrets in the repository --------------------------------------------------------

# Names of files that hold secrets on a hub: never part of a step directory.
SECRET_FILE_NAMES = {"cookie_secret", "jupyterhub_cookie_secret", "proxy_auth_token", "traefik_api_password",
                     "jupyterhub.env", "acme.json", "jupyterhub.sqlite", "id_rsa", "id_ed25519"}  # fmt: skip
SECRET_SUFFIXES = {".pem", ".key", ".p12", ".pfx", ".sqlite"}
SECRET_PATTERNS = {
    "a private key": re.compile(r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----"),
    "a bcrypt hash": re.compile(r"\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}"),
    "a GitHub token": re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9_]{40,})"),
    # A secret-looking name given a literal value (not read from a file or the environment).
    "a secret in a setting": re.compile(
        r"""(?ix)\b[\w.]*(?:secret|password|passwd|token|crypt_key|api_key)\w*(?<!file)(?<!path)(?<!url)(?<!type)
            \s*=\s*(?:b?["'][A-Za-z0-9+=_-]{8,}["']|(?=[A-Za-z0-9+/_-]{16,}\s*$)[A-Za-z0-9+/_-]+)"""
    ),
    "a 256-bit hex key": re.compile(r"(?<![0-9a-fA-F:])[0-9a-f]{64}(?![0-9a-fA-F])"),
}


def secrets_in_tree(root: Path) -> list[str]:
    """Every file under ``root`` that is, or holds, a secret: "path: what" for each."""
    found = []
    for path in sorted(root.rglob("*")):
        if not path.is_file() or "__pycache__" in path.parts or ".pytest_cache" in path.parts:
            continue
        rel = path.relative_to(root.parent)
        if path.name in SECRET_FILE_NAMES or path.suffix in SECRET_SUFFIXES:
            found.append(f"{rel}: a secret file by its name")
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        for n, line in enumerate(text.splitlines(), 1):
            for what, pattern in SECRET_PATTERNS.items():
                if pattern.search(line) and "sha256:" not in line:
                    found.append(f"{rel}:{n}: {what}")
    return found
