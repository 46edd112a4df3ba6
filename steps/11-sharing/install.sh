#!/usr/bin/env bash
# Stage 11: sharing and roles: users share their servers with colleagues, instructors may
# start, stop and open their students' servers, Runboard serves whom its owner shares it with.
# Run as root from inside this directory, on a machine that finished stage 10.
set -euo pipefail

# [start:runboard]
# Runboard's second image: it lets in whom the hub lets in, not its owner alone (stage 08's
# local/runboard:1 stays, unused). local/lab:1 plus one file; nothing is downloaded.
docker build --quiet --tag local/runboard:2 images/runboard > /dev/null
docker image ls --format '{{.Repository}}:{{.Tag}}' local/runboard | sort
# [end:runboard]

# [start:config]
install -m 0644 jupyterhub_config.py /etc/jupyterhub/jupyterhub_config.py
systemctl restart jupyterhub
# This run of the unit only (its invocation ID), until it says it is running.
run=$(systemctl show --property=InvocationID --value jupyterhub)
for _ in $(seq 60); do
    journalctl _SYSTEMD_INVOCATION_ID="$run" | grep -q 'JupyterHub is now running' && break
    sleep 1
done
journalctl _SYSTEMD_INVOCATION_ID="$run" -o cat | grep -E 'Creating group|is now running'
# [end:config]
