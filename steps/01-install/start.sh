#!/usr/bin/env bash
# Start the hub in the background as a transient systemd unit named
# "jupyterhub": its output goes to the journal (journalctl -u jupyterhub).
# Stage 05 replaces this with unit files that also start at boot.
set -euo pipefail

# [start:start]
systemd-run --unit=jupyterhub --working-directory=/etc/jupyterhub \
    --setenv=PATH=/opt/jupyterhub/bin:/usr/local/bin:/usr/bin:/bin \
    /opt/jupyterhub/bin/jupyterhub --config=/etc/jupyterhub/jupyterhub_config.py
# [end:start]
