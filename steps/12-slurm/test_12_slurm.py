"""Stage 12: an HPC cluster. The hub's machine runs JupyterHub, slurmctld and munge; two compute
nodes run slurmd; each user's server is a Slurm job on a node, reached through the hub.

Three test VMs on one private network (tests/harness/cluster.py); /home is one volume mounted on
all three, standing in for the NFS a real site shares homes with.
"""

from __future__ import annotations

import json
import re
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.harness import users
from tests.harness.chapter_outputs import check as check_chapter_outputs
from tests.harness.cluster import Cluster
from tests.harness.hubclient import HubClient
from tests.harness.kernels import kernel
from tests.harness.localcheck import test_target_local_passes_on_a_machine_built_by_the_book  # noqa: F401
from tests.harness.machine import ContainerVM, Machine
from tests.harness.results import record
from tests.harness.server_checks import test_your_server  # noqa: F401  (the checks of your own server)
from tests.harness.waits import wait_for

MACHINES = ("hub", "node1", "node2")
NODES = MACHINES[1:]
SHARED = ("/home",)
UNITS = {"hub": ("jupyterhub", "slurmctld", "munge"), "node1": ("slurmd", "munge"), "node2": ("slurmd", "munge")}

FORM = {"partition": "interactive", "hours": "1", "cpus": "1", "memory_gb": "1"}
# What the hub and Slurm answer, quoted in the chapter and the troubleshooting page.
TOO_MUCH_MEMORY = (
    "Slurm refused the job: Memory specification can not be satisfied; "
    "Batch job submission failed: Requested node configuration is not available."
)
BAD_CHOICES = {
    "hours above the limit": ({"hours": "9"}, "Hours must be a whole number from 1 to 8, not '9'."),
    "no hours at all": ({"hours": ""}, "Hours must be a whole number from 1 to 8, not ''."),
    "CPUs not a number": ({"cpus": "two"}, "CPUs must be a whole number from 1 to 2, not 'two'."),
    "more CPUs than a node has": ({"cpus": "3"}, "CPUs must be a whole number from 1 to 2, not '3'."),
    "no memory": ({"memory_gb": "0"}, "Memory (GB) must be a whole number from 1 to 16, not '0'."),
    "memory with a unit": ({"memory_gb": "4G"}, "Memory (GB) must be a whole number from 1 to 16, not '4G'."),
    "a partition the form does not offer": (
        {"partition": "debug"},
        "Unknown partition 'debug': choose one of interactive.",
    ),
    "a line of the job script in a field": (
        {"hours": "1\n#SBATCH --qos=high"},
        "Hours must be a whole number from 1 to 8, not '1\\n#SBATCH --qos=high'.",
    ),
}
QUEUED = "waits in Slurm's queue (reason: Resources)."
STOPPED = "received signal 15, stopping"
UNKNOWN_OPTION = "Unknown option 'prologue': the form has cpus, hours, memory_gb, partition."
WRONG_KEY_NODE = "slurm_load_partitions: Protocol authentication error"
WRONG_KEY_CONTROLLER = "Munge decode failed: Invalid credential"


def install_cluster(cluster: Cluster) -> None:
    """The chapter's commands: the controller and the nodes' software at once (they need nothing of each other),
    the munge key copied to each node (the reader's scp), then each node joins."""
    with ThreadPoolExecutor(len(MACHINES)) as pool:
        done = [pool.submit(cluster.run_script, "hub", "install-controller.sh")]
        done += [pool.submit(cluster.run_script, node, "install-node.sh") for node in NODES]
        for future in done:
            future.result()
    cluster.copy("hub", "/etc/munge/munge.key", NODES, mode="0400", owner="root:root")
    with ThreadPoolExecutor(len(NODES)) as pool:
        list(pool.map(lambda node: cluster.run_script(node, "join-node.sh"), NODES))


# -- helpers ------------------------------------------------------------------------------


def node_states(machine: Machine) -> dict[str, str]:
    """Each node and its state, as sinfo shows them on the controller (idle, mixed, alloc, drain, down...)."""
    out = machine.output("sinfo -N -h -o '%N %t'")
    return dict(line.split() for line in out.splitlines())


def jobs(machine: Machine, user: str) -> list[dict[str, str]]:
    """The user's jobs in Slurm's queue: id, state, node (or the reason it waits), CPUs, memory, time limit."""
    out = machine.output(f"squeue -h -u {user} -o '%i|%T|%R|%C|%m|%l|%j'")
    keys = ("id", "state", "where", "cpus", "memory", "limit", "name")
    return [dict(zip(keys, line.split("|"), strict=True)) for line in out.splitlines()]


def all_idle(machine: Machine) -> dict[str, str] | None:
    states = node_states(machine)
    return states if set(states) == set(NODES) and set(states.values()) == {"idle"} else None


@pytest.fixture(scope="module")
def admin(hub, people) -> tuple[HubClient, str]:
    """alice (an admin) logged in, and an API token of hers."""
    client = hub.session(people["alice"])
    return client, client.create_token("alice", note="stage 12 tests")


def server(admin, name: str) -> dict:
    client, token = admin
    r = client.api("GET", f"/users/{name}", token)
    r.raise_for_status()
    return r.json()["servers"].get("", {})


def stop(hub, admin, name: str) -> None:
    """Stop NAME's server if one runs or is starting, and wait until its job has left the queue."""
    client, token = admin
    if server(admin, name):
        client.api("DELETE", f"/users/{name}/server", token)
        wait_for(f"{name}'s server to stop", lambda: not server(admin, name), timeout=90)
    wait_for(f"{name}'s jobs to leave Slurm's queue", lambda: not jobs(hub.machine, name), timeout=60)


def start(hub, people, admin, name: str, **choices: str) -> HubClient:
    """NAME logs in and starts a server from the form (defaults: 1 hour, 1 CPU, 1 GB) and waits until it answers."""
    stop(hub, admin, name)
    client = hub.session(people[name])
    started = time.monotonic()
    client.start_server(name, data={**FORM, **choices}, timeout=180)
    print(f"{name}'s server answered {time.monotonic() - started:.1f} s after the form was sent")
    return client


def running_on(hub, name: str) -> str:
    """The node NAME's one running job is on, as squeue says."""
    found = jobs(hub.machine, name)
    assert len(found) == 1 and found[0]["state"] == "RUNNING", f"{name}'s jobs: {found}"
    return found[0]["where"]


def kernel_hostname(client: HubClient, name: str) -> str:
    """Where code typed into NAME's notebook runs: the kernel's own hostname."""
    with kernel(client, name) as k:
        return k.execute("import socket; print(socket.gethostname())").strip()


def progress_messages(client: HubClient, name: str, until: str, timeout: float = 120) -> list[str]:
    """The messages of the spawn page's progress bar (the hub's event stream), until one contains ``until``."""
    seen: list[str] = []
    url = f"{client.base_url}/hub/api/users/{name}/server/progress"
    headers = {"X-XSRFToken": client.xsrf()}
    with client.session.get(url, headers=headers, stream=True, verify=client.verify, timeout=timeout) as r:
        for line in r.iter_lines(decode_unicode=True):
            if line and line.startswith("data:"):
                seen.append(json.loads(line[5:]).get("message", ""))
                if until in seen[-1]:
                    break
    return seen


# -- the cluster --------------------------------------------------------------------------


def test_sinfo_shows_both_nodes_idle(machine):
    """The controller counts both compute nodes in, idle (after a reboot too: the images are booted anew)."""
    # A ping the controller missed (a busy machine) shows as "idle*" until the next one, SlurmdTimeout/3 later.
    states = wait_for("both nodes idle in sinfo", lambda: all_idle(machine), timeout=120)
    print(machine.output("sinfo"))
    assert states == {"node1": "idle", "node2": "idle"}
    assert "Slurmctld(primary) at hub is UP" in machine.output("scontrol ping")


def test_same_accounts_and_shared_homes_on_every_machine(cluster):
    """alice and bob have the same uid and gid everywhere, and a file in a home is the same file everywhere."""
    ids = cluster.run_everywhere("id alice; id bob")
    assert len(set(ids.values())) == 1, ids
    assert "uid=1001(alice) gid=1001(alice)" in ids["hub"]
    cluster["node2"].run("runuser -u alice -- sh -c 'echo from node2 > /home/alice/hhw-shared.txt'")
    try:
        assert cluster["hub"].output("cat /home/alice/hhw-shared.txt") == "from node2"
        assert cluster["node1"].output("stat -c '%U %a' /home/alice/hhw-shared.txt") == "alice 644"
    finally:
        cluster["hub"].run("rm -f /home/alice/hhw-shared.txt")


# -- a user's server, a job on a node -----------------------------------------------------


def test_a_server_is_a_slurm_job_on_a_compute_node_and_its_kernel_runs_there(hub, people, admin, request):
    """alice's server runs as her Slurm job on node1 or node2, never on the hub's machine; it answers through the
    hub, and code typed into her notebook runs on that node."""
    stop(hub, admin, "alice")
    wait_for("both nodes idle", lambda: all_idle(hub.machine), timeout=120)
    first = start(hub, people, admin, "alice", cpus="2")
    node = running_on(hub, "alice")
    assert node in NODES, f"alice's job runs on {node!r}"
    job = jobs(hub.machine, "alice")[0]
    assert (job["name"], job["cpus"], job["memory"], job["limit"]) == ("jupyter", "2", "1G", "1:00:00")
    assert kernel_hostname(first, "alice") == node
    assert first.server_api("alice").status_code == 200
    if isinstance(hub.machine, ContainerVM):
        cluster = request.getfixturevalue("cluster")
        assert cluster[node].run("pgrep -u alice -f jupyterhub-singleuser", check=False).returncode == 0
        assert cluster["hub"].run("pgrep -u alice -f jupyterhub-singleuser", check=False).returncode != 0
    record("slurm-spawn-first", {"seconds": round(first.spawn_seconds or 0, 1), "node": node})


def test_two_users_land_where_the_scheduler_puts_them(hub, people, admin, request):
    """With alice's 2-CPU server on one node, bob's 2-CPU server can only go to the other; each user's server
    is where squeue says their job is."""
    alice = hub.session(people["alice"])
    if len(jobs(hub.machine, "alice")) != 1 or jobs(hub.machine, "alice")[0]["cpus"] != "2":
        alice = start(hub, people, admin, "alice", cpus="2")
    alice.wait_server("alice")
    bob = start(hub, people, admin, "bob", cpus="2")
    where = {"alice": running_on(hub, "alice"), "bob": running_on(hub, "bob")}
    assert set(where.values()) == set(NODES), where
    assert kernel_hostname(bob, "bob") == where["bob"]
    assert node_states(hub.machine) == {"node1": "alloc", "node2": "alloc"}
    record("slurm-spawn-later", {"seconds": round(bob.spawn_seconds or 0, 1), "where": where})
    if isinstance(hub.machine, ContainerVM):  # what each machine uses with one server on each node
        cluster = request.getfixturevalue("cluster")
        rss = cluster.run_everywhere("ps -eo rss= | awk '{s += $1} END {print int(s / 1024)}'")
        record("slurm-memory-mib", {name: int(mib) for name, mib in rss.items()})


def test_a_server_waits_in_a_busy_queue_and_starts_when_a_node_frees_up(hub, people, admin):
    """alice's server (2 CPUs) fills one node and an ordinary batch job of bob's (2 CPUs) the other: bob's server
    waits in Slurm's queue, the spawn page says why, and it starts once the batch job ends (within start_timeout)."""
    person = people["bob"]  # (skips here when the run has no bob, before anything is submitted)
    if not any(j["cpus"] == "2" and j["state"] == "RUNNING" for j in jobs(hub.machine, "alice")):
        start(hub, people, admin, "alice", cpus="2")
    stop(hub, admin, "bob")
    batch = hub.machine.output(
        "sudo -u bob sbatch --parsable -c 2 --mem=1G -J batchwork -o /dev/null --wrap 'sleep 600'"
    )
    try:
        wait_for("bob's batch job to run", lambda: jobs(hub.machine, "bob")[0]["state"] == "RUNNING", timeout=30)
        bob = hub.session(person)
        r = bob.post("/hub/api/users/bob/server", json={"cpus": "1"}, headers={"X-XSRFToken": bob.xsrf()})
        assert r.status_code == 202, r.text
        seen = progress_messages(bob, "bob", until="waits in Slurm's queue")
        assert re.fullmatch(r"Job \d+ " + re.escape(QUEUED), seen[-1]), seen
        assert {j["name"]: j["state"] for j in jobs(hub.machine, "bob")} == {
            "batchwork": "RUNNING",
            "jupyter": "PENDING",
        }
    finally:
        hub.machine.run(f"scancel {batch}")
    freed = time.monotonic()
    bob.wait_server("bob", timeout=180)
    record("slurm-queue-wait", {"seconds_from_free_to_answer": round(time.monotonic() - freed, 1)})
    assert running_on(hub, "bob") in NODES


def test_stopping_the_server_ends_the_job(hub, people, admin):
    """Stopping bob's server (the hub's stop, here by its REST API) cancels his job: it leaves the queue, and the
    job's log in his home says the server got its SIGTERM ("received signal 15, stopping")."""
    person = people["bob"]  # (skips here when the run has no bob)
    if not any(j["state"] == "RUNNING" for j in jobs(hub.machine, "bob")):
        stop(hub, admin, "bob")
        hub.session(person).start_server("bob", data=FORM, timeout=180)
    job = jobs(hub.machine, "bob")[0]
    client, token = admin
    assert client.api("DELETE", "/users/bob/server", token).status_code in (202, 204)
    wait_for("bob's job to leave the queue", lambda: not jobs(hub.machine, "bob"), timeout=60)
    assert not server(admin, "bob")
    log = f"cat /home/bob/.jupyter-job-{job['id']}.log"
    wait_for("the job's log to say the server got SIGTERM",
             lambda: STOPPED in hub.machine.output(log, check=False), timeout=30)  # fmt: skip
    assert all_idle(hub.machine) or "alloc" not in node_states(hub.machine).get(job["where"], "")


@pytest.mark.disruptive
def test_restarting_the_hub_leaves_the_jobs_running(hub, people, admin):
    """cleanup_servers = False: a restart of the hub cancels nobody's job, and alice's server answers again."""
    if not jobs(hub.machine, "alice"):
        start(hub, people, admin, "alice")
    before = jobs(hub.machine, "alice")
    hub.restart()
    assert jobs(hub.machine, "alice") == before
    client = hub.session(people["alice"])
    client.wait_server("alice", timeout=60)
    users.write_text(client, "alice", "after-restart.txt", "still here")  # in her home, through her server
    assert hub.machine.output("cat /home/alice/after-restart.txt") == "still here"
    hub.machine.run("rm -f /home/alice/after-restart.txt")


# -- what the hub and Slurm refuse --------------------------------------------------------


@pytest.mark.fault
@pytest.mark.parametrize("case", BAD_CHOICES, ids=lambda c: c.replace(" ", "-"))
def test_bad_choices_are_refused_before_any_job(hub, people, admin, case):
    """A value the form would not send (edited by hand) gets a 400 with the reason, and no job is submitted."""
    choices, message = BAD_CHOICES[case]
    stop(hub, admin, "alice")
    client = hub.session(people["alice"])
    r = client.post_form({**FORM, **choices})
    assert r.status_code == 400 and client.form_error(r) == f"Error: {message}"
    assert not jobs(hub.machine, "alice")


@pytest.mark.fault
def test_the_rest_api_is_checked_too_and_cannot_smuggle_lines_into_the_job_script(hub, people, admin):
    """The REST API skips the form: the same checks run before the job script is written. batchspawner puts every
    user option into the script's template, so an unknown one (here "prologue") is refused, not passed on. (As bob:
    the hub keeps a refused start's options for the next start without options, as the checks start alice's.)"""
    stop(hub, admin, "bob")
    client = hub.session(people["bob"])
    token = client.create_token("bob", note="stage 12 tests")
    r = client.api("POST", "/users/bob/server", token, json={"cpus": "1", "prologue": "touch /tmp/hhw-smuggled"})
    assert r.status_code == 400 and r.json()["message"] == UNKNOWN_OPTION
    r = client.api("POST", "/users/bob/server", token, json={"cpus": "3"})
    assert r.status_code == 400 and r.json()["message"] == BAD_CHOICES["more CPUs than a node has"][1]
    assert not jobs(hub.machine, "bob")


@pytest.mark.fault
def test_a_job_no_node_can_run_is_refused_at_once_with_slurms_reason(hub, people, admin):
    """16 GB is within the form's limits, but no node has that much for jobs (RealMemory=4096): sbatch refuses the
    job when it is submitted, and the spawn page says so in seconds, instead of waiting out start_timeout."""
    stop(hub, admin, "bob")
    client = hub.session(people["bob"])
    started = time.monotonic()
    r = client.post_form({**FORM, "memory_gb": "16"})
    seconds = time.monotonic() - started
    assert r.status_code == 400 and client.form_error(r) == f"Error: {TOO_MUCH_MEMORY}"
    assert seconds < 20, f"the refusal took {seconds:.0f} s"
    assert not jobs(hub.machine, "bob") and not server(admin, "bob")
    assert "Memory specification can not be satisfied" in hub.journal(lines=200)
    record("slurm-refusal", {"seconds": round(seconds, 1)})


@pytest.mark.fault
@pytest.mark.disruptive
def test_a_drained_node_gets_no_new_server(hub, people, admin):
    """An operator drains a node (maintenance): Slurm sends the next server to the other node; resumed, the node
    takes jobs again."""
    for name in ("alice", "bob"):
        stop(hub, admin, name)
    wait_for("both nodes idle", lambda: all_idle(hub.machine), timeout=120)
    # Slurm would pick node1 first (same weight, first in the list): drain that one.
    hub.machine.run("scontrol update nodename=node1 state=drain reason='hhw: maintenance'")
    try:
        assert node_states(hub.machine)["node1"] == "drain"
        assert "hhw: maintenance" in hub.machine.output("sinfo -R")
        start(hub, people, admin, "alice")
        assert running_on(hub, "alice") == "node2"
    finally:
        hub.machine.run("scontrol update nodename=node1 state=resume")
    wait_for("node1 idle again", lambda: node_states(hub.machine)["node1"] == "idle", timeout=60)
    stop(hub, admin, "alice")


@pytest.mark.fault
@pytest.mark.disruptive
def test_a_node_with_another_munge_key_is_not_let_in(hub, cluster):
    """node2 with a munge key of its own: its Slurm commands are refused and the controller's log says why; with
    the controller's key back, the node is idle again."""
    node2 = cluster["node2"]
    node2.run("cp -p /etc/munge/munge.key /root/munge.key.hhw-saved")
    since = hub.machine.clock()
    try:
        node2.run("rm -f /etc/munge/munge.key && runuser -u munge -- mungekey --create && systemctl restart munge")
        proc = node2.run("sinfo", check=False)
        assert proc.returncode != 0 and WRONG_KEY_NODE in proc.stderr, proc.stderr
        wait_for("slurmctld to log the bad credential",
                 lambda: WRONG_KEY_CONTROLLER in hub.machine.journal("slurmctld", since=since), timeout=30)  # fmt: skip
    finally:
        node2.run("cp -p /root/munge.key.hhw-saved /etc/munge/munge.key && systemctl restart munge slurmd")
    wait_for("node2 idle again", lambda: node_states(hub.machine).get("node2") == "idle", timeout=120)


# -- the chapter ----------------------------------------------------------------------------


def test_install_output_is_what_the_chapter_shows(machine, stage, request):
    """Each "You should see" block after a section of install-controller.sh (on the hub), install-node.sh and
    join-node.sh (on each node) is what that script printed there."""
    checked = check_chapter_outputs(machine, stage, "install-controller.sh")
    for node in NODES:
        checked += check_chapter_outputs(request.getfixturevalue("cluster")[node], stage, "install-node.sh")
    # join-node.sh's sinfo names the node it runs on: the chapter shows node1's.
    checked += check_chapter_outputs(request.getfixturevalue("cluster")["node1"], stage, "join-node.sh")
    print(f"{checked} quoted lines checked")
