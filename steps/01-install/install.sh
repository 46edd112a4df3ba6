#!/usr/bin/env bash
# Stage 01: JupyterHub with PAM login and one local process per user.
# Run as root from inside this directory, on a fresh Debian 12 machine.
set -euo pipefail

# [start:packages]
apt-get update
apt-get install -y python3-venv nodejs npm
# [end:packages]

# [start:venv]
python3 -m venv /opt/jupyterhub
/opt/jupyterhub/bin/pip install jupyterhub==6.1.1 jupyterlab==4.6.6
# [end:venv]

# [start:proxy]
npm install --global configurable-http-proxy@5.3.0
# [end:proxy]

# [start:user]
id alice >/dev/null 2>&1 || useradd --create-home --shell /bin/bash alice
# [end:user]

# [start:config]
install -d -m 0755 /etc/jupyterhub
install -m 0644 jupyterhub_config.py /etc/jupyterhub/jupyterhub_config.py
# [end:config]
