#!/usr/bin/env bash
# Stage 12: the hub's machine, which is also the cluster's controller: munge,
# slurmctld, and JupyterHub with batchspawner.
# Run as root from inside this directory, on a fresh Debian 13 (or 12) machine
# whose name the compute nodes resolve (hub, in slurm.conf and jupyterhub_config.py).
set -euo pipefail

# [start:packages]
apt-get update
apt-get install -y --no-install-recommends slurmctld slurm-client munge \
    python3-venv sudo node-configurable-http-proxy
slurmctld -V
configurable-http-proxy --version
# [end:packages]

# [start:munge]
# The package made a key: the secret every machine of the cluster must share.
ls -l /etc/munge/munge.key
munge -n | unmunge | grep STATUS
# [end:munge]

# [start:users]
# The same accounts, with the same uids and gids, on every machine (users.txt).
# Their homes are made here, once: /home is shared with the compute nodes.
while read -r name uid; do
    getent group "$name" >/dev/null || groupadd --gid "$uid" "$name"
    id "$name" >/dev/null 2>&1 || useradd --uid "$uid" --gid "$uid" --create-home --shell /bin/bash "$name"
    id "$name"
done < users.txt
# [end:users]

# [start:slurmctld]
install -m 0644 slurm.conf /etc/slurm/slurm.conf
install -d -o slurm -g slurm -m 0755 /var/lib/slurm/slurmctld
systemctl enable slurmctld
systemctl restart slurmctld
for _ in $(seq 30); do
    scontrol ping | grep -q 'is UP' && break
    sleep 1
done
scontrol ping
sinfo
# [end:slurmctld]

# [start:venv]
# JupyterHub and batchspawner for the hub; JupyterLab is not needed here (the
# users' servers run on the compute nodes).
python3 -m venv /opt/jupyterhub
/opt/jupyterhub/bin/pip install jupyterhub==6.1.1 batchspawner==1.3.0
/opt/jupyterhub/bin/pip show batchspawner | grep -E '^(Name|Version):'
# [end:venv]

# [start:secrets]
install -d -m 0700 /etc/jupyterhub/secrets /var/lib/jupyterhub
for secret in cookie_secret proxy_auth_token; do
    if [ ! -s /etc/jupyterhub/secrets/$secret ]; then
        (umask 077 && python3 -c 'import secrets; print(secrets.token_hex(32))' > /etc/jupyterhub/secrets/$secret)
    fi
done
ls -l /etc/jupyterhub/secrets
# [end:secrets]

# [start:hub]
install -m 0644 jupyterhub_config.py /etc/jupyterhub/jupyterhub_config.py
install -m 0644 jupyterhub.service /etc/systemd/system/jupyterhub.service
systemctl daemon-reload
systemctl enable jupyterhub
systemctl restart jupyterhub
# This run of the unit only (its invocation ID), until it says it is running.
run=$(systemctl show --property=InvocationID --value jupyterhub)
for _ in $(seq 90); do
    journalctl _SYSTEMD_INVOCATION_ID="$run" | grep -q 'JupyterHub is now running' && break
    sleep 1
done
journalctl _SYSTEMD_INVOCATION_ID="$run" -o cat | grep -E 'Using Spawner|Hub API listening|connect url|is now running'
# [end:hub]
