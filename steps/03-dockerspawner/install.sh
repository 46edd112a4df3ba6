#!/usr/bin/env bash
# Stage 03: one Docker container per user (DockerSpawner), two images to choose from.
# Run as root from inside this directory, on a machine that finished stage 02.
set -euo pipefail

# [start:docker]
apt-get update
apt-get install -y docker.io
docker version --format 'Docker Engine {{.Server.Version}}'
ip -4 -brief address show docker0
# [end:docker]

# [start:spawner]
# netifaces has no wheel for Debian 12's Python 3.11: pip compiles it.
apt-get install -y gcc python3-dev
/opt/jupyterhub/bin/pip install dockerspawner==14.0.0 netifaces==0.11.0
# [end:spawner]

# [start:images]
docker build --tag local/lab:1 images/lab
docker build --tag local/scipy:1 images/scipy
docker image ls local/*
# [end:images]

# [start:config]
install -m 0644 jupyterhub_config.py /etc/jupyterhub/jupyterhub_config.py
# [end:config]
