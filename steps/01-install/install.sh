#!/usr/bin/env bash
# Stage 01: JupyterHub with PAM login and one local process per user.
# Run as root from inside this directory, on a fresh Debian 13 (or 12) machine.
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
# The newest configurable-http-proxy whose declared Node.js versions (its own
# and its dependencies') include the release's Node.js: --engine-strict refuses
# anything else. Debian 13 has Node.js 20, Debian 12 has Node.js 18.
. /etc/os-release
case "$VERSION_ID" in
    12) chp=5.1.0 ;;
    *)  chp=5.2.0 ;;
esac
node --version
npm install --global --engine-strict "configurable-http-proxy@$chp"
configurable-http-proxy --version
# [end:proxy]

# [start:user]
id alice >/dev/null 2>&1 || useradd --create-home --shell /bin/bash alice
# [end:user]

# [start:config]
install -d -m 0755 /etc/jupyterhub
install -m 0644 jupyterhub_config.py /etc/jupyterhub/jupyterhub_config.py
# [end:config]
