# Stage 01: JupyterHub with PAM login and one local process per user.
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

# Who may log in. Since JupyterHub 5 nobody may until an allow rule exists.
c.Authenticator.allowed_users = {"alice"}

# Open JupyterLab after login.
c.Spawner.default_url = "/lab"
