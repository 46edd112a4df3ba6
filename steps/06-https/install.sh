#!/usr/bin/env bash
# Stage 06: HTTPS. Traefik gets a certificate from Let's Encrypt (ACME) itself.
# Run as root from inside this directory, on a machine that finished stage 05,
# after replacing hub.example.org (and the e-mail address) in traefik.toml and
# jupyterhub_config.py with your hub's name.
set -euo pipefail

# [start:preflight]
name=$(sed -n 's/^ *main = "\(.*\)"/\1/p' traefik.toml)
echo "hub name: $name"
getent ahosts "$name" | head -n 2 || echo "WARNING: $name does not resolve (yet)"
ss -ltnp '( sport = :80 or sport = :443 )'
# [end:preflight]

# [start:traefik-files]
install -m 0644 traefik.toml /etc/traefik/traefik.toml
# Into place in one step (Traefik watches the directory and ignores *.new).
install -o root -g traefik -m 0640 tls.toml /var/lib/jupyterhub-proxy/tls.toml.new
mv /var/lib/jupyterhub-proxy/tls.toml.new /var/lib/jupyterhub-proxy/tls.toml
# [end:traefik-files]

# [start:config]
systemctl stop jupyterhub
# The routes of stage 05 name the entry point "http"; the hub writes them anew.
rm -f /var/lib/jupyterhub-proxy/rules.toml
install -m 0644 jupyterhub_config.py /etc/jupyterhub/jupyterhub_config.py
# [end:config]

# [start:firewall]
# Open ports 80 and 443 (the hub's entry points now; Let's Encrypt connects to 443).
install -m 0644 firewall.nft /etc/hub-firewall.nft
nft --check -f /etc/hub-firewall.nft
systemctl reload hub-firewall.service
nft list chain inet hub_firewall input
# [end:firewall]

# [start:units]
install -m 0644 traefik.service /etc/systemd/system/traefik.service
systemd-analyze verify /etc/systemd/system/traefik.service
systemctl daemon-reload
systemctl restart traefik.service
systemctl start jupyterhub.service
systemctl is-active traefik.service jupyterhub.service
# [end:units]
