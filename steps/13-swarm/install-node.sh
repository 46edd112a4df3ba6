#!/usr/bin/env bash
# Stage 13, each worker: Docker Engine, and the directory of users' files.
# Run as root from inside this directory (a copy of it on the worker).
set -euo pipefail

# [start:docker]
apt-get update
apt-get install -y docker.io
docker version --format 'Docker Engine {{.Server.Version}}'
# [end:docker]

# [start:shared]
# The same file server's export as on the manager (see install.sh).
install -d -m 0755 /srv/jupyterhub-users
# [end:shared]
