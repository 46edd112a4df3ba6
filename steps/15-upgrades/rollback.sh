#!/usr/bin/env bash
# Stage 15: go back to what ran before an upgrade, from the backup upgrade.sh made
# (the newest one, or the directory given as the first argument).
# Run as root from inside this directory.
set -euo pipefail

# [start:restore]
backup=${1:-$(cat /var/backups/hub-upgrade/latest)}
test -f "$backup/jupyterhub.sqlite" && test -x "$backup/venv/bin/jupyterhub"
systemctl stop jupyterhub
# The software: the whole venv as it was (the old Traefik binary is in it too).
rm -rf /opt/jupyterhub
cp -a "$backup/venv" /opt/jupyterhub
# The database as it was before upgrade-db: the old hub cannot read the new schema.
cp -a "$backup/jupyterhub.sqlite" /var/lib/jupyterhub/jupyterhub.sqlite
# The configuration and secrets, Traefik's files and certificate.
rm -rf /etc/jupyterhub /etc/traefik
cp -a "$backup/etc-jupyterhub" /etc/jupyterhub
cp -a "$backup/etc-traefik" /etc/traefik
cp -a "$backup/acme.json" /var/lib/traefik/acme.json
echo "restored from $backup"
# [end:restore]

# [start:start]
systemctl restart traefik
since=$(date '+%Y-%m-%d %H:%M:%S')
systemctl start jupyterhub
for _ in $(seq 90); do
    journalctl -u jupyterhub --since "$since" -o cat | grep -q 'JupyterHub is now running' && break
    sleep 1
done
journalctl -u jupyterhub --since "$since" -o cat | grep -E 'Running JupyterHub version|is now running' \
    | sed -E 's/^\[[A-Z] [0-9-]+ [0-9:.]+ /[... /'
# [end:start]
