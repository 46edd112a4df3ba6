#!/usr/bin/env bash
# Take the hub off this machine: everything stages 01 to 14 put here, users' files and the
# backups in /var/backups/jupyterhub included. Copy a backup off the machine first.
# Run as root from inside this directory: `bash teardown.sh` says what it would remove;
# `bash teardown.sh --yes` removes it.
set -euo pipefail

# The packages the book installed. Keep any you had before (delete it from this list).
PACKAGES="python3-venv nodejs npm docker.io gcc python3-dev nftables curl prometheus"
USERS="alice bob traefik prometheus"
FILES="/etc/jupyterhub /etc/traefik /etc/hub-firewall.nft /etc/pam.d/jupyterhub /etc/docker
/etc/default/hub-backup /etc/prometheus /etc/cni
/etc/systemd/system/jupyterhub.service /etc/systemd/system/jupyterhub.service.d
/etc/systemd/system/traefik.service /etc/systemd/system/traefik.service.d
/etc/systemd/system/hub-firewall.service /etc/systemd/system/prometheus.service.d
/etc/systemd/system/hub-backup.service /etc/systemd/system/hub-backup.timer
/opt/jupyterhub /usr/local/lib/jupyterhub /usr/local/bin/configurable-http-proxy
/usr/local/lib/node_modules /usr/local/sbin/hub-servers /usr/local/sbin/hub-stop-server
/usr/local/sbin/hub-backup /usr/local/sbin/hub-restore
/var/lib/jupyterhub /var/lib/jupyterhub-proxy /var/lib/traefik /var/log/traefik
/var/backups/jupyterhub /var/lib/prometheus /var/lib/docker /var/lib/containerd
/root/.docker /root/.npm /root/.cache/pip"

if [ "${1:-}" != --yes ]; then
    echo "teardown: would stop and disable: hub-backup.timer jupyterhub traefik prometheus hub-firewall docker"
    echo "teardown: would remove users' containers and volumes (their files), the book's images,"
    echo "teardown: the users $USERS (with their homes), the group docker,"
    echo "teardown: the packages $PACKAGES (and what only they needed),"
    echo "teardown: and:" $FILES
    echo "teardown: nothing was changed; run 'bash teardown.sh --yes' to do it"
    exit 1
fi
[ "$(id -u)" = 0 ] || { echo "teardown: run it as root" >&2; exit 1; }

# [start:stop]
# The hub, the proxy, the backups' timer, Prometheus; the firewall's table goes with its unit.
for unit in hub-backup.timer jupyterhub traefik prometheus hub-firewall; do
    systemctl disable --now "$unit" 2> /dev/null || true
done
# [end:stop]

# [start:docker]
# Users' containers and volumes (their files), the images the book built, then the engine.
if command -v docker > /dev/null; then
    docker ps --all --quiet --filter name='^jupyter-' | xargs -r docker rm --force > /dev/null
    docker volume ls --quiet --filter name='^jupyterhub-user-' | xargs -r docker volume rm > /dev/null
    docker image ls --format '{{.Repository}}:{{.Tag}}' | grep -E '^(local/|debian:)' | xargs -r docker image rm > /dev/null
    echo "Docker: $(docker ps --all --quiet | wc -l) containers, $(docker volume ls --quiet | wc -l) volumes," \
         "$(docker image ls --quiet | wc -l) images left"
fi
systemctl disable --now docker.socket docker.service containerd.service 2> /dev/null || true
# [end:docker]

# [start:packages]
apt-get purge -y $PACKAGES > /dev/null
# ... and every package that came with them: also those only recommended or suggested by
# another (apt keeps those by default, e.g. git, perl and make, which docker.io and gcc brought).
apt-get autoremove --purge -y -o APT::AutoRemove::RecommendsImportant=false \
    -o APT::AutoRemove::SuggestsImportant=false > /dev/null
dpkg -l $PACKAGES 2> /dev/null | grep '^ii' || echo "packages: none of $PACKAGES installed"
# [end:packages]

# [start:users]
for user in $USERS; do
    if id "$user" > /dev/null 2>&1; then userdel --remove "$user" 2> /dev/null || userdel "$user"; fi
done
getent group docker > /dev/null && groupdel docker
getent passwd $USERS || echo "users: none of $USERS left"
# [end:users]

# [start:files]
# A directory that is a mount point (say /var/lib/docker on its own disk) is emptied, not removed.
for path in $FILES; do
    rm -rf --one-file-system "$path" 2> /dev/null || find "$path" -mindepth 1 -delete
done
systemctl daemon-reload
left=0
for path in $FILES; do
    if [ -e "$path" ] && [ -n "$(ls -A "$path")" ]; then echo "left: $path"; left=1; fi
done
[ "$left" = 1 ] || echo "files: none left"
# [end:files]

# [start:reboot]
# Docker's firewall rules stay in the kernel until the machine restarts.
echo "teardown: done; restart the machine now (systemctl reboot)"
# [end:reboot]
