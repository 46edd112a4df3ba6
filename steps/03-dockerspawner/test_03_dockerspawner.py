"""Stage 03: one container per user (DockerSpawner), a volume per user, a choice of images."""

from __future__ import annotations

from tests.harness import users
from tests.harness.hubclient import HubClient
from tests.harness.waits import wait_for

SMALL, SCIPY = "JupyterLab", "JupyterLab with NumPy, pandas and Matplotlib"
IMAGES = {SMALL: "local/lab:1", SCIPY: "local/scipy:1"}
NOT_BUILT_PAGE = "The image local/r:1 is not on this machine: build it, or take it off allowed_images."
LOOPBACK_CONTAINER_LOG = (
    "Failed to connect to my Hub at http://127.0.0.1:8081/hub/api (attempt 1/5). Is it running?",
    "Cannot connect to host 127.0.0.1:8081",
)
LOOPBACK_HUB_LOG = "server never showed up at"


def admin_token(hub, people) -> tuple[HubClient, str]:
    client = hub.session(people["alice"])
    return client, client.create_token("alice", note="stage 03 tests")


def ensure_stopped(hub, people, name: str) -> None:
    """Stop NAME's server if it runs, and wait until its container is gone."""
    client, token = admin_token(hub, people)
    if users.server_state(client, name, token):
        users.stop_server(client, name, token)
    wait_for(f"container jupyter-{name} to be removed", lambda: users.container(hub.machine, f"jupyter-{name}") is None,
             timeout=60)  # fmt: skip


def start(hub, people, name: str, image: str = SMALL) -> HubClient:
    """Log NAME in and start their server with ``image`` from the form (stopping a running one first)."""
    ensure_stopped(hub, people, name)
    client = hub.session(people[name])
    client.start_server(name, data={"image": image})
    print(f"{name}'s server ({image}) answered after {client.spawn_seconds:.1f} s")
    return client


def test_spawn_runs_users_container(hub, people, screenshot):
    alice = people["alice"]
    form = hub.session(alice).get("/hub/spawn")
    assert form.status_code == 200 and 'name="image"' in form.text
    assert SMALL in form.text and SCIPY in form.text
    screenshot(hub.url + "/hub/spawn", "03-image-choice", login=(alice.name, alice.password),
               wait_for="select[name=image]")  # fmt: skip

    client = start(hub, people, "alice", SMALL)
    assert client.server_api("alice", "status").status_code == 200
    info = users.container(hub.machine, "jupyter-alice")
    assert info and info["State"]["Running"]
    assert info["Config"]["Image"] == IMAGES[SMALL]
    assert hub.machine.output("docker exec jupyter-alice id -un") == "jovyan"
    screenshot(hub.url + "/user/alice/lab", "03-jupyterlab", login=(alice.name, alice.password),
               wait_for=".jp-LauncherCard")  # fmt: skip


def test_work_file_survives_stop_and_start(hub, people):
    client = start(hub, people, "alice")
    users.write_text(client, "alice", "kept.txt", "written before the stop\n")
    assert hub.machine.output("docker exec jupyter-alice cat /home/jovyan/work/kept.txt") == "written before the stop"
    first = users.container(hub.machine, "jupyter-alice")["Id"]

    client = start(hub, people, "alice")  # stops the server, then starts a new container
    assert users.container(hub.machine, "jupyter-alice")["Id"] != first
    assert users.read_text(client, "alice", "kept.txt") == "written before the stop\n"


def test_stop_removes_container_but_not_volume(hub, people):
    start(hub, people, "alice")
    assert users.volume_exists(hub.machine, "jupyterhub-user-alice")
    ensure_stopped(hub, people, "alice")
    assert users.container(hub.machine, "jupyter-alice") is None
    assert users.volume_exists(hub.machine, "jupyterhub-user-alice")
    mount = hub.machine.output("docker volume inspect -f '{{.Mountpoint}}' jupyterhub-user-alice")
    assert hub.machine.run(f"test -f {mount}/kept.txt", check=False).returncode == 0


def test_second_image_runs_that_image(hub, people):
    client = start(hub, people, "bob", SCIPY)
    assert users.container(hub.machine, "jupyter-bob")["Config"]["Image"] == IMAGES[SCIPY]
    versions = hub.machine.output(
        "docker exec jupyter-bob python -c "
        "'import numpy, pandas, matplotlib; print(numpy.__version__, pandas.__version__, matplotlib.__version__)'"
    )
    assert versions == "2.4.6 3.1.1 3.11.2"
    assert client.server_api("bob", "status").status_code == 200


def test_hub_restart_leaves_container_running(hub, people):
    client = start(hub, people, "bob")
    before = users.container(hub.machine, "jupyter-bob")["Id"]
    hub.restart()
    after = users.container(hub.machine, "jupyter-bob")
    assert after and after["Id"] == before and after["State"]["Running"], "the restart replaced bob's container"
    # The same browser session reaches the same server through the new proxy.
    assert client.wait_server("bob", timeout=60)
    assert client.server_api("bob", "status").status_code == 200


def test_image_never_built_fails_clearly(hub, people):
    ensure_stopped(hub, people, "bob")
    with hub.edited_config(append=('c.DockerSpawner.allowed_images["R"] = "local/r:1"',)):
        client = hub.session(people["bob"])
        assert "local/r:1" not in hub.machine.output("docker image ls --format '{{.Repository}}:{{.Tag}}'")
        client.get("/hub/spawn")
        r = client.post("/hub/spawn", data={"image": "R", "_xsrf": client.xsrf()})
        assert r.status_code == 500
        assert NOT_BUILT_PAGE in r.text, "the spawn page does not say which image is missing"
        assert users.container(hub.machine, "jupyter-bob") is None
        pending = client.get("/hub/spawn-pending/bob")
        assert "Spawn failed" in pending.text
        assert NOT_BUILT_PAGE in hub.journal(lines=100)


def test_hub_ip_loopback_leaves_container_unable_to_reach_hub(hub, people):
    """The classic mistake: hub_ip left at 127.0.0.1, which inside a container is the container itself."""
    ensure_stopped(hub, people, "bob")
    with hub.edited_config(append=('c.JupyterHub.hub_ip = "127.0.0.1"',)):
        client = hub.session(people["bob"])
        client.get("/hub/spawn")
        r = client.post("/hub/spawn", data={"image": SMALL, "_xsrf": client.xsrf()})
        assert r.status_code == 200 and "/hub/spawn-pending/bob" in r.url
        seen: list[str] = []

        def spawn_failed() -> bool:
            logs = hub.machine.run("docker logs jupyter-bob 2>&1", check=False)
            if logs.returncode == 0 and logs.stdout.strip():
                seen.append(logs.stdout)  # the container is removed when the hub gives up
            page = client.get("/hub/spawn-pending/bob")
            return "Spawn failed" in page.text

        wait_for("the hub to give up on bob's server", spawn_failed, timeout=120, interval=2)
        container_log = seen[-1] if seen else ""
        for message in LOOPBACK_CONTAINER_LOG:
            assert message in container_log, container_log[-2000:]
        assert LOOPBACK_HUB_LOG in hub.journal(lines=200)
        wait_for("bob's failed container to be removed", lambda: users.container(hub.machine, "jupyter-bob") is None)
