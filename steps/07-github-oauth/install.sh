#!/usr/bin/env bash
# Stage 07: log in with GitHub (OAuth) instead of the machine's passwords.
# Run as root from inside this directory, on a machine that finished stage 06,
# after registering an OAuth app on GitHub (the chapter lists its fields) and
# editing the allow rules in jupyterhub_config.py.
set -euo pipefail

# [start:oauthenticator]
/opt/jupyterhub/bin/pip install --quiet oauthenticator==17.4.0
/opt/jupyterhub/bin/pip list 2>/dev/null | grep -E '^(jupyterhub|oauthenticator) '
# [end:oauthenticator]

# [start:secrets]
# The OAuth app's client ID and secret go into the hub's EnvironmentFile (mode
# 0600, root's), never into the config or a repository. Asked for once (the
# secret is not shown); without a terminal, taken from the variables of the same name.
env=/etc/jupyterhub/secrets/jupyterhub.env
for var in GITHUB_CLIENT_ID GITHUB_CLIENT_SECRET; do
    if ! grep -q "^$var=." "$env"; then
        value=${!var:-}
        if [ -z "$value" ] && [ -t 0 ]; then read -r -s -p "$var: " value && echo; fi
        if [ -z "$value" ]; then echo "install.sh: no $var given: run it in a terminal, or set $var" >&2; exit 1; fi
        sed -i "/^$var=/d" "$env"
        printf '%s=%s\n' "$var" "$value" >> "$env"
    fi
done
stat -c '%a %U %n' "$env"
cut -d= -f1 "$env"
# [end:secrets]

# [start:config]
install -m 0644 jupyterhub_config.py /etc/jupyterhub/jupyterhub_config.py
systemctl restart jupyterhub
pid=$(systemctl show --property MainPID --value jupyterhub)
for _ in $(seq 60); do
    journalctl _PID="$pid" -o cat | grep -q 'JupyterHub is now running' && break
    sleep 1
done
journalctl _PID="$pid" -o cat | grep -E 'Using Authenticator|is now running'
# [end:config]
