#!/usr/bin/env bash
# Stage 03: one Docker container per user (DockerSpawner), two images to choose from.
# Run as root from inside this directory, on a machine that finished stage 02.
set -euo pipefail

# [start:docker]
# live-restore: users' containers keep running while the Docker Engine itself
# restarts (an upgrade of docker.io, say). Written before the engine first starts.
install -d -m 0755 /etc/docker
echo '{"live-restore": true}' > /etc/docker/daemon.json
apt-get update
apt-get install -y docker.io
docker version --format 'Docker Engine {{.Server.Version}}'
docker info --format 'live-restore: {{.LiveRestoreEnabled}}'
ip -4 -brief address show docker0
# [end:docker]

# [start:spawner]
# netifaces has no wheel for Debian's Python (3.13 on Debian 13, 3.11 on 12): pip compiles it.
apt-get install -y gcc python3-dev
/opt/jupyterhub/bin/pip install dockerspawner==14.0.0 netifaces==0.11.0
# [end:spawner]

# [start:images]
. /etc/os-release   # VERSION_CODENAME: trixie (13) or bookworm (12)
docker build --tag local/lab:1 --build-arg DEBIAN_RELEASE="$VERSION_CODENAME" images/lab
docker build --tag local/scipy:1 images/scipy
docker image ls local/*
# [end:images]

# [start:shells]
# Users' servers now run in containers: their Linux accounts only hold passwords.
# No login shell, so a hub password is not also a way onto this machine.
usermod --shell /usr/sbin/nologin alice
usermod --shell /usr/sbin/nologin bob
# [end:shells]

# [start:firewall]
# Default deny: only SSH from the network, and containers to the hub's API.
apt-get install -y nftables
install -m 0644 firewall.nft /etc/hub-firewall.nft
nft --check -f /etc/hub-firewall.nft
install -m 0644 hub-firewall.service /etc/systemd/system/hub-firewall.service
systemctl daemon-reload
systemctl enable --now hub-firewall.service
nft list chain inet hub_firewall input
# [end:firewall]

# [start:config]
install -m 0644 jupyterhub_config.py /etc/jupyterhub/jupyterhub_config.py
# [end:config]
