"""Stage 13: users' servers as Docker Swarm services on two workers; the hub in a container on the manager."""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.harness import releases
from tests.harness.chapter_outputs import check as check_chapter_outputs
from tests.harness.cluster import Cluster
from tests.harness.hubclient import HubClient
from tests.harness.kernels import kernel, one_plus_one
from tests.harness.machine import docker
from tests.harness.results import record
from tests.harness.server_checks import test_your_server  # noqa: F401  (the checks of your own server)
from tests.harness.waits import WaitTimeout, wait_for

MACHINES = ("hub", "node1", "node2")
WORKERS = MACHINES[1:]
# The stand-in for the NFS export every node mounts (one Docker volume in every test VM).
SHARED = ("/srv/jupyterhub-users",)
UNITS = {"hub": ("jupyterhub", "docker"), "node1": ("docker",), "node2": ("docker",)}
IMAGE_FILE = "/root/notebook-1.tar"
TOKEN_FILE = "/root/swarm-worker-token"
# Which machine ran each script (the chapter's "You should see" blocks are checked against its log).
SCRIPT_MACHINE = {"install.sh": "hub", "swarm-init.sh": "hub", "install-node.sh": "node1",
                  "load-image.sh": "node1", "swarm-join.sh": "node1"}  # fmt: skip
NO_WORKER = re.compile(
    r"Spawn failed: No worker can take your server now \(no suitable node \([^)]*\)\): ask an admin\."
)
IMAGE_REFUSED = "Specifying image to launch is not allowed"
TIMINGS: dict[str, float] = {}
SPAWNS: list[float] = []  # each start's seconds, from the click to JupyterLab answering


def install_cluster(cluster: Cluster) -> None:
    """The chapter's commands: the manager's install.sh while the workers install Docker; the image file
    copied to each worker and loaded there."""
    started = time.monotonic()
    with ThreadPoolExecutor(len(MACHINES)) as pool:
        jobs = [pool.submit(cluster.run_script, "hub", "install.sh")]
        jobs += [pool.submit(cluster.run_script, name, "install-node.sh") for name in WORKERS]
        for job in jobs:
            job.result()
    moved = time.monotonic()
    cluster.copy("hub", IMAGE_FILE, WORKERS, mode="0600")
    with ThreadPoolExecutor(len(WORKERS)) as pool:
        list(pool.map(lambda name: cluster.run_script(name, "load-image.sh"), WORKERS))
    cluster.hub.run(f"rm {IMAGE_FILE}")
    # The harness handed every machine's Docker the Debian image a reader's `docker build` pulls; only the
    # manager builds, so the workers' copies go (less to save and to copy at each boot).
    for name in WORKERS:
        cluster[name].run(f"docker image rm {releases.slim_image()}")
    size = int(cluster.hub.output("docker image inspect -f '{{.Size}}' local/notebook:1"))
    record("swarm-install", {"install_seconds": round(moved - started), "image_mb": round(size / 1e6),
                             "image_move_seconds": round(time.monotonic() - moved, 1)})  # fmt: skip


def start_cluster(cluster: Cluster) -> None:
    """After every boot: the swarm and its network (the machines' addresses change between test runs;
    a reader's swarm survives a reboot), then the workers join with the manager's token."""
    started = time.monotonic()
    cluster.run_script("hub", "swarm-init.sh")
    cluster.copy("hub", TOKEN_FILE, WORKERS, mode="0600")
    with ThreadPoolExecutor(len(WORKERS)) as pool:
        list(pool.map(lambda name: cluster.run_script(name, "swarm-join.sh"), WORKERS))
    TIMINGS["swarm_ready"] = time.monotonic() - started


def nodes(cluster: Cluster) -> dict[str, tuple[str, str, str]]:
    """``docker node ls``: each node's status, availability and manager status."""
    out = cluster.hub.output("docker node ls --format '{{.Hostname}}|{{.Status}}|{{.Availability}}|{{.ManagerStatus}}'")
    return {h: (s, a, m) for h, s, a, m in (line.split("|") for line in out.splitlines())}


def task_node(cluster: Cluster, name: str) -> str | None:
    """The worker where the running task of NAME's service is, or None when none runs."""
    fmt = "'{{.Node}}|{{.CurrentState}}'"
    out = cluster.hub.output(f"docker service ps jupyter-{name} --filter desired-state=running --format {fmt}",
                             check=False)  # fmt: skip
    running = [line.split("|")[0] for line in out.splitlines() if "|Running" in line]
    return running[0] if running else None


def service_exists(cluster: Cluster, name: str) -> bool:
    return cluster.hub.run(f"docker service inspect jupyter-{name}", check=False).returncode == 0


def admin(hub, people) -> tuple[HubClient, str]:
    client = hub.session(people["alice"])
    return client, client.create_token("alice", note="stage 13 tests")


def ensure_stopped(hub, people, cluster: Cluster, name: str) -> None:
    """Stop NAME's server if the hub has one, and wait until its service is gone.

    A service the hub already counts as stopped (its poll found no running task) is left to the next start,
    which removes it ("Removing service that should have been cleaned up"): the hub calls the spawner's stop
    only for a server it thinks runs."""
    client, token = admin(hub, people)
    r = client.api("GET", f"/users/{name}", token)
    if r.json()["servers"]:
        client.api("DELETE", f"/users/{name}/server", token)
        wait_for(f"the hub to stop {name}'s server", lambda: not client.api("GET", f"/users/{name}", token).json()[
            "servers"], timeout=90)  # fmt: skip
        try:
            wait_for(f"service jupyter-{name} to be removed", lambda: not service_exists(cluster, name), timeout=60)
        except WaitTimeout:
            # The hub counts the server stopped but its service stayed (a task still being placed after a
            # drain or a lost worker, see the chapter): the next start removes it, as it says in its log.
            print(f"service jupyter-{name} outlived its stopped server; the next start removes it")


def start(hub, people, cluster: Cluster, name: str) -> HubClient:
    """Log NAME in and start their server (stopping a running one first); the spawn time is kept."""
    ensure_stopped(hub, people, cluster, name)
    client = hub.session(people[name])
    client.start_server(name)
    SPAWNS.append(client.spawn_seconds)
    print(f"{name}'s server answered after {client.spawn_seconds:.1f} s on {task_node(cluster, name)}")
    return client


def running(hub, people, cluster: Cluster, name: str) -> HubClient:
    """Log NAME in; their server as it runs, started only when it does not."""
    client = hub.session(people[name])
    if task_node(cluster, name) is None:
        return start(hub, people, cluster, name)
    client.wait_server(name, timeout=120)
    return client


def moved_or_stopped(admin_client: tuple[HubClient, str], cluster: Cluster, name: str, other: str) -> str | None:
    """After NAME's worker was drained or lost: "moved by the swarm" once the task runs on ``other``,
    "stopped by the hub" once the hub's poll (every 30 s) counted it stopped (SwarmSpawner counts a task
    still being placed as stopped), None before either."""
    client, token = admin_client
    if not client.api("GET", f"/users/{name}", token).json()["servers"]:
        return "stopped by the hub"
    return "moved by the swarm" if task_node(cluster, name) == other else None


def back_again(hub, people, cluster: Cluster, client: HubClient, admin_client: tuple[HubClient, str],
               name: str) -> HubClient:  # fmt: skip
    """NAME's server answering again: the moved one, or, once the hub has counted it stopped (its poll may
    come a little after the move), a new start, as the user would click."""
    by, token = admin_client
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline:
        if not by.api("GET", f"/users/{name}", token).json()["servers"]:
            return start(hub, people, cluster, name)
        r = client.get(f"/user/{name}/lab")
        if r.status_code == 200 and f"/user/{name}/" in r.url:
            return client
        time.sleep(2)
    raise AssertionError(f"{name}'s server neither answered nor was counted stopped within 150 s")


def set_availability(cluster: Cluster, node: str, availability: str) -> None:
    cluster.hub.run(f"docker node update --availability {availability} {node}")


def test_every_node_is_ready(cluster, hub):
    """Three nodes Ready and Active, the manager the leader; the overlay network attachable; the hub's
    container on it (the hub fixture waits until the hub answers)."""
    assert nodes(cluster) == {"hub": ("Ready", "Active", "Leader"), "node1": ("Ready", "Active", ""),
                              "node2": ("Ready", "Active", "")}  # fmt: skip
    network = cluster.hub.output("docker network inspect -f '{{.Driver}} {{.Scope}} {{.Attachable}}' jupyterhub")
    assert network == "overlay swarm true"
    for name in WORKERS:
        assert "local/notebook:1" in cluster[name].output("docker image ls --format '{{.Repository}}:{{.Tag}}'")
    # The hub's container is on the overlay network, under the name servers call it by.
    attached = cluster.hub.output("docker inspect -f '{{json .NetworkSettings.Networks}}' jupyterhub")
    assert '"jupyterhub"' in attached
    record("swarm-ready", {"seconds_from_boot_to_swarm": round(TIMINGS["swarm_ready"], 1)})


def test_the_hub_resolves_servers_names_at_each_connection(cluster):
    """No aiodns in the hub's image: its HTTP client asks the system's resolver (no 600-second cache of a
    server's old address, see the chapter's hub image)."""
    found = cluster.hub.output(
        "docker exec jupyterhub python3 -c 'import aiohttp.resolver as r; print(r.DefaultResolver.__name__)'"
    )
    assert found == "ThreadedResolver"
    assert cluster.hub.run("docker exec jupyterhub python3 -c 'import aiodns'", check=False).returncode != 0


def test_server_runs_as_a_service_task_on_a_worker(hub, people, cluster):
    """alice's server: a service of one task, on a worker (never the manager), its kernel runs 1+1 there."""
    client = start(hub, people, cluster, "alice")
    node = task_node(cluster, "alice")
    assert node in WORKERS, f"alice's task runs on {node}"
    spec = cluster.hub.output(
        "docker service inspect -f "
        "'{{.Spec.TaskTemplate.ContainerSpec.Image}}|{{.Spec.EndpointSpec.Mode}}|"
        "{{.Spec.TaskTemplate.Placement.Constraints}}' jupyter-alice"
    )
    image, mode, constraints = spec.split("|")
    assert image.startswith("local/notebook:1") and mode == "dnsrr" and constraints == "[node.role == worker]"
    container = cluster[node].output("docker ps --filter name=jupyter-alice --format '{{.ID}}'")
    assert container, f"no container of alice's task on {node}"
    assert cluster[node].output(f"docker exec {container} id -un") == "jovyan"
    assert one_plus_one(client, "alice") == "2"
    with kernel(client, "alice") as k:
        # A container's hostname is its short ID: the kernel runs in the container on that worker.
        assert k.execute("import socket; print(socket.gethostname())").strip() == container[:12]
    assert not cluster.hub.output("docker ps --filter name=jupyter-alice --format '{{.ID}}'"), "a task on the manager"


def test_two_users_are_spread_over_the_workers(hub, people, cluster):
    running(hub, people, cluster, "alice")
    start(hub, people, cluster, "bob")
    placed = {name: task_node(cluster, name) for name in ("alice", "bob")}
    assert set(placed.values()) == set(WORKERS), placed


def test_files_live_on_the_shared_path(hub, people, cluster):
    """Saved in JupyterLab on a worker, the file is in /srv/jupyterhub-users/alice on every node."""
    from tests.harness import users

    client = running(hub, people, cluster, "alice")
    users.write_text(client, "alice", "kept.txt", "saved on a worker\n")
    for name in MACHINES:
        assert cluster[name].output("cat /srv/jupyterhub-users/alice/kept.txt") == "saved on a worker"
    assert cluster.hub.output("stat -c '%u %a' /srv/jupyterhub-users/alice") == "1000 700"


def test_stopping_removes_the_service(hub, people, cluster):
    running(hub, people, cluster, "bob")
    node = task_node(cluster, "bob")
    ensure_stopped(hub, people, cluster, "bob")
    assert not service_exists(cluster, "bob")
    wait_for(f"bob's container to leave {node}",
             lambda: not cluster[node].output("docker ps -a --filter name=jupyter-bob --format '{{.ID}}'"),
             timeout=30)  # fmt: skip
    assert cluster.hub.run("test -d /srv/jupyterhub-users/bob", check=False).returncode == 0, "bob's files went"


@pytest.mark.fault
def test_a_user_cannot_choose_another_image(hub, people, cluster):
    """A demanding user asks the REST API for an image of their own: refused, nothing started. JupyterHub 6
    keeps a start's options for the next start, so bob's plain starts are refused the same way until he starts
    once with options of his own (empty ones)."""
    ensure_stopped(hub, people, cluster, "bob")
    client = hub.session(people["bob"])
    headers = {"X-XSRFToken": client.xsrf()}
    r = client.post("/hub/api/users/bob/server", json={"image": "evil/miner:latest"}, headers=headers)
    assert r.status_code == 400 and IMAGE_REFUSED in r.json()["message"], r.text[:300]
    assert not service_exists(cluster, "bob")
    since = cluster.hub.clock()
    again = client.get("/hub/spawn")
    assert again.status_code == 400, again.text[:300]
    assert IMAGE_REFUSED in cluster.hub.journal("jupyterhub", since=since)
    r = client.post("/hub/api/users/bob/server", json={"user_options": {}}, headers=headers)
    assert r.status_code in (201, 202), r.text[:300]
    client.wait_server("bob", timeout=120)
    assert task_node(cluster, "bob") in WORKERS
    ensure_stopped(hub, people, cluster, "bob")


@pytest.mark.fault
@pytest.mark.disruptive
def test_a_drained_worker_moves_its_server_and_the_next_start_avoids_it(hub, people, cluster):
    """The worker of alice's server is drained (maintenance): the swarm starts her server again on the other
    worker; she finds her files, not her kernel; bob's next start lands on the other worker too."""
    from tests.harness import users

    ensure_stopped(hub, people, cluster, "bob")
    client = running(hub, people, cluster, "alice")
    users.write_text(client, "alice", "before-drain.txt", "kept\n")
    lost = task_node(cluster, "alice")
    other = next(n for n in WORKERS if n != lost)
    set_availability(cluster, lost, "drain")
    try:
        moved = time.monotonic()
        # As for a lost worker (the last test): moved by the swarm, or counted stopped by the hub's poll.
        by_admin = admin(hub, people)
        outcome = wait_for("alice's server to move, or the hub to stop it",
                           lambda: moved_or_stopped(by_admin, cluster, "alice", other), timeout=90)  # fmt: skip
        client = back_again(hub, people, cluster, client, by_admin, "alice")
        TIMINGS["drain_move"] = time.monotonic() - moved
        print(f"alice's server after the drain of {lost}: {outcome}")
        assert task_node(cluster, "alice") == other
        assert users.read_text(client, "alice", "before-drain.txt") == "kept\n"
        start(hub, people, cluster, "bob")
        assert task_node(cluster, "bob") == other
        assert nodes(cluster)[lost] == ("Ready", "Drain", "")
    finally:
        set_availability(cluster, lost, "active")
    print(f"alice's server answered again on {other} {TIMINGS['drain_move']:.1f} s after the drain")


@pytest.mark.fault
@pytest.mark.disruptive
def test_no_worker_available_says_so_at_once(hub, people, cluster):
    """Both workers drained: the start fails within seconds with the swarm's reason, and no service is left."""
    ensure_stopped(hub, people, cluster, "bob")
    for name in WORKERS:
        set_availability(cluster, name, "drain")
    try:
        client = hub.session(people["bob"])
        began = time.monotonic()
        r = client.post("/hub/api/users/bob/server", json={"user_options": {}}, headers={"X-XSRFToken": client.xsrf()})
        assert r.status_code in (201, 202, 500), r.text[:300]

        def failed() -> str | None:
            events = client.get("/hub/api/users/bob/server/progress", headers={"X-XSRFToken": client.xsrf()},
                                timeout=60).text  # fmt: skip
            return events if "Spawn failed" in events else None

        events = wait_for("bob's start to fail", failed, timeout=60)
        seconds = time.monotonic() - began
        assert NO_WORKER.search(events), events[-1000:]
        print(NO_WORKER.search(events).group(0))
        assert seconds < 30, f"the user waited {seconds:.0f} s"
        wait_for("bob's service to be removed", lambda: not service_exists(cluster, "bob"), timeout=30)
    finally:
        for name in WORKERS:
            set_availability(cluster, name, "active")
    print(f"bob read why after {seconds:.1f} s")


# Keep these near the end: they read what the module measured and printed (before a worker is lost).
def test_chapter_shows_what_the_scripts_printed(cluster, stage):
    """Each "You should see" block after a section of a step script matches what it printed on its machine."""
    checked = sum(check_chapter_outputs(cluster[machine], stage, script) for script, machine in SCRIPT_MACHINE.items())
    assert checked
    print(f"{checked} quoted lines checked")


def vm_memory(vm) -> dict[str, int] | str:
    """A test VM's memory in MB: its processes' own (rss) and the page cache they caused, from the cgroups
    of the VM and of the containers its Docker runs (which Docker puts beside the VM's, not inside it).
    cgroup v1, as on this project's machines (docker stats shows nothing for these VMs there)."""
    ids = [docker("inspect", "-f", "{{.Id}}", vm.name).stdout.strip()]
    ids += vm.output("docker ps -q --no-trunc", check=False).split()
    total = {"rss_mb": 0, "cache_mb": 0}
    for full in ids:
        stat = Path(f"/sys/fs/cgroup/memory/docker/{full}/memory.stat")
        if not stat.exists():
            return docker("stats", "--no-stream", "--format", "{{.MemUsage}}", vm.name).stdout.strip()
        values = dict(line.split() for line in stat.read_text().splitlines())
        total["rss_mb"] += int(values["total_rss"]) // 2**20
        total["cache_mb"] += int(values["total_cache"]) // 2**20
    return total


def test_timings_and_memory(cluster):
    """What the closing note and the chapter report: spawn times, and each VM's memory."""
    memory = {name: vm_memory(cluster[name]) for name in MACHINES}
    spawns = {"first_spawn": round(SPAWNS[0], 1), "later_spawns": [round(s, 1) for s in SPAWNS[1:]]} if SPAWNS else {}
    record("swarm-timings", {**{k: round(v, 1) for k, v in TIMINGS.items()}, **spawns, "memory": memory})


# Last: it stops a worker's VM for good.
@pytest.mark.fault
@pytest.mark.disruptive
def test_a_worker_lost_what_the_user_sees_and_where_the_next_start_goes(hub, people, cluster):
    """The VM of alice's worker stops (a power cut): her open page gets no answer; the manager marks the node
    Down and the swarm starts her server again on the other worker, where she finds her files (not her kernel);
    bob's next start lands there too."""
    from tests.harness import users

    ensure_stopped(hub, people, cluster, "bob")
    client = running(hub, people, cluster, "alice")
    users.write_text(client, "alice", "before-the-power-cut.txt", "kept\n")
    lost = task_node(cluster, "alice")
    other = next(n for n in WORKERS if n != lost)
    docker("kill", cluster[lost].name)
    cut = time.monotonic()
    try:
        seen = client.get("/user/alice/lab", timeout=10)
        text = " ".join(re.sub(r"<[^>]+>", " ", seen.text).split())  # what the user reads
        what = f"{seen.status_code} {text[:300]}"
    except requests.RequestException as exc:
        what = f"no answer ({type(exc).__name__})"
    print(f"alice, right after her worker was lost: {what}")
    assert not what.startswith("200"), what
    wait_for(f"the manager to mark {lost} Down", lambda: nodes(cluster)[lost][0] == "Down", timeout=120)
    TIMINGS["lost_worker_down"] = time.monotonic() - cut
    # Two outcomes, depending on when the hub polls: the swarm's new task on the other worker keeps answering
    # under the same name; or the hub, polling while the new task is not yet running, reports her server
    # stopped (and removes the service), and alice starts it again.
    by_admin = admin(hub, people)
    outcome = wait_for("alice's server to move, or the hub to stop it",
                       lambda: moved_or_stopped(by_admin, cluster, "alice", other), timeout=120)  # fmt: skip
    client = back_again(hub, people, cluster, client, by_admin, "alice")
    TIMINGS["lost_worker_back"] = time.monotonic() - cut
    print(f"alice's server after the loss of {lost}: {outcome}")
    assert task_node(cluster, "alice") == other
    assert users.read_text(client, "alice", "before-the-power-cut.txt") == "kept\n"
    start(hub, people, cluster, "bob")
    assert task_node(cluster, "bob") == other
    print(f"{lost} Down after {TIMINGS['lost_worker_down']:.0f} s; alice's server answered on {other} after "
          f"{TIMINGS['lost_worker_back']:.0f} s; {dict(TIMINGS)}; spawns {SPAWNS}")  # fmt: skip
