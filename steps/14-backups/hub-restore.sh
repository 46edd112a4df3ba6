#!/usr/bin/env bash
# hub-restore: put a hub-backup archive back, on this machine or on a new one built by the book.
# Installed as /usr/local/sbin/hub-restore by install.sh (stage 14); run as root, with the hub
# stopped:
#
#   systemctl stop jupyterhub traefik
#   hub-restore /var/backups/jupyterhub/hub-20261124T031500Z.tar.gz
#
# Nothing changes until the whole archive has been read and checked. Before it changes
# anything, it saves this machine's own state with hub-backup (as before-restore-*.tar.gz).
set -euo pipefail

fail() { echo "hub-restore: $*" >&2; exit 1; }
[ $# -eq 1 ] || fail "usage: hub-restore ARCHIVE"
archive=$1
[ "$(id -u)" = 0 ] || fail "run it as root"
[ -f "$archive" ] || fail "$archive: no such file"

# 1. The hub and the proxy must be stopped: the database and acme.json are replaced.
for unit in jupyterhub traefik; do
    if systemctl is-active --quiet "$unit"; then
        fail "$unit is running: stop it first (systemctl stop jupyterhub traefik). Nothing was changed."
    fi
done

# 2. Read and check the whole archive before touching anything.
work=$(mktemp -d /var/tmp/hub-restore.XXXXXX)
trap 'rm -rf "$work"' EXIT
chmod 0700 "$work"
if ! err=$(tar -C "$work" --extract --gzip --file "$archive" 2>&1); then
    fail "$archive is damaged or not a hub backup ($(echo "$err" | grep -m 1 .)). Nothing was changed."
fi
[ -f "$work/MANIFEST" ] && [ -f "$work/SHA256SUMS" ] || fail "$archive is not a hub backup (no MANIFEST). Nothing was changed."
if ! bad=$(cd "$work" && sha256sum --check --quiet SHA256SUMS 2>&1); then
    fail "$archive is damaged: $(echo "$bad" | head -n 1). Nothing was changed."
fi
hub=$(sed -n 's/^hub=//p' "$work/MANIFEST")
created=$(sed -n 's/^created=//p' "$work/MANIFEST")
here=$(sed -n 's/^ *main = "\(.*\)"/\1/p' /etc/traefik/traefik.toml)
if [ "$hub" != "$here" ]; then
    fail "$archive is a backup of $hub, and this machine serves $here (/etc/traefik/traefik.toml). Nothing was changed."
fi
volumes=$(sed -n 's/^volumes=//p' "$work/MANIFEST")
for v in $volumes; do
    if [ -n "$(docker ps --quiet --filter volume="$v")" ]; then
        fail "a container uses the volume $v: stop users' servers first (docker ps). Nothing was changed."
    fi
done

# 3. This machine's own state first, in case this was the wrong archive after all.
/usr/local/sbin/hub-backup --name before-restore | sed 's/^hub-backup: /hub-restore: this machine before the restore: /'

# 4. Files (owners by name, modes as they were), the database, users' volumes.
tar -C / --extract --preserve-permissions --same-owner --file "$work/files.tar"
install -m 0640 -o root -g root "$work/db/jupyterhub.sqlite" /var/lib/jupyterhub/jupyterhub.sqlite.new
mv /var/lib/jupyterhub/jupyterhub.sqlite.new /var/lib/jupyterhub/jupyterhub.sqlite
for v in $volumes; do
    docker volume create "$v" > /dev/null
    target=$(docker volume inspect --format '{{.Mountpoint}}' "$v")
    find "$target" -mindepth 1 -delete
    tar -C "$target" --extract --numeric-owner --same-owner --preserve-permissions --file "$work/volumes/$v.tar"
done
# The routes file holds the hash of Traefik's API password, the old one: the hub writes it anew
# at its next start (with the restored password) only if it is gone.
rm -f /var/lib/jupyterhub-proxy/rules.toml
systemctl daemon-reload
systemctl try-restart prometheus hub-firewall
echo "hub-restore: $hub as of $created: $(sed -n 's/^users=//p' "$work/MANIFEST" | wc -w) users, $(wc -w <<< "$volumes") volumes"
echo "hub-restore: now start it: systemctl start traefik jupyterhub"
