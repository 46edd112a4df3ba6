#!/usr/bin/env bash
# Stage 02: admins, allowed users, secrets in files, state in one directory.
# Run as root from inside this directory, on a machine that finished stage 01.
set -euo pipefail

# [start:reference]
rm -f /etc/jupyterhub/jupyterhub_config.reference.py
/opt/jupyterhub/bin/jupyterhub --generate-config \
    -f /etc/jupyterhub/jupyterhub_config.reference.py
grep -c '^# c\.' /etc/jupyterhub/jupyterhub_config.reference.py
# [end:reference]

# [start:user]
id bob >/dev/null 2>&1 || useradd --create-home --shell /bin/bash bob
# [end:user]

# [start:state]
install -d -m 0700 /var/lib/jupyterhub
rm -f /etc/jupyterhub/jupyterhub.sqlite /etc/jupyterhub/jupyterhub_cookie_secret
# [end:state]

# [start:secrets]
install -d -m 0700 /etc/jupyterhub/secrets
umask 077
for secret in cookie_secret proxy_auth_token; do
    if [ ! -s /etc/jupyterhub/secrets/$secret ]; then
        python3 -c 'import secrets; print(secrets.token_hex(32))' \
            > /etc/jupyterhub/secrets/$secret
    fi
done
umask 022
ls -l /etc/jupyterhub/secrets
# [end:secrets]

# [start:config]
install -m 0644 jupyterhub_config.py /etc/jupyterhub/jupyterhub_config.py
# [end:config]
