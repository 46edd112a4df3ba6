#!/usr/bin/env bash
# Stage 05: Traefik and the hub as systemd services, each hardened.
# Run as root from inside this directory, on a machine that finished stage 04.
set -euo pipefail

# [start:stop]
systemctl stop jupyterhub 2>/dev/null || true
systemctl reset-failed jupyterhub 2>/dev/null || true
# [end:stop]

# [start:traefik-user]
id traefik >/dev/null 2>&1 || \
    useradd --system --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin traefik
# [end:traefik-user]

# [start:traefik-files]
install -d -m 0755 /etc/traefik
install -m 0644 traefik.toml /etc/traefik/traefik.toml
# The routes the hub writes and Traefik reads: the setgid bit (2) gives new
# files the group traefik.
install -d -o root -g traefik -m 2750 /var/lib/jupyterhub-proxy
# Stage 04's files, written by the hub when it started Traefik itself.
rm -f /var/lib/jupyterhub/traefik.toml /var/lib/jupyterhub/rules.toml
# [end:traefik-files]

# [start:env]
umask 077
printf 'TRAEFIK_API_PASSWORD=%s\n' "$(cat /etc/jupyterhub/secrets/traefik_api_password)" \
    > /etc/jupyterhub/secrets/jupyterhub.env
umask 022
ls -l /etc/jupyterhub/secrets/jupyterhub.env
# [end:env]

# [start:pam]
install -m 0644 pam-jupyterhub /etc/pam.d/jupyterhub
# [end:pam]

# [start:config]
install -m 0644 jupyterhub_config.py /etc/jupyterhub/jupyterhub_config.py
# [end:config]

# [start:units]
install -m 0644 traefik.service jupyterhub.service /etc/systemd/system/
systemd-analyze verify /etc/systemd/system/traefik.service /etc/systemd/system/jupyterhub.service
systemctl daemon-reload
systemctl enable --now traefik.service jupyterhub.service
# [end:units]

# [start:check]
systemctl is-active traefik.service jupyterhub.service
# [end:check]
