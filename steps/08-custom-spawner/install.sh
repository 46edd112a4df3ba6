#!/usr/bin/env bash
# Stage 08: our own spawner (sizes, limits, a form) and a server that is not a notebook.
# Run as root from inside this directory, on a machine that finished stage 07.
set -euo pipefail

# [start:runboard]
# Runboard's image: local/lab:1 (stage 03) plus one file; nothing is downloaded.
docker build --tag local/runboard:1 images/runboard
docker image ls local/runboard
# [end:runboard]

# [start:spawner]
# Our spawner is one Python file, next to no other code of the hub: root's, read-only for the rest.
install -d -m 0755 /usr/local/lib/jupyterhub
install -m 0644 sizedspawner.py /usr/local/lib/jupyterhub/sizedspawner.py
# Import it with the hub's Python, as the config will.
/opt/jupyterhub/bin/python -c 'import sys; sys.path.insert(0, "/usr/local/lib/jupyterhub")
from sizedspawner import SizedDockerSpawner; print(SizedDockerSpawner.__mro__[1])'
# [end:spawner]

# [start:config]
install -m 0644 jupyterhub_config.py /etc/jupyterhub/jupyterhub_config.py
systemctl restart jupyterhub
# This run of the unit only (its invocation ID), until it says it is running.
run=$(systemctl show --property=InvocationID --value jupyterhub)
for _ in $(seq 60); do
    journalctl _SYSTEMD_INVOCATION_ID="$run" | grep -q 'JupyterHub is now running' && break
    sleep 1
done
journalctl _SYSTEMD_INVOCATION_ID="$run" -o cat | grep -E 'Using Spawner|is now running'
# [end:config]
