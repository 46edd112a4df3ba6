# Stage 02: admins, allowed users, secrets in files, state in one directory.
# Every option here is in the reference file that `jupyterhub --generate-config` writes.
from pathlib import Path

c = get_config()  # noqa: F821  (JupyterHub provides get_config)

# Where the proxy listens: port 8000 of this machine's loopback only. Until
# HTTPS (stage 06) a password typed into the login page crosses the network in
# clear, so no other machine may reach this port. From your computer, open an
# SSH tunnel and browse http://localhost:8000/:
#   ssh -N -L 8000:127.0.0.1:8000 you@your-vm
c.JupyterHub.bind_url = "http://127.0.0.1:8000"

# Log in with the machine's own accounts (PAM) ...
c.JupyterHub.authenticator_class = "pam"
# ... and run each user's server as a process owned by that user.
c.JupyterHub.spawner_class = "localprocess"

# Who may log in, and who administers the hub (admins may log in too).
c.Authenticator.allowed_users = {"alice", "bob"}
c.Authenticator.admin_users = {"alice"}
# Only the names above, not everyone the hub has ever seen. (With allowed_users
# set, allow_existing_users defaults to True: every user in the database may log
# in, so taking a name out of allowed_users would not lock that user out.)
c.Authenticator.allow_existing_users = False
# Refused whatever any other rule says. Empty: add a name to lock someone out now.
c.Authenticator.blocked_users = set()

# The token each user's server gets ($JUPYTERHUB_API_TOKEN): JupyterHub's default
# two scopes, plus listing and reading users, their servers, and the proxy's
# routes. A server gets only the part of this list its owner holds: alice (an
# admin) can list every user from her notebook; bob's token reads bob alone.
c.Spawner.server_token_scopes = [
    "users:activity!user",
    "access:servers!server",
    "list:users",
    "read:users",
    "read:servers",
    "proxy",
]

# State: the database and the proxy's pid file, in a directory only root can read.
c.JupyterHub.db_url = "sqlite:////var/lib/jupyterhub/jupyterhub.sqlite"
c.ConfigurableHTTPProxy.pid_file = "/var/lib/jupyterhub/jupyterhub-proxy.pid"

# Secrets: in files of mode 0600 that install.sh made, never in this file.
secrets = Path("/etc/jupyterhub/secrets")
c.JupyterHub.cookie_secret_file = str(secrets / "cookie_secret")
c.ConfigurableHTTPProxy.auth_token = (secrets / "proxy_auth_token").read_text().strip()

# Open JupyterLab after login.
c.Spawner.default_url = "/lab"
