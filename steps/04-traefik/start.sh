#!/usr/bin/env bash
# Start (or restart) the hub as a transient systemd unit named "jupyterhub".
# The hub starts Traefik (from /opt/jupyterhub/bin, on PATH) as its proxy.
set -euo pipefail

# [start:start]
systemctl stop jupyterhub 2>/dev/null || true
systemctl reset-failed jupyterhub 2>/dev/null || true
systemd-run --unit=jupyterhub --working-directory=/var/lib/jupyterhub \
    --setenv=PATH=/opt/jupyterhub/bin:/usr/local/bin:/usr/bin:/bin \
    /opt/jupyterhub/bin/jupyterhub --config=/etc/jupyterhub/jupyterhub_config.py
# [end:start]
