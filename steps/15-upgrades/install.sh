#!/usr/bin/env bash
# Stage 15: upgrades. Nothing new runs: this stage brings two scripts (upgrade.sh,
# rollback.sh, run from this directory) and the list of the book's pins (versions.txt).
# Run as root from inside this directory, on a machine that finished stage 14 (or 11).
set -euo pipefail

# [start:now]
# Where upgrade.sh keeps its backups: root's alone.
install -d -m 0700 /var/backups/hub-upgrade
stat -c '%a %U %n' /var/backups/hub-upgrade
# What the hub's venv holds now, against the pins of versions.txt.
/opt/jupyterhub/bin/python - versions.txt <<'PY'
import sys
from importlib.metadata import version

for line in open(sys.argv[1]):
    line = line.split("#")[0].strip()
    if line:
        name, pin = line.split("==")
        now = version(name)
        print(f"{name:26} {now:8} {'= the pin' if now == pin else 'pin: ' + pin}")
PY
# [end:now]
