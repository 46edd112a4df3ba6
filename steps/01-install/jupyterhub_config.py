# Stage 01: JupyterHub with PAM login and one local process per user.
c = get_config()  # noqa: F821  (JupyterHub provides get_config)

# The public address: the proxy listens here, on every interface.
c.JupyterHub.bind_url = "http://:8000"

# Log in with the machine's own accounts (PAM) ...
c.JupyterHub.authenticator_class = "pam"
# ... and run each user's server as a process owned by that user.
c.JupyterHub.spawner_class = "localprocess"

# Who may log in. Since JupyterHub 5 nobody may until an allow rule exists.
c.Authenticator.allowed_users = {"alice"}

# Open JupyterLab after login.
c.Spawner.default_url = "/lab"
