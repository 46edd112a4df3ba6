# Stage 13: users' servers run as Docker Swarm services on the workers; the hub
# runs in a container on the manager, attached to the swarm's overlay network.
import os
from pathlib import Path

from dockerspawner import SwarmSpawner

c = get_config()  # noqa: F821  (JupyterHub provides get_config)

# The proxy listens on port 8000 of its container, which the unit publishes on
# the manager's loopback only (127.0.0.1:8000): reach it through an SSH tunnel,
#   ssh -N -L 8000:127.0.0.1:8000 you@manager
c.JupyterHub.bind_url = "http://0.0.0.0:8000"

# Log in with the manager's accounts (PAM, through the hub's own PAM service).
c.JupyterHub.authenticator_class = "pam"
c.PAMAuthenticator.service = "jupyterhub"
c.Authenticator.allowed_users = {"alice", "bob"}
c.Authenticator.admin_users = {"alice"}
c.Authenticator.allow_existing_users = False

# State and secrets, mounted into the hub's container by the unit.
c.JupyterHub.db_url = "sqlite:////var/lib/jupyterhub/jupyterhub.sqlite"
c.ConfigurableHTTPProxy.pid_file = "/var/lib/jupyterhub/jupyterhub-proxy.pid"
secrets = Path("/etc/jupyterhub/secrets")
c.JupyterHub.cookie_secret_file = str(secrets / "cookie_secret")
c.ConfigurableHTTPProxy.auth_token = (secrets / "proxy_auth_token").read_text().strip()

# The hub's API listens on every address of its container; servers on the
# overlay network call it by the container's name, which the swarm's DNS knows.
c.JupyterHub.hub_ip = "0.0.0.0"
c.JupyterHub.hub_connect_ip = "jupyterhub"


# Each user's server is a swarm service with one task, on the overlay network.
class WorkerSwarmSpawner(SwarmSpawner):
    """SwarmSpawner that says at once when no worker can take the server.

    Without this, a task the swarm cannot place stays "pending" and the user
    waits for start_timeout, then reads only "Spawn failed".
    """

    async def get_task(self):
        task = await super().get_task()
        status = (task or {}).get("Status", {})
        if self.pending == "spawn" and status.get("State") == "pending" and status.get("Err"):
            raise RuntimeError(f"No worker can take your server now ({status['Err']}): ask an admin.")
        return task


c.JupyterHub.spawner_class = WorkerSwarmSpawner
c.SwarmSpawner.image = "local/notebook:1"
c.SwarmSpawner.network_name = "jupyterhub"
# Workers only: the manager runs the hub, not users' code.
c.SwarmSpawner.extra_placement_spec = {"constraints": ["node.role == worker"]}
# No virtual IP: the service's name resolves to its task's own address
# (DNS round robin). Virtual IPs need the kernel's IPVS, which not every
# kernel has; with one task per service they add nothing.
c.SwarmSpawner.extra_endpoint_spec = {"mode": "dnsrr"}
c.SwarmSpawner.use_internal_ip = True
# A server that exits (shut down from JupyterLab) is not restarted by the swarm;
# one whose worker is lost or drained is started again on another worker.
c.SwarmSpawner.extra_task_spec = {"restart_policy": {"Condition": "on-failure", "MaxAttempts": 3}}
# What one user may take of a worker.
c.SwarmSpawner.mem_limit = "1G"
c.SwarmSpawner.cpu_limit = 1.0

# Users' files: a directory per user under /srv/jupyterhub-users, a path that
# every node mounts from the same file server (NFS), bind-mounted into the
# server wherever the swarm places it.
USERS_DIR = "/srv/jupyterhub-users"
c.SwarmSpawner.notebook_dir = "/home/jovyan/work"
c.SwarmSpawner.volumes = {USERS_DIR + "/{username}": "/home/jovyan/work"}


def make_users_dir(spawner):
    """Create the user's directory (owned by jovyan, uid 1000) before the first start."""
    path = Path(USERS_DIR) / spawner.user.name
    if not path.is_dir():
        path.mkdir(mode=0o700)
        os.chown(path, 1000, 1000)


c.SwarmSpawner.pre_spawn_hook = make_users_dir

# A hub restart leaves users' services running; the hub finds them again.
c.JupyterHub.cleanup_servers = False
# How long the hub waits for a new server to answer: 60 s, not 30. On a busy
# worker a server's start took over 30 s in the tests.
c.Spawner.http_timeout = 60
c.Spawner.default_url = "/lab"
