#!/usr/bin/env bash
# hub-backup: everything the hub needs to come back, in ONE archive (mode 0600, root's).
# Installed as /usr/local/sbin/hub-backup by install.sh (stage 14); run as root.
#
#   hub-backup [--keep N] [--dir DIR] [--name PREFIX]
#
# --keep N   keep the newest N archives in DIR, delete older ones (default: keep all)
# --dir DIR  where the archive goes (default /var/backups/jupyterhub)
# --name P   the archive's name starts with P (default: hub)
#
# The hub keeps running: its database is copied with SQLite's online backup, a consistent
# copy even while the hub writes. Users' files are copied as they are at that moment.
set -euo pipefail

dir=/var/backups/jupyterhub
keep=0
prefix=hub
while [ $# -gt 0 ]; do
    case "$1" in
        --keep) keep=$2; shift 2 ;;
        --dir) dir=$2; shift 2 ;;
        --name) prefix=$2; shift 2 ;;
        *) echo "hub-backup: unknown option $1 (see the top of $0)" >&2; exit 2 ;;
    esac
done
[ "$(id -u)" = 0 ] || { echo "hub-backup: run it as root" >&2; exit 1; }

# What is saved, besides the database and users' volumes: the configuration and every
# secret (cookie secret, the tokens, the EnvironmentFile with the auth_state key
# JUPYTERHUB_CRYPT_KEY and the OpenID Connect client's secret), Traefik's certificate
# and ACME account (acme.json), the hub's own code, the units, the firewall, and the
# step files this machine was built from (their directory is in /etc/default/hub-backup).
FILES=(
    /etc/jupyterhub
    /etc/traefik/traefik.toml
    /var/lib/traefik/acme.json
    /var/lib/jupyterhub-proxy/tls.toml
    /usr/local/lib/jupyterhub
    /etc/systemd/system/jupyterhub.service
    /etc/systemd/system/traefik.service
    /etc/systemd/system/hub-firewall.service
    /etc/hub-firewall.nft
    /etc/pam.d/jupyterhub
    /etc/docker/daemon.json
    /etc/prometheus/prometheus.yml
    /etc/prometheus/jupyterhub_token
    /etc/systemd/system/prometheus.service.d/jupyterhub.conf
    /usr/local/sbin/hub-servers
    /usr/local/sbin/hub-stop-server
    /usr/local/sbin/hub-backup
    /usr/local/sbin/hub-restore
    /etc/systemd/system/hub-backup.service
    /etc/systemd/system/hub-backup.timer
    /etc/default/hub-backup
)
STEPS_DIR=
[ -r /etc/default/hub-backup ] && . /etc/default/hub-backup
DB=/var/lib/jupyterhub/jupyterhub.sqlite
name=$(sed -n 's/^ *main = "\(.*\)"/\1/p' /etc/traefik/traefik.toml)

started=$(date +%s)
umask 077
install -d -m 0700 "$dir"
exec 9> "$dir/.lock"
flock -n 9 || { echo "hub-backup: another backup is running" >&2; exit 1; }
work=$(mktemp -d "$dir/.work.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir "$work/db" "$work/volumes"

# 1. The database: SQLite's online backup (the hub may write meanwhile; the copy is consistent).
[ -s "$DB" ] || { echo "hub-backup: no database at $DB: has the hub ever started?" >&2; exit 1; }
python3 - "$DB" "$work/db/jupyterhub.sqlite" <<'PY'
import sqlite3, sys
source = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True, timeout=60)
target = sqlite3.connect(sys.argv[2])
source.backup(target)
assert target.execute("pragma integrity_check").fetchone()[0] == "ok", "the copy of the database is damaged"
target.close()
PY

# 2. Files, with owners and modes (tar stores owners by name: uids may differ on another machine).
present=()
for f in "${FILES[@]}" ${STEPS_DIR:+"$STEPS_DIR"}; do [ -e "$f" ] && present+=("${f#/}"); done
tar -C / --create --file "$work/files.tar" "${present[@]}"

# 3. Users' volumes (their files), one tar each, owners by number (the containers' uids).
volumes=$(docker volume ls --quiet --filter name='^jupyterhub-user-' | sort)
for v in $volumes; do
    tar -C "$(docker volume inspect --format '{{.Mountpoint}}' "$v")" --numeric-owner \
        --create --file "$work/volumes/$v.tar" .
done

# 4. What this is (the restore checks it) and checksums of every part.
users=$(python3 -c 'import sqlite3, sys
print(" ".join(r[0] for r in sqlite3.connect(sys.argv[1]).execute("select name from users order by name")))' \
    "$work/db/jupyterhub.sqlite")
{
    echo "hub=$name"
    echo "created=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "host=$(hostname)"
    echo "jupyterhub=$(/opt/jupyterhub/bin/python -c 'from importlib.metadata import version; print(version("jupyterhub"))')"
    echo "users=$users"
    echo "volumes=$(echo $volumes)"
} > "$work/MANIFEST"
(cd "$work" && find . -type f ! -name SHA256SUMS -printf '%P\n' | sort | xargs sha256sum > SHA256SUMS)

# 5. One compressed archive, 0600 and root's, moved into place only when complete.
stamp=$(date -u +%Y%m%dT%H%M%SZ)
archive="$dir/$prefix-$stamp.tar.gz"
tar -C "$work" --create --gzip --file "$archive.part" MANIFEST SHA256SUMS db files.tar volumes
chmod 0600 "$archive.part"
mv "$archive.part" "$archive"
size=$(du -h "$archive" | cut -f1)
count_users=$(wc -w <<< "$users")
count_volumes=$(wc -w <<< "$volumes")
echo "hub-backup: $archive ($size; $count_users users, $count_volumes volumes) in $(( $(date +%s) - started )) s"

# 6. Retention: the newest $keep archives of this name stay.
if [ "$keep" -gt 0 ]; then
    ls -1t "$dir/$prefix"-*.tar.gz | tail -n +"$((keep + 1))" | while read -r old; do
        rm -f "$old" && echo "hub-backup: removed $old (older than the newest $keep)"
    done
fi
