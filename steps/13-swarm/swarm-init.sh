#!/usr/bin/env bash
# Stage 13, on the manager: make the swarm and its overlay network.
set -euo pipefail

# [start:init]
docker swarm init --advertise-addr "$(hostname --ip-address | awk '{print $1}')"
# [end:init]

# [start:network]
# Attachable: a plain container (the hub's) may join it, not only services.
docker network create --driver overlay --attachable jupyterhub
# [end:network]

# [start:token]
# What each worker needs to join (the token is a secret: it admits a node).
docker swarm join-token --quiet worker > /root/swarm-worker-token
chmod 0600 /root/swarm-worker-token
# [end:token]
