"""Stage 08: our own spawner: a form of images and sizes, limits per size, and Runboard (no notebook)."""

from __future__ import annotations

import html
import re
import time

import pytest
import requests

from tests.harness import browser, users
from tests.harness.chapter_outputs import check as check_chapter_outputs
from tests.harness.hubclient import HubClient
from tests.harness.kernels import kernel
from tests.harness.limits import container_env, docker_limits, states_while_running
from tests.harness.localcheck import test_target_local_passes_on_a_machine_built_by_the_book  # noqa: F401
from tests.harness.results import record
from tests.harness.secrets_audit import assert_no_leaks, secret_file_problems
from tests.harness.server_checks import test_your_server  # noqa: F401  (the checks of your own server)
from tests.harness.waits import wait_for

LAB, SCIPY, RUNBOARD = "JupyterLab", "JupyterLab with NumPy, pandas and Matplotlib", "Runboard (workflow runs)"
IMAGES = {LAB: "local/lab:1", SCIPY: "local/scipy:1", RUNBOARD: "local/runboard:1"}
GiB = 2**30
SIZES = {"small": (1, 1 * GiB), "medium": (2, 4 * GiB), "large": (2, 16 * GiB)}  # as in jupyterhub_config.py
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")

NOT_FOR_YOU = "(not available to you)"
UNKNOWN_SIZE = "Unknown size 'huge': choose one of small, medium, large."
UNKNOWN_IMAGE = (
    "Unknown image 'local/lab:1': choose one of JupyterLab, JupyterLab with NumPy, pandas and Matplotlib, "
    "Runboard (workflow runs)."
)
LARGE_REFUSED = "The size large is only for admins and the group big-memory: choose small or medium."
LAB_DIALOG = "The kernel for %1 appears to have died. It will restart automatically."
RESTARTER_LOG = "AsyncIOLoopKernelRestarter: restarting kernel (1/5), new random ports"
TOO_MANY_CPUS = (
    "Docker refused to start a large server: Range of CPUs is from 0.01 to 2.00, as there are only 2 CPUs available."
)
NOT_ALLOWED = "user alice is not allowed. This Runboard serves bob alone."


# -- helpers ------------------------------------------------------------------------------


def api(client: HubClient, token: str, method: str, path: str, **kw) -> requests.Response:
    """The hub's REST API with a token, over the client's own connection (its name, its CA)."""
    return client.request(method, f"/hub/api{path}", headers={"Authorization": f"token {token}"}, **kw)


@pytest.fixture(scope="module")
def admin(hub, people) -> tuple[HubClient, str]:
    """alice's logged-in client and an API token of hers (she is an admin)."""
    client = hub.session(people["alice"])
    return client, client.create_token("alice", note="stage 08 tests")


def server(admin, name: str) -> dict:
    """The hub's model of NAME's server ({} when none runs)."""
    r = api(*admin, "GET", f"/users/{name}")
    r.raise_for_status()
    return r.json()["servers"].get("", {})


def ensure_stopped(hub, admin, name: str) -> None:
    """Stop NAME's server if it runs, and wait until its container is gone."""
    if server(admin, name):
        r = api(*admin, "DELETE", f"/users/{name}/server")
        assert r.status_code in (202, 204), f"stopping {name}'s server: {r.status_code} {r.text[:300]}"
        wait_for(f"{name}'s server to stop", lambda: not server(admin, name), timeout=60)
    wait_for(f"container jupyter-{name} to be removed",
             lambda: users.container(hub.machine, f"jupyter-{name}") is None, timeout=60)  # fmt: skip


def start(hub, people, admin, name: str, image: str = LAB, size: str = "small") -> HubClient:
    """Log NAME in and start their server from the form with ``image`` and ``size`` (reusing one that matches)."""
    client = hub.session(people[name])
    info = users.container(hub.machine, f"jupyter-{name}")
    if info and server(admin, name).get("ready"):
        env = container_env(hub.machine, f"jupyter-{name}")
        if env.get("SERVER_SIZE") == size and env.get("JUPYTER_IMAGE") == IMAGES[image] and image != RUNBOARD:
            client.wait_server(name)
            return client
    ensure_stopped(hub, admin, name)
    client.start_server(name, data={"image": image, "size": size})
    print(f"{name}'s server ({image}, {size}) answered after {client.spawn_seconds:.1f} s")
    return client


# -- the form -----------------------------------------------------------------------------


def test_form_offers_every_image_and_size(hub, people, public, request):
    form = hub.session(people["alice"]).get("/hub/spawn")
    assert form.status_code == 200
    for field, names in (("image", IMAGES), ("size", SIZES)):
        for i, name in enumerate(names):
            checked = " checked" if i == 0 else ""  # the first of each is preselected
            assert f'<input type="radio" name="{field}" value="{html.escape(name)}"{checked}>' in form.text, name
    assert "small: 1 CPU, 1G memory" in form.text and "medium: 2 CPUs, 4G memory" in form.text
    assert "large: 2 CPUs, 16G memory (admins and the group big-memory)" in form.text
    assert NOT_FOR_YOU not in form.text
    # bob sees large too, greyed out.
    bobs = hub.session(people["bob"]).get("/hub/spawn").text
    assert re.search(r'value="large" disabled> large: .*' + re.escape(NOT_FOR_YOU), bobs)

    if not browser.CHROMIUM.exists():
        return
    bob = people["bob"]
    with browser.page(resolve={public.name: public.https_port}, insecure=True) as page:
        page.goto(f"https://{public.name}/hub/oauth_login?next=/hub/spawn")
        page.wait_for_selector("#login_field")
        page.fill("#login_field", bob.login)
        page.fill("#password", bob.password)
        page.click("button[type=submit]")
        page.wait_for_url(f"https://{public.name}/hub/spawn**")
        page.wait_for_selector("input[name=size]")
        page.set_viewport_size({"width": 1100, "height": 700})  # the whole form, Start included
        browser.save(page, "08-spawn-form", update_book=request.config.getoption("--update-screenshots"))


# -- limits -------------------------------------------------------------------------------


@pytest.mark.parametrize("size", list(SIZES))
def test_each_size_gets_its_limits(hub, people, admin, size):
    client = start(hub, people, admin, "alice", LAB, size)
    cpus, memory = SIZES[size]
    limits = docker_limits(hub.machine, "jupyter-alice")
    # MemorySwap = Memory: no swap on top of the limit.
    assert limits == {"Memory": memory, "MemorySwap": memory, "NanoCpus": cpus * 10**9}
    record(f"spawn-08-{size}", {"seconds": round(client.spawn_seconds or 0, 1)})


def test_thread_variables_and_image_name_in_the_server(hub, people, admin):
    client = start(hub, people, admin, "alice", LAB, "large")
    names = ", ".join(repr(v) for v in (*THREAD_VARIABLES, "CPU_LIMIT", "MEM_LIMIT", "SERVER_SIZE", "JUPYTER_IMAGE"))
    with kernel(client, "alice") as k:
        seen = k.execute(f"import os\nfor v in [{names}]: print(v, os.environ.get(v))")
    env = dict(line.split(" ", 1) for line in seen.strip().splitlines())
    assert {v: env[v] for v in THREAD_VARIABLES} == dict.fromkeys(THREAD_VARIABLES, "2")
    assert env["CPU_LIMIT"] == "2.0" and env["MEM_LIMIT"] == str(16 * GiB) and env["SERVER_SIZE"] == "large"
    assert env["JUPYTER_IMAGE"] == "local/lab:1"


@pytest.mark.fault
@pytest.mark.disruptive
def test_memory_limit_kills_the_kernel_not_the_server(hub, people, admin):
    """small (1G): a kernel that fills 1.5 GiB is killed and restarted; the server and its container stay."""
    client = start(hub, people, admin, "alice", LAB, "small")
    since = hub.machine.clock()
    with kernel(client, "alice") as k:
        k.execute("kept = 42")
        states = states_while_running(k, "b = bytearray(1536 * 2**20)\nprint('allocated')")
        assert "restarting" in states and "stream: allocated" not in states, states
        # The same kernel answers again on a new WebSocket (as JupyterLab reconnects), as a new
        # process: what it held is gone.
        k.reconnect()
        assert k.execute("1+1").strip() == "2"
        assert "NameError" in k.execute("try:\n    kept\nexcept NameError as e:\n    print(type(e).__name__)")
    logs = hub.machine.output(f"docker logs --since {since} jupyter-alice 2>&1")
    assert RESTARTER_LOG in logs
    info = users.container(hub.machine, "jupyter-alice")
    assert info["State"]["Running"] and info["State"]["OOMKilled"] is True
    events = hub.machine.output(f"docker events --since {since} --until $(date +%s) --filter event=oom")
    assert "container oom" in events and "name=jupyter-alice" in events
    assert client.server_api("alice", "status").status_code == 200
    # What JupyterLab (of this image) shows the user when the kernel state turns to "restarting":
    lab = hub.machine.output("docker exec jupyter-alice grep -rlF 'appears to have died' /opt/venv/share/jupyter/lab")
    assert lab and LAB_DIALOG in hub.machine.output(f"docker exec jupyter-alice cat {lab.splitlines()[0]}")


# -- refusals -----------------------------------------------------------------------------


@pytest.mark.fault
def test_unknown_choices_are_refused_without_a_container(hub, people, admin):
    ensure_stopped(hub, admin, "bob")
    client = hub.session(people["bob"])
    r = client.post_form({"image": LAB, "size": "huge"})
    assert r.status_code == 400 and client.form_error(r) == f"Error: {UNKNOWN_SIZE}"
    r = client.post_form({"image": "local/lab:1", "size": "small"})  # the image itself, not its name
    assert r.status_code == 400 and client.form_error(r) == f"Error: {UNKNOWN_IMAGE}"
    r = client.post_form({"image": LAB})  # no size at all
    assert r.status_code == 400 and client.form_error(r) == "Error: No size chosen: choose one of small, medium, large."
    # The REST API skips the form: the spawner checks user_options again.
    token = client.create_token("bob", note="stage 08 tests")
    r = api(client, token, "POST", "/users/bob/server", json={"image": LAB, "size": "huge"})
    assert r.status_code == 400 and r.json()["message"] == UNKNOWN_SIZE
    assert users.container(hub.machine, "jupyter-bob") is None
    assert not server(admin, "bob")


@pytest.mark.fault
@pytest.mark.disruptive  # creates, then deletes, the hub's group big-memory
def test_large_is_for_admins_and_the_group_big_memory(hub, people, admin):
    ensure_stopped(hub, admin, "bob")
    client = hub.session(people["bob"])
    r = client.post_form({"image": LAB, "size": "large"})  # the greyed-out choice, posted by hand
    assert r.status_code == 403 and client.form_error(r) == f"Error: {LARGE_REFUSED}"
    token = client.create_token("bob", note="stage 08 tests")
    r = api(client, token, "POST", "/users/bob/server", json={"image": LAB, "size": "large"})
    assert r.status_code == 403 and r.json()["message"] == LARGE_REFUSED
    assert users.container(hub.machine, "jupyter-bob") is None
    assert LARGE_REFUSED in hub.journal(lines=200)

    # An admin puts bob in the group big-memory: the form offers him large, and it starts.
    assert api(*admin, "POST", "/groups/big-memory").status_code in (201, 409)
    try:
        assert api(*admin, "POST", "/groups/big-memory/users", json={"users": ["bob"]}).status_code == 200
        assert NOT_FOR_YOU not in client.get("/hub/spawn").text
        client.start_server("bob", data={"image": LAB, "size": "large"})
        assert docker_limits(hub.machine, "jupyter-bob")["Memory"] == 16 * GiB
    finally:
        api(*admin, "DELETE", "/groups/big-memory")
        ensure_stopped(hub, admin, "bob")


@pytest.mark.fault
@pytest.mark.disruptive
def test_a_size_with_more_cpus_than_the_machine_is_refused_by_docker(hub, people, admin):
    ensure_stopped(hub, admin, "alice")
    with hub.edited_config(sed='s/"large": {"cpu": 2,/"large": {"cpu": 4,/'):
        assert '"large": {"cpu": 4,' in hub.machine.output("grep large /etc/jupyterhub/jupyterhub_config.py")
        client = hub.session(people["alice"])
        r = client.post_form({"image": LAB, "size": "large"})
        assert r.status_code == 500 and client.form_error(r) == f"Error: {TOO_MANY_CPUS}"
        assert users.container(hub.machine, "jupyter-alice") is None
        assert TOO_MANY_CPUS in hub.journal(lines=200)


# -- Runboard: a server that is not a notebook --------------------------------------------


@pytest.mark.fault
@pytest.mark.disruptive  # writes a run into bob's volume
def test_runboard_serves_its_owner_only(hub, people, admin):
    ensure_stopped(hub, admin, "bob")
    bob = hub.session(people["bob"])
    hub.machine.run(
        "d=$(docker volume inspect -f '{{.Mountpoint}}' jupyterhub-user-bob 2>/dev/null) && mkdir -p $d/runs "
        '&& echo \'{"status": "finished"}\' > $d/runs/align-reads.json && chown -R 1000:1000 $d/runs',
        check=False,
    )
    started = time.monotonic()
    r = bob.post_form({"image": RUNBOARD, "size": "small"})
    assert r.status_code == 200 and r.url.endswith("/hub/spawn-pending/bob")
    # The hub's own check (GET /user/bob/api) needs no login; wait on it so no page view counts as activity.
    status = wait_for("Runboard to answer the hub's check",
                      lambda: (a := bob.get("/user/bob/api")).status_code == 200 and a, timeout=90)  # fmt: skip
    record("spawn-08-runboard", {"seconds": round(time.monotonic() - started, 1)})
    assert status.json() == {"version": "6.1.1", "app": "runboard"} and status.headers["X-JupyterHub-Version"]
    before = server(admin, "bob")["last_activity"]

    # bob, from the page the hub sent him to after the start: OAuth with the hub, then his runs.
    page = wait_for("the hub to send bob on", lambda: (p := bob.get("/hub/spawn-pending/bob")).ok and
                    "Runboard" in p.text and p, timeout=60)  # fmt: skip
    assert page.url.endswith("/user/bob/")
    assert "Runboard: bob&#x27;s workflow runs" in page.text or "Runboard: bob's workflow runs" in page.text
    assert "align-reads" in page.text and "finished" in page.text
    assert "Size small: 1.0 CPUs, 1024 MiB, image local/runboard:1." in page.text
    assert any(step.headers.get("Location", "").startswith("/hub/api/oauth2/authorize") for step in page.history)
    wait_for("Runboard to report bob's page view to the hub",
             lambda: server(admin, "bob")["last_activity"] > before, timeout=30)  # fmt: skip

    # alice, logged in (an admin, whom the hub would let into bob's JupyterLab): the hub asks her
    # to authorize Runboard; once she does, Runboard refuses her.
    alice = hub.session(people["alice"])
    consent = alice.get("/user/bob/")
    assert consent.status_code == 200 and "Authorize access" in consent.text
    scopes = re.findall(r'name="scopes" value="([^"]+)"', consent.text)
    xsrf = re.search(r'name="_xsrf" value="([^"]+)"', consent.text).group(1)
    refused = alice.post(consent.url.split(alice.base_url, 1)[1], data={"_xsrf": xsrf, "scopes": scopes})
    assert refused.status_code == 403 and refused.url.endswith("/user/bob/")
    assert NOT_ALLOWED in html.unescape(refused.text)

    # Nobody logged in: sent to the hub's login page.
    anonymous = hub.client().get("/user/bob/")
    assert anonymous.url.split(anonymous.url.split("/hub/")[0], 1)[1].startswith("/hub/login?next=")
    assert [step.status_code for step in anonymous.history] == [302, 302]
    assert users.container(hub.machine, "jupyter-bob")["Config"]["Image"] == "local/runboard:1"
    ensure_stopped(hub, admin, "bob")


def test_spawner_and_images_are_in_place(machine):
    """What the hub needs at its next start (also on your own machine): the module, the config's sizes, the images."""
    assert machine.output("stat -c '%a %U' /usr/local/lib/jupyterhub/sizedspawner.py") == "644 root"
    sizes = machine.output(
        "cd /tmp && set -a && . /etc/jupyterhub/secrets/jupyterhub.env && set +a && "
        "/opt/jupyterhub/bin/python -c 'from traitlets.config import PyFileConfigLoader as L; "
        'c = L("/etc/jupyterhub/jupyterhub_config.py").load_config(); '
        "print(c.JupyterHub.spawner_class.__name__, *c.SizedDockerSpawner.sizes)'"
    )
    assert sizes == "SizedDockerSpawner small medium large"
    for image in IMAGES.values():
        assert machine.run(f"docker image inspect {image}", check=False).returncode == 0, f"no image {image}"


def test_chapter_shows_what_install_printed(machine, stage):
    """Each "You should see" block after an install.sh section matches what it printed on this VM."""
    print(f"{check_chapter_outputs(machine, stage)} quoted lines checked")


def test_secret_files_are_private(machine, stage):
    """Every secret file of the stages so far: 0600 and root's, or a service's where it must read it (the reason
    is in tests/harness/secrets_audit.py)."""
    problems = secret_file_problems(machine, stage.number)
    assert not problems, "; ".join(problems)


# Keep this test last: it reads the logs after every other test of the stage has run.
def test_no_secret_of_the_tests_in_any_log(machine):
    """No password, API token, OAuth code or client secret the tests used, nor the machine's own secrets, in the
    journal, Traefik's access log or the containers' logs."""
    record("secrets-in-logs-08", assert_no_leaks(machine))
