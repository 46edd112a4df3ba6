#!/usr/bin/env bash
# Stage 12: a compute node joins the cluster: the controller's munge key, the same
# accounts, slurm.conf, and slurmd started.
# Run as root from inside this directory, on each compute node, after install-node.sh
# and after copying the controller's munge key to /etc/munge/munge.key.
set -euo pipefail

# [start:munge]
if [ ! -s /etc/munge/munge.key ]; then
    echo "join-node.sh: no /etc/munge/munge.key: copy the controller's key here first" >&2
    exit 1
fi
# The key must be munge's, readable by munge only; munged reads it when it starts.
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key
systemctl restart munge
ls -l /etc/munge/munge.key
# [end:munge]

# [start:users]
# The same accounts as on the hub's machine (users.txt). No homes made here: /home
# is the shared one, where the hub's machine made them.
while read -r name uid; do
    getent group "$name" >/dev/null || groupadd --gid "$uid" "$name"
    id "$name" >/dev/null 2>&1 || useradd --uid "$uid" --gid "$uid" --no-create-home --shell /bin/bash "$name"
    id "$name"
    test -d "/home/$name" || echo "join-node.sh: no /home/$name: is the shared /home mounted?" >&2
done < users.txt
# [end:users]

# [start:slurmd]
install -m 0644 slurm.conf /etc/slurm/slurm.conf
systemctl enable slurmd
systemctl restart slurmd
# Until the controller counts this node in (it answers only with the same munge key).
for _ in $(seq 30); do
    sinfo -h -n "$(hostname)" -o %t | grep -qx idle && break
    sleep 1
done
sinfo -N -n "$(hostname)"
# [end:slurmd]
