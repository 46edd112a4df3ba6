# Stage 12: JupyterHub in front of a Slurm cluster. Each user's server is a batch job
# that Slurm runs on a compute node; the hub and the proxy stay on this machine.
# Every option here is in the reference file that `jupyterhub --generate-config` writes,
# or in batchspawner's documentation (its README lists the SlurmSpawner settings).
import asyncio
from pathlib import Path

from batchspawner import SlurmSpawner
from tornado import web

c = get_config()  # noqa: F821  (JupyterHub provides get_config)

# Where the proxy listens: port 8000 of this machine's loopback, as in stage 02
# (reach it through `ssh -N -L 8000:127.0.0.1:8000 you@hub`). Put HTTPS in front
# as in stage 06 before anyone logs in from elsewhere.
c.JupyterHub.bind_url = "http://127.0.0.1:8000"

# Log in with the machine's own accounts (PAM). The same accounts, with the same
# numbers (uids), exist on every compute node: the job runs as that user there.
c.JupyterHub.authenticator_class = "pam"
c.Authenticator.allowed_users = {"alice", "bob"}
c.Authenticator.admin_users = {"alice"}
c.Authenticator.allow_existing_users = False

# The hub's own API: on every address of this machine, so that servers running on
# the compute nodes can reach it ...
c.JupyterHub.hub_ip = "0.0.0.0"
# ... and the name they reach it by: this machine's name on the cluster's network.
c.JupyterHub.hub_connect_ip = "hub"

# State and secrets, as in stage 02.
c.JupyterHub.db_url = "sqlite:////var/lib/jupyterhub/jupyterhub.sqlite"
c.ConfigurableHTTPProxy.pid_file = "/var/lib/jupyterhub/jupyterhub-proxy.pid"
secrets = Path("/etc/jupyterhub/secrets")
c.JupyterHub.cookie_secret_file = str(secrets / "cookie_secret")
c.ConfigurableHTTPProxy.auth_token = (secrets / "proxy_auth_token").read_text().strip()
# Restarting the hub must not cancel everybody's jobs: leave the servers running.
c.JupyterHub.cleanup_servers = False


def refuse(status, message):
    """An HTTP error whose message the spawn page and the REST API show as it is."""
    error = web.HTTPError(status, message)
    error.jupyterhub_message = message
    return error


class SlurmSpawnerSaysWhy(SlurmSpawner):
    """batchspawner's SlurmSpawner, telling the user what Slurm says.

    Without this the spawn page says "Unhandled error starting server" when Slurm refuses
    a job, and "Pending in queue..." while it waits, whatever the reason.
    """

    async def submit_batch_script(self):
        try:
            return await super().submit_batch_script()
        except RuntimeError as e:  # sbatch's message, e.g. too much memory for any node
            said = [line.removeprefix("sbatch: error: ").strip() for line in str(e).splitlines() if line.strip()]
            raise refuse(400, f"Slurm refused the job: {'; '.join(said)}.") from e

    async def progress(self):
        while True:
            if self.state_ispending():
                reason = " ".join(self.job_status.split()[1:-1])
                yield {"message": f"Job {self.job_id} waits in Slurm's queue (reason: {reason})."}
            elif self.state_isrunning():
                yield {"message": f"Job {self.job_id} runs on {self.state_gethost()}: waiting for the server."}
                return
            else:
                yield {"message": "Submitting the job to Slurm..."}
            await asyncio.sleep(1)


# Each user's server is a Slurm batch job. The hub submits it with sbatch as the
# user (sudo -u NAME), asks squeue where it runs, and cancels it with scancel.
c.JupyterHub.spawner_class = SlurmSpawnerSaysWhy
# How the hub asks about the job: its state, why it waits, and where it runs
# ("PENDING Resources n/a", "RUNNING None node1"). batchspawner's default has no reason.
c.SlurmSpawner.batch_query_cmd = "squeue -h -j {job_id} -o '%T %r %B'"

# The job script. The hub fills in the {{...}} from the options form (below) and
# from the req_* settings; {{cmd}} is the command that starts the user's server.
c.SlurmSpawner.batch_script = """#!/bin/bash
#SBATCH --job-name=jupyter
#SBATCH --partition={{partition}}
#SBATCH --time={{runtime}}
#SBATCH --cpus-per-task={{nprocs}}
#SBATCH --mem={{memory}}
#SBATCH --output={{homedir}}/.jupyter-job-%j.log
#SBATCH --chdir={{homedir}}
#SBATCH --export={{keepvars}}
#SBATCH --get-user-env=L
set -euo pipefail
trap 'echo SIGTERM received' TERM
{{prologue}}
{{srun}} {{cmd}}
echo "jupyterhub-singleuser ended gracefully"
"""
# The job keeps the hub's variables for the server (JUPYTERHUB_*) and these two.
# JupyterHub 6 passes almost nothing else on (Spawner.env_keep), not even PATH.
c.SlurmSpawner.req_keepvars_extra = "PATH,LANG"
# On the node, JupyterHub's programs are in /opt/jupyterhub/bin (install-node.sh).
c.SlurmSpawner.req_prologue = "export PATH=/opt/jupyterhub/bin:$PATH"
# A busy queue: wait up to 5 minutes for the job to start and the server to
# answer, then give up (and cancel the job).
c.SlurmSpawner.start_timeout = 300
c.SlurmSpawner.http_timeout = 120

# Open JupyterLab after the start.
c.Spawner.default_url = "/lab"


# The options form: partition, time limit, CPUs, memory. The hub checks every
# value (a form can be edited, and the REST API skips it), then Slurm decides
# whether the cluster can run such a job at all.
PARTITIONS = {"interactive": 8}  # partition -> the most hours a job may run there
CPUS = (1, 2)  # fewest and most CPUs one server may ask for
MEMORY_GB = (1, 16)  # least and most memory, in GB
FIELDS = {"partition", "hours", "cpus", "memory_gb"}


def whole_number(options, field, label, low, high):
    value = str(options.get(field, low)).strip()
    if not value.isdigit() or not low <= int(value) <= high:
        raise refuse(400, f"{label} must be a whole number from {low} to {high}, not {value!r}.")
    return int(value)


def checked(options):
    """The user's choices, checked; anything else is refused with a message."""
    unknown = sorted(set(options) - FIELDS)
    if unknown:
        raise refuse(400, f"Unknown option {unknown[0]!r}: the form has {', '.join(sorted(FIELDS))}.")
    partition = str(options.get("partition", next(iter(PARTITIONS))))
    if partition not in PARTITIONS:
        raise refuse(400, f"Unknown partition {partition!r}: choose one of {', '.join(PARTITIONS)}.")
    return {
        "partition": partition,
        "hours": whole_number(options, "hours", "Hours", 1, PARTITIONS[partition]),
        "cpus": whole_number(options, "cpus", "CPUs", *CPUS),
        "memory_gb": whole_number(options, "memory_gb", "Memory (GB)", *MEMORY_GB),
    }


def options_form(spawner):
    partitions = "".join(f'<option value="{p}">{p} (at most {h} hours)</option>' for p, h in PARTITIONS.items())
    return f"""
<label for="partition">Partition</label>
<select class="form-control" name="partition" id="partition">{partitions}</select>
<label for="hours">Time limit (hours)</label>
<input class="form-control" type="number" name="hours" id="hours" value="1" min="1" max="{max(PARTITIONS.values())}">
<label for="cpus">CPUs</label>
<input class="form-control" type="number" name="cpus" id="cpus" value="1" min="{CPUS[0]}" max="{CPUS[1]}">
<label for="memory_gb">Memory (GB)</label>
<input class="form-control" type="number" name="memory_gb" id="memory_gb" value="1" min="{MEMORY_GB[0]}"
 max="{MEMORY_GB[1]}">
"""


def options_from_form(formdata):
    """The form's fields (lists of strings), one value each, checked."""
    return checked({key: values[0] for key, values in formdata.items() if values and key in FIELDS})


def apply_user_options(spawner, user_options):
    """Before each start (also from the REST API): check the choices again and put them in the job script."""
    options = checked(user_options)
    spawner.user_options = options  # what the job script sees, and what the hub keeps
    spawner.req_partition = options["partition"]
    spawner.req_runtime = f"{options['hours']}:00:00"
    spawner.req_nprocs = str(options["cpus"])
    spawner.req_memory = f"{options['memory_gb']}G"


c.SlurmSpawner.options_form = options_form
c.SlurmSpawner.options_from_form = options_from_form
c.SlurmSpawner.apply_user_options = apply_user_options
