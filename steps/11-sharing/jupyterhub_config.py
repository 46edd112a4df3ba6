# Stage 11: sharing and roles: users share their servers, instructors look after their students' servers.
# Every option here is in the reference file that `jupyterhub --generate-config` writes.
import os
import sys
from pathlib import Path

import docker
import netifaces
from jupyterhub_traefik_proxy.fileprovider import TraefikFileProviderProxy
from jupyterhub_traefik_proxy.traefik_utils import TraefikConfigFileHandler
from tornado import web

# Our own spawner (stage 08) and authenticator (this stage): install.sh put them in this directory.
sys.path.insert(0, "/usr/local/lib/jupyterhub")
from oidcexchange import ExchangeAuthenticator
from sizedspawner import SizedDockerSpawner, refuse

c = get_config()  # noqa: F821  (JupyterHub provides get_config)

# The public address: https, on port 443 of the hub's name (Traefik listens).
# Replace hub.example.org with the name in traefik.toml.
c.JupyterHub.bind_url = "https://hub.example.org"

# Log in with your institution's OpenID Connect provider: the hub sends people there,
# the provider sends them back to the callback URL with a code, the hub trades the
# code (and its client secret) for tokens and asks the provider who they are.
c.JupyterHub.authenticator_class = ExchangeAuthenticator
c.GenericOAuthenticator.login_service = "Example Institute"  # the button: "Sign in with Example Institute"
# The provider's issuer, and its endpoints as its discovery document lists them
# (https://ISSUER/.well-known/openid-configuration: authorization_endpoint,
# token_endpoint, userinfo_endpoint). oauthenticator 17.4 does not read that
# document itself. Replace the issuer, and the three paths with your provider's
# (Keycloak: ISSUER/protocol/openid-connect/auth, .../token, .../userinfo).
issuer = os.environ.get("OIDC_ISSUER", "https://login.example.org")
c.GenericOAuthenticator.authorize_url = f"{issuer}/auth"
c.GenericOAuthenticator.token_url = f"{issuer}/token"
c.GenericOAuthenticator.userdata_url = f"{issuer}/me"
# ... the callback URL registered with the provider for this client, exactly.
c.GenericOAuthenticator.oauth_callback_url = "https://hub.example.org/hub/oauth_callback"
# The client's ID and secret: from the EnvironmentFile (install.sh put them there).
c.GenericOAuthenticator.client_id = os.environ["OIDC_CLIENT_ID"]
c.GenericOAuthenticator.client_secret = os.environ["OIDC_CLIENT_SECRET"]
# How the hub proves it is the client: HTTP Basic (client_secret_basic), as this
# client is registered. True or False as token_endpoint_auth_method says:
# client_secret_basic -> True, client_secret_post -> False.
c.GenericOAuthenticator.basic_auth = True
# What the hub asks for: who (openid, profile, email), the groups, and a refresh token.
c.GenericOAuthenticator.scope = ["openid", "profile", "email", "groups", "offline_access"]
# The user's name is this claim of the userinfo answer (lower case, no "@": it becomes
# the name of the server's URL and volume).
c.GenericOAuthenticator.username_claim = "preferred_username"

# Who may log in, and who administers the hub: by the provider's groups, nobody by name.
# The hub keeps each user's groups as the provider said at their last login.
c.GenericOAuthenticator.manage_groups = True
c.GenericOAuthenticator.auth_state_groups_key = "oauth_user.groups"  # the userinfo answer's "groups"
c.GenericOAuthenticator.allowed_groups = {"physics", "chemistry", "instructors", "students"}
c.GenericOAuthenticator.admin_groups = {"staff"}
# Users already in the hub's database get in only through the rules above.
c.Authenticator.allow_existing_users = False

# Keep each user's tokens in the hub (auth_state), encrypted with JUPYTERHUB_CRYPT_KEY
# from the EnvironmentFile; the hub refuses to start without that key.
c.Authenticator.enable_auth_state = True
# Check with the provider at most every 5 minutes (refresh the access token when it
# has expired), and always before a server starts; when that fails the user must log
# in again, also for the REST API and an admin starting their server.
c.Authenticator.auth_refresh_age = 300
c.Authenticator.refresh_pre_spawn = True
c.Authenticator.auth_refresh_strict = True

# Before each start, trade the user's access token for one for the data catalogue
# (RFC 8693 token exchange at the token endpoint); the server gets it as $CATALOGUE_TOKEN.
c.ExchangeAuthenticator.exchange_audience = "https://catalogue.example.org"
c.ExchangeAuthenticator.exchange_env = "CATALOGUE_TOKEN"

# Logging out of the hub also ends the session at the provider (RP-initiated logout).
c.GenericOAuthenticator.logout_redirect_url = (
    f"{issuer}/session/end?client_id={os.environ['OIDC_CLIENT_ID']}"
    "&post_logout_redirect_uri=https://hub.example.org/hub/login"
)

# ... and run each user's server in a Docker container, of the image and size they choose.
c.JupyterHub.spawner_class = SizedDockerSpawner

# The hub's own API must be reachable from inside the containers. The default,
# 127.0.0.1, is the container's own loopback there, not this machine's: listen
# on the address this machine has on Docker's bridge (docker0) instead.
docker0 = netifaces.ifaddresses("docker0")[netifaces.AF_INET][0]["addr"]
c.JupyterHub.hub_ip = docker0

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
    "Runboard (workflow runs)": "local/runboard:2",  # this stage's: it serves whom the owner shares with
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
# members of the group big-memory (the provider's group, from this stage on).
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


# Servers report their activity to the hub themselves (Traefik tells the hub nothing about
# traffic): every 60 s instead of every 5 minutes, so the idle culler below sees it sooner.
c.Spawner.environment = {"JUPYTERHUB_ACTIVITY_INTERVAL": "60"}

# How long a user's server trusts the hub's answer "this cookie belongs to bob, who may come in"
# before asking again: 5 minutes by default, so a revoked share keeps working that long for
# whoever opened the server before. 10 s here. Not 0: 0 means "trust it forever".
c.Spawner.args = ["--HubOAuth.cache_max_age=10"]

# Services: programs that use the hub's REST API, each with a token of its own.
# - idle-culler: started and stopped by the hub (a "hub-managed" service, as it has a
#   command); the hub makes its token and hands it over in $JUPYTERHUB_API_TOKEN. It stops
#   servers idle for more than an hour (--timeout, in seconds), looking every 5 minutes.
# - prometheus, monitoring, server-stopper: programs the hub does not start; their
#   tokens are in files that install.sh made (0600, root's).
c.JupyterHub.services = [
    {
        "name": "idle-culler",
        "command": [sys.executable, "-m", "jupyterhub_idle_culler", "--timeout=3600", "--cull-every=300"],
    },
    {"name": "prometheus", "api_token": (secrets / "prometheus_token").read_text().strip()},
    {"name": "monitoring", "api_token": (secrets / "monitoring_token").read_text().strip()},
    {"name": "server-stopper", "api_token": (secrets / "server_stopper_token").read_text().strip()},
]

# Roles: what each service's token may do, as few scopes as the job needs.
c.JupyterHub.load_roles = [
    {
        # Find users with servers, read when each server was last active, stop idle ones.
        "name": "idle-culler",
        "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
        "services": ["idle-culler"],
    },
    {
        # Read the hub's metrics at /hub/metrics, and nothing else.
        "name": "metrics",
        "scopes": ["read:metrics"],
        "services": ["prometheus"],
    },
    {
        # See who has a server running and since when; change nothing.
        "name": "monitoring",
        "scopes": ["list:users", "read:users:activity", "read:servers"],
        "services": ["monitoring"],
    },
    {
        # Stop the servers of the group physics (and see whether they run): nobody else's,
        # and start nothing.
        "name": "server-stopper",
        "scopes": ["delete:servers!group=physics", "read:servers!group=physics"],
        "services": ["server-stopper"],
    },
    {
        # Every user (the hub's built-in role "user", replaced here): what users may do with their
        # own things ("self"), plus sharing their own servers (shares!user) with a person or a group
        # they name (read:users:name, read:groups:name: everybody may look up names).
        "name": "user",
        "scopes": ["self", "shares!user", "read:users:name", "read:groups:name"],
    },
    {
        # The provider's group instructors: see, start, stop and open the servers of the group
        # students (and see those users in the admin page), nobody else's. Not admins.
        "name": "instructor",
        "scopes": [
            "admin-ui",
            "list:users!group=students",
            "read:users!group=students",
            "servers!group=students",
            "access:servers!group=students",
        ],
        "groups": ["instructors"],
    },
]

# /hub/metrics only for a token with the scope read:metrics (the default, said out loud).
c.JupyterHub.authenticate_prometheus = True
