# Stage 08: our own spawner: a form of images and sizes, limits per size, and a server that is no notebook.
# Every option here is in the reference file that `jupyterhub --generate-config` writes.
import os
import sys
from pathlib import Path

import docker
import netifaces
from jupyterhub_traefik_proxy.fileprovider import TraefikFileProviderProxy
from jupyterhub_traefik_proxy.traefik_utils import TraefikConfigFileHandler
from tornado import web

# Our own spawner (a subclass of DockerSpawner): install.sh put sizedspawner.py in this directory.
sys.path.insert(0, "/usr/local/lib/jupyterhub")
from sizedspawner import SizedDockerSpawner, refuse

c = get_config()  # noqa: F821  (JupyterHub provides get_config)

# The public address: https, on port 443 of the hub's name (Traefik listens).
# Replace hub.example.org with the name in traefik.toml.
c.JupyterHub.bind_url = "https://hub.example.org"

# Log in with GitHub accounts (OAuth): the hub sends people to GitHub, GitHub
# sends them back to the callback URL with a code, the hub trades the code (and
# the app's secret) for a token and asks GitHub who they are ...
c.JupyterHub.authenticator_class = "github"
# ... the callback URL registered with the OAuth app on GitHub, exactly.
c.GitHubOAuthenticator.oauth_callback_url = "https://hub.example.org/hub/oauth_callback"
# The app's ID and secret: from the EnvironmentFile (install.sh put them there).
c.GitHubOAuthenticator.client_id = os.environ["GITHUB_CLIENT_ID"]
c.GitHubOAuthenticator.client_secret = os.environ["GITHUB_CLIENT_SECRET"]
# read:org lets the hub see memberships of allowed_organizations that people keep
# private (GitHub's default); without it only public memberships count.
c.GitHubOAuthenticator.scope = ["read:org"]
# ... and run each user's server in a Docker container, of the image and size they choose.
c.JupyterHub.spawner_class = SizedDockerSpawner

# The hub's own API must be reachable from inside the containers. The default,
# 127.0.0.1, is the container's own loopback there, not this machine's: listen
# on the address this machine has on Docker's bridge (docker0) instead.
docker0 = netifaces.ifaddresses("docker0")[netifaces.AF_INET][0]["addr"]
c.JupyterHub.hub_ip = docker0

# Who may log in, by GitHub login (lower case, as the hub names users): these
# people, and every member of these organizations (or "org:team" for one team).
c.Authenticator.allowed_users = {"alice"}
c.GitHubOAuthenticator.allowed_organizations = {"example-lab"}
# Who administers the hub (admins may log in too).
c.Authenticator.admin_users = {"alice"}
# Users already in the hub's database (the PAM names of stages 01-06) get in only
# through the rules above: a GitHub account that happens to carry an old name
# must not inherit that user's files.
c.Authenticator.allow_existing_users = False

# State: the database, in a directory only root can read.
c.JupyterHub.db_url = "sqlite:////var/lib/jupyterhub/jupyterhub.sqlite"

# Secrets: in files of mode 0600 that install.sh made, never in this file.
secrets = Path("/etc/jupyterhub/secrets")
c.JupyterHub.cookie_secret_file = str(secrets / "cookie_secret")

# Traefik's API (the hub reads routes through it): on this machine's loopback
# only, behind basic auth. systemd passes the password in from
# /etc/jupyterhub/secrets/jupyterhub.env (EnvironmentFile= in jupyterhub.service).
c.TraefikProxy.traefik_api_url = "http://127.0.0.1:8099"
c.TraefikProxy.traefik_api_username = "jupyterhub"
c.TraefikProxy.traefik_api_password = os.environ["TRAEFIK_API_PASSWORD"]


# The proxy is Traefik, started by systemd (traefik.service) as the user traefik,
# with its own static configuration (/etc/traefik/traefik.toml). The hub only
# writes the routes to a file in /var/lib/jupyterhub-proxy/, which Traefik watches.
# The package writes that file with mode 0600, which the traefik user cannot read:
# these two small classes write it 0640 instead (group traefik, from the directory).
class GroupReadableFile(TraefikConfigFileHandler):
    """Write the routes file with mode 0640, atomically, as the package does with 0600."""

    def atomic_dump(self, data):
        tmp = self.file_path + ".tmp"
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640), "w") as f:
            self._dump(data, f)
        os.replace(tmp, self.file_path)


class SharedRoutesFileProxy(TraefikFileProviderProxy):
    """The file-provider proxy, with a routes file that Traefik's own user can read."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dynamic_config_handler = GroupReadableFile(self.dynamic_config_file)


c.JupyterHub.proxy_class = SharedRoutesFileProxy
c.SharedRoutesFileProxy.should_start = False  # systemd starts Traefik, not the hub
c.SharedRoutesFileProxy.dynamic_config_file = "/var/lib/jupyterhub-proxy/rules.toml"
# Routes go on Traefik's entry point "https" (port 443, see traefik.toml).
c.SharedRoutesFileProxy.traefik_entrypoint = "https"

# The images users choose from (the form shows the names on the left),
# built on this machine by install.sh. The first one is the default.
# Runboard is not a notebook: the web UI of a workflow tool (images/runboard/).
c.DockerSpawner.allowed_images = {
    "JupyterLab": "local/lab:1",
    "JupyterLab with NumPy, pandas and Matplotlib": "local/scipy:1",
    "Runboard (workflow runs)": "local/runboard:1",
}
c.DockerSpawner.image = "local/lab:1"
# Never pull: a typo must fail, not fetch a stranger's image of that name.
c.DockerSpawner.pull_policy = "never"


# Say on the spawn page when a chosen image was never built. Without this hook
# the user reads only "Unhandled error starting server" (the reason is in the log).
def image_must_exist(spawner):
    choice = spawner.user_options.get("image")
    image = spawner.allowed_images.get(choice, spawner.image) if choice else spawner.image
    client = docker.from_env()
    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        raise web.HTTPError(
            500, f"The image {image} is not on this machine: build it, or take it off allowed_images."
        ) from None
    finally:
        client.close()


# The sizes users choose from, in the form's order; the first one is the default.
# cpu: CPUs the container may use (docker run --cpus); mem: memory, with the hub's
# suffixes K, M, G, T (powers of 1024). No size may ask for more CPUs than the
# machine has: Docker refuses to create the container.
c.SizedDockerSpawner.sizes = {
    "small": {"cpu": 1, "mem": "1G"},
    "medium": {"cpu": 2, "mem": "4G"},
    "large": {"cpu": 2, "mem": "16G", "note": "admins and the group big-memory"},
}


# Who may start which size: everybody small and medium; large only admins and
# members of the hub's group big-memory (Admin page > Groups).
def may_use(user, size):
    return size != "large" or user.admin or any(group.name == "big-memory" for group in user.groups)


c.SizedDockerSpawner.may_use = may_use  # the form greys out what a user may not start


# Before every start, however it was asked for (the form, a hand-made POST, the
# REST API, which skips the form): the size must be one this user may start.
def check_size_and_image(spawner):
    size = spawner.user_options.get("size")
    if size and not may_use(spawner.user, size):
        raise refuse(403, f"The size {size} is only for admins and the group big-memory: choose small or medium.")
    image_must_exist(spawner)


c.SizedDockerSpawner.pre_spawn_hook = check_size_and_image

# How long a start may take. start_timeout: until the container runs; no image is
# pulled here (pull_policy "never"), so it takes a second, and 30 s means Docker is
# stuck. http_timeout: until the server in it answers, slowest for the smallest
# size and on a busy machine (the default, 30 s, leaves little margin).
c.Spawner.start_timeout = 30
c.Spawner.http_timeout = 60

# Each user's files live in a named volume (jupyterhub-user-NAME), mounted as
# the work directory: containers come and go, the volume stays.
c.DockerSpawner.notebook_dir = "/home/jovyan/work"
c.DockerSpawner.volumes = {"jupyterhub-user-{username}": "/home/jovyan/work"}
# Remove a user's container when the server stops (the next start makes a new one).
c.DockerSpawner.remove = True
# ... but let the spawner do the removing: a container also marked "remove when
# stopped" (docker run --rm) is killed by Docker 20.10 (Debian 12) whenever the
# engine restarts, live-restore or not.
c.DockerSpawner.extra_host_config = {"auto_remove": False}

# Reach each user's server at its container's address on Docker's bridge, not
# through a port published on this machine: no docker-proxy process in between,
# so a restart of the Docker Engine (live-restore) does not cut open connections.
c.DockerSpawner.use_internal_ip = True

# A hub restart leaves users' containers running; the hub finds them again.
c.JupyterHub.cleanup_servers = False

# Open JupyterLab after login.
c.Spawner.default_url = "/lab"
