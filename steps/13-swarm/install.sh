#!/usr/bin/env bash
# Stage 13, the manager: Docker, the hub's and the users' images, the hub's unit.
# Run as root from inside this directory, on a fresh Debian 13 (or 12) machine.
set -euo pipefail

# [start:docker]
apt-get update
apt-get install -y docker.io
docker version --format 'Docker Engine {{.Server.Version}}'
# [end:docker]

# [start:images]
. /etc/os-release   # VERSION_CODENAME: trixie (13) or bookworm (12)
docker build --tag local/hub:1 --build-arg DEBIAN_RELEASE="$VERSION_CODENAME" images/hub
docker build --tag local/notebook:1 --build-arg DEBIAN_RELEASE="$VERSION_CODENAME" images/notebook
docker image ls local/*
# [end:images]

# [start:save]
# One file to copy to every worker (scp, or a USB stick: no registry involved).
docker save --output /root/notebook-1.tar local/notebook:1
ls -lh /root/notebook-1.tar
# [end:save]

# [start:users]
# Accounts for the login only: users' code runs on the workers, as jovyan.
for name in alice bob; do
    id "$name" >/dev/null 2>&1 || useradd --shell /usr/sbin/nologin "$name"
done
# [end:users]

# [start:secrets]
install -d -m 0700 /etc/jupyterhub/secrets /var/lib/jupyterhub
umask 077
for secret in cookie_secret proxy_auth_token; do
    if [ ! -s /etc/jupyterhub/secrets/$secret ]; then
        python3 -c 'import secrets; print(secrets.token_hex(32))' \
            > /etc/jupyterhub/secrets/$secret
    fi
done
umask 022
# [end:secrets]

# [start:shared]
# Users' files: on every node the same directory, from one file server (an NFS
# export mounted here by /etc/fstab, say). The hub makes a directory per user.
install -d -m 0755 /srv/jupyterhub-users
# [end:shared]

# [start:config]
install -m 0644 jupyterhub_config.py /etc/jupyterhub/jupyterhub_config.py
# [end:config]

# [start:unit]
install -m 0644 jupyterhub.service /etc/systemd/system/jupyterhub.service
systemd-analyze verify /etc/systemd/system/jupyterhub.service
systemctl daemon-reload
systemctl enable jupyterhub.service
# [end:unit]
