#!/usr/bin/env bash
# Stage 09: log in with your institution's OpenID Connect provider; tokens in the
# hub (auth_state, encrypted) and, exchanged for a second service, in users' servers.
# Run as root from inside this directory, on a machine that finished stage 08,
# after registering the hub as a client with your provider (the chapter lists what
# to ask for) and editing the issuer and the groups in jupyterhub_config.py.
set -euo pipefail

# [start:secrets]
# The client's ID and secret go into the hub's EnvironmentFile (mode 0600, root's),
# never into the config. Asked for once (the secret is not shown); without a
# terminal, taken from the variables of the same name.
env=/etc/jupyterhub/secrets/jupyterhub.env
for var in OIDC_CLIENT_ID OIDC_CLIENT_SECRET; do
    if ! grep -q "^$var=." "$env"; then
        value=${!var:-}
        if [ -z "$value" ] && [ -t 0 ]; then read -r -s -p "$var: " value && echo; fi
        if [ -z "$value" ]; then echo "install.sh: no $var given: run it in a terminal, or set $var" >&2; exit 1; fi
        sed -i "/^$var=/d" "$env"
        printf '%s=%s\n' "$var" "$value" >> "$env"
    fi
done
# The key that encrypts auth_state (the users' tokens) in the hub's database: made
# here once, kept. Lose it and the stored tokens are unreadable (people log in again).
if ! grep -q '^JUPYTERHUB_CRYPT_KEY=.' "$env"; then
    printf 'JUPYTERHUB_CRYPT_KEY=%s\n' "$(openssl rand -hex 32)" >> "$env"
fi
# GitHub's app of stage 07 is no longer used: its secret goes.
sed -i '/^GITHUB_CLIENT_/d' "$env"
stat -c '%a %U %n' "$env"
cut -d= -f1 "$env"
# [end:secrets]

# [start:exchange]
# The authenticator (GenericOAuthenticator plus the token exchange before each
# start) is one Python file, next to the spawner of stage 08.
install -m 0644 oidcexchange.py /usr/local/lib/jupyterhub/oidcexchange.py
# Import it with the hub's Python, as the config will; auth_state needs cryptography.
/opt/jupyterhub/bin/python -c 'import sys; sys.path.insert(0, "/usr/local/lib/jupyterhub")
import cryptography; from oidcexchange import ExchangeAuthenticator
print(ExchangeAuthenticator.__mro__[1]); print("cryptography", cryptography.__version__)'
# [end:exchange]

# [start:config]
install -m 0644 jupyterhub_config.py /etc/jupyterhub/jupyterhub_config.py
systemctl restart jupyterhub
# This run of the unit only (its invocation ID), until it says it is running.
run=$(systemctl show --property=InvocationID --value jupyterhub)
for _ in $(seq 60); do
    journalctl _SYSTEMD_INVOCATION_ID="$run" | grep -q 'JupyterHub is now running' && break
    sleep 1
done
journalctl _SYSTEMD_INVOCATION_ID="$run" -o cat | grep -E 'Using Authenticator|is now running'
# [end:config]
