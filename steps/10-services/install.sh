#!/usr/bin/env bash
# Stage 10: services: an idle culler run by the hub, the hub's metrics in Prometheus,
# and tokens for scripts that may do one job each.
# Run as root from inside this directory, on a machine that finished stage 09.
set -euo pipefail

# [start:culler]
# The idle culler, pinned, into the hub's own venv: the hub starts it with its Python.
/opt/jupyterhub/bin/pip install --quiet jupyterhub-idle-culler==2.0.0
/opt/jupyterhub/bin/pip show jupyterhub-idle-culler | grep -E '^(Name|Version):'
# [end:culler]

# [start:tokens]
# One token per service the hub does not start itself: 32 random bytes in hex, in a
# file only root can read. Made once, kept (delete a file and run this again to
# replace that token).
for name in prometheus monitoring server_stopper; do
    file=/etc/jupyterhub/secrets/${name}_token
    if [ ! -s "$file" ]; then
        (umask 077 && openssl rand -hex 32 > "$file")
    fi
    stat -c '%a %U %n' "$file"
done
# [end:tokens]

# [start:config]
install -m 0644 jupyterhub_config.py /etc/jupyterhub/jupyterhub_config.py
systemctl restart jupyterhub
# This run of the unit only (its invocation ID), until it says it is running.
run=$(systemctl show --property=InvocationID --value jupyterhub)
for _ in $(seq 60); do
    journalctl _SYSTEMD_INVOCATION_ID="$run" | grep -q 'JupyterHub is now running' && break
    sleep 1
done
journalctl _SYSTEMD_INVOCATION_ID="$run" -o cat | grep -E 'managed service|is now running'
# [end:config]

# [start:prometheus]
# Debian's Prometheus, without the node exporter it recommends (that one listens on
# every address of the machine, port 9100).
apt-get install -y --no-install-recommends prometheus > /dev/null
# Loopback only (a drop-in for Debian's unit).
install -d -m 0755 /etc/systemd/system/prometheus.service.d
install -m 0644 prometheus-jupyterhub.conf /etc/systemd/system/prometheus.service.d/jupyterhub.conf
# Prometheus' copy of its token: the user prometheus alone may read it (run this
# section again after replacing the hub's copy).
install -m 0600 -o prometheus -g prometheus /etc/jupyterhub/secrets/prometheus_token /etc/prometheus/jupyterhub_token
stat -c '%a %U %n' /etc/prometheus/jupyterhub_token
# The hub's address (docker0's, where it listens) into the configuration, checked.
docker0=$(ip -4 -o addr show docker0 | awk '{print $4}' | cut -d/ -f1)
sed "s/DOCKER0_ADDRESS/$docker0/" prometheus.yml > /etc/prometheus/prometheus.yml
promtool check config /etc/prometheus/prometheus.yml
systemctl daemon-reload
systemctl enable prometheus
systemctl restart prometheus
# Until the first scrape of the hub: what Prometheus says of each target.
targets() {
    curl -sf http://127.0.0.1:9090/api/v1/targets | python3 -c 'import json, sys
for t in json.load(sys.stdin)["data"]["activeTargets"]:
    print(t["labels"]["job"], t["scrapeUrl"], t["health"], t["lastError"])' 2>/dev/null || true
}
for _ in $(seq 60); do
    targets | grep -q '^jupyterhub .* up' && break
    sleep 1
done
targets
ss -Hltn 'sport = :9090' | awk '{print "Prometheus listens on", $4}'
# [end:prometheus]

# [start:scripts]
# Two scripts for people, each with a token that may do one job.
install -m 0755 servers.py /usr/local/sbin/hub-servers
install -m 0755 stop-server.py /usr/local/sbin/hub-stop-server
ls -l /usr/local/sbin/hub-servers /usr/local/sbin/hub-stop-server | awk '{print $1, $3, $NF}'
# [end:scripts]
