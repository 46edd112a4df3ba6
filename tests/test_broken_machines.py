"""Broken on purpose: `pytest steps/NN --target local` on a machine with one fault names that fault;
and the same checks from another machine (`--hub-url`).

Each case boots (once per stage) a VM that finished the stage by the book, breaks one thing as an
operator might, runs the reader's checks inside it, and asserts that the right check failed with
the right first sentence and that the others did not; then it puts the machine back.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.harness.acme import pebble_root, point_traefik_at_pebble
from tests.harness.fixtures import public_name
from tests.harness.images import boot_stage, ensure_stage_image
from tests.harness.localcheck import install_checks, run_checks, trust_in_system
from tests.harness.machine import ContainerVM
from tests.harness.results import record
from tests.harness.stages import REPO, Stage, all_stages
from tests.harness.waits import wait_for

PAGE = REPO / "book" / "check-your-server.md"  # its table quotes what each check said
CONFIG = "/etc/jupyterhub/jupyterhub_config.py"
ENV = "/etc/jupyterhub/secrets/jupyterhub.env"


@dataclass(frozen=True)
class Breakage:
    """One fault: how to cause it and undo it (shell, in the VM), the check that must name it, its sentence."""

    name: str
    stage: int
    breaks: str
    repairs: str
    check: str  # the test that must fail, e.g. test_your_server[hub_answers]
    sentence: str  # how its message starts
    select: str = "your_server"  # which tests the inner run runs (-k)
    args: tuple[str, ...] = ()
    hub_up: bool = True  # the hub answers once it is broken (the checks run once it does)

    def __str__(self) -> str:
        return self.name


RESTART_HUB = "systemctl restart jupyterhub"
BREAKAGES = [
    Breakage("hub_ip left at 127.0.0.1", 5,
             f"cp -p {CONFIG} /root/config.saved && "
             f"sed -i 's/^c.JupyterHub.hub_ip = .*/c.JupyterHub.hub_ip = \"127.0.0.1\"/' {CONFIG} && {RESTART_HUB}",
             f"mv /root/config.saved {CONFIG} && {RESTART_HUB}",
             "test_your_server[users_containers_reach_the_hub]",
             "The hub's API listens on 127.0.0.1:8081 only, so users' containers cannot reach it: "
             "set c.JupyterHub.hub_ip"),
    Breakage("cookie secret readable by everyone", 5,
             "chmod 0644 /etc/jupyterhub/secrets/cookie_secret", "chmod 0600 /etc/jupyterhub/secrets/cookie_secret",
             "test_your_server[secret_files_are_private]",
             "/etc/jupyterhub/secrets/cookie_secret can be read by others than root (mode 644): "
             "run `chmod 0600 /etc/jupyterhub/secrets/cookie_secret`"),
    Breakage("Traefik API password changed without a hub restart", 5,
             f"cp -p {ENV} /root/env.saved && sed -i 's/^TRAEFIK_API_PASSWORD=.*/TRAEFIK_API_PASSWORD=changed/' {ENV}",
             f"mv /root/env.saved {ENV}",
             "test_your_server[traefik_api_takes_the_hubs_password]",
             "Traefik's API on 127.0.0.1:8099 refuses the hub's password (401)"),
    Breakage("traefik.service not enabled", 5,
             "systemctl disable --quiet traefik", "systemctl enable --quiet traefik",
             "test_your_server[units_are_enabled_and_running]",
             "The unit traefik.service is disabled, not enabled, so it will not start after a reboot: "
             "run `systemctl enable --now traefik`"),
    Breakage("routes directory unreadable by Traefik", 5,
             "chmod 0700 /var/lib/jupyterhub-proxy", "chmod 2750 /var/lib/jupyterhub-proxy",
             "test_your_server[traefik_reads_the_routes]",
             "Traefik (user traefik) cannot read /var/lib/jupyterhub-proxy (drwx--"),
    Breakage("no allow rule", 5,
             f"cp -p {CONFIG} /root/config.saved && sed -i '/allowed_users\\|admin_users/d' {CONFIG} && {RESTART_HUB}",
             f"mv /root/config.saved {CONFIG} && {RESTART_HUB}",
             "test_your_server[an_allow_rule_lets_people_in]",
             "The hub started without an allow rule, so nobody can log in"),
    Breakage("an image in allowed_images never built", 5,
             f"cp -p {CONFIG} /root/config.saved && "
             f"sed -i 's|^c.DockerSpawner.allowed_images = {{|&\\n    \"Ghost\": \"local/ghost:1\",|' {CONFIG}",
             f"mv /root/config.saved {CONFIG}",
             "test_your_server[every_allowed_image_is_built]",
             "The image local/ghost:1, offered by allowed_images in /etc/jupyterhub/jupyterhub_config.py, "
             "was never built on this machine"),
    Breakage("the hub stopped", 5,
             "systemctl stop jupyterhub", "systemctl start jupyterhub",
             "test_your_server[hub_answers]",
             "The proxy at http://127.0.0.1:8000 answers 502 for /hub/login: the hub behind it does not answer",
             select="your_server and hub_answers", hub_up=False),
    Breakage("Traefik stopped", 5,
             "systemctl stop traefik", "systemctl start traefik jupyterhub",
             "test_your_server[hub_answers]",
             "The hub does not answer at http://127.0.0.1:8000/hub/login (ConnectionError)",
             select="your_server and hub_answers", hub_up=False),
    Breakage("certificate for another name", 6, "true", "true",
             "test_your_server[certificate_is_trusted_for_the_name]",
             "other.example.org refuses a TLS handshake for that name (TLSV1_UNRECOGNIZED_NAME): Traefik has no "
             "certificate for other.example.org",
             select="certificate_is_trusted", args=("--public-name", "other.example.org")),
]  # fmt: skip


@pytest.fixture(scope="module")
def vms() -> Iterator[dict[int, ContainerVM]]:
    """One VM per stage the cases need, booted when first asked for, each with the checks installed."""
    booted: dict[int, ContainerVM] = {}
    try:
        yield booted
    finally:
        for vm in booted.values():
            vm.remove()


def vm_of(vms: dict[int, ContainerVM], number: int) -> ContainerVM:
    if number not in vms:
        stage = next(s for s in all_stages() if s.number == number)
        vm = vms[number] = boot_stage(ensure_stage_image(stage), purpose=f"broken{number:02d}")
        if stage.serves_https:
            point_traefik_at_pebble(vm, public_name(stage))
            trust_in_system(vm, pebble_root(vm))
        wait_hub(vm, stage)
        install_checks(vm)
    return vms[number]


def wait_hub(vm: ContainerVM, stage: Stage) -> None:
    """Until the hub's login page answers 200 on the machine (as the reader's browser would get it)."""
    if stage.serves_https:
        name = public_name(stage)
        curl = f"curl -sf -o /dev/null --resolve {name}:443:127.0.0.1 https://{name}/hub/login"
    else:
        curl = "curl -sf -o /dev/null http://127.0.0.1:8000/hub/login"
    wait_for("the hub's login page", lambda: vm.run(curl, check=False).returncode == 0, timeout=120)


@pytest.mark.parametrize("breakage", BREAKAGES, ids=str)
def test_the_right_check_names_the_fault(vms, breakage: Breakage):
    vm = vm_of(vms, breakage.stage)
    stage = next(s for s in all_stages() if s.number == breakage.stage)
    vm.run(breakage.breaks, timeout=120)
    try:
        if breakage.hub_up:
            wait_hub(vm, stage)
        run = run_checks(vm, stage, "-k", breakage.select, *breakage.args)
    finally:
        vm.run(breakage.repairs, timeout=120)
        wait_hub(vm, stage)
    named = run.named(breakage.check)
    assert named.outcome in ("failed", "error"), f"{breakage.check} did not fail:\n{run.output[-3000:]}"
    sentence = re.sub(r'^failed on setup with "', "", named.message).removeprefix("Failed: ")
    assert sentence.startswith(breakage.sentence), f"{breakage.check} said: {named.message[:600]}"
    others = [o.name for o in run.outcomes if o.outcome in ("failed", "error") and o.name != breakage.check]
    if breakage.check.endswith("[hub_answers]"):
        others = []  # without a hub, every check that needs its pages stops at the same sentence
    assert not others, f"other checks failed too: {others}\n{run.output[-3000:]}"
    said = sentence.split("\n")[0]
    summary = run.output[run.output.find("= what is wrong =") :].splitlines()[:4]
    record(f"broken-{breakage.name.replace(' ', '-')}", {"check": breakage.check, "said": said, "summary": summary})
    assert f"| {breakage.name} | `{breakage.check}` | {said} |" in PAGE.read_text(), f"{PAGE.name} lacks: {said}"
    if breakage.name == "hub_ip left at 127.0.0.1":  # the page's example of a whole failure
        assert f"{breakage.check}: {said}" in summary, f"no 'what is wrong' line: {summary}"
        assert f"\n{breakage.check}: {said}\n" in PAGE.read_text()


def test_hub_url_checks_what_http_shows_from_another_machine(vms):
    """``pytest steps/06 --hub-url https://hub.example.org``, run where the hub's name resolves over the network
    (here: the VM itself, through /etc/hosts, as if it were another machine): the HTTPS checks and a login
    and start run; whatever needs a shell on the hub's machine skips, saying so."""
    vm = vm_of(vms, 6)
    stage = next(s for s in all_stages() if s.number == 6)
    name = public_name(stage)
    password = "hhw-" + secrets.token_urlsafe(12)
    vm.run(f"chpasswd <<'EOF'\nalice:{password}\nEOF")
    vm.run(f"grep -q ' {name}$' /etc/hosts || echo '127.0.0.1 {name}' >> /etc/hosts")
    run = run_checks(vm, stage, env={"HHW_USER": "alice", "HHW_PASSWORD": password},
                     target=("--hub-url", f"https://{name}"))  # fmt: skip
    wanted = ["hub_answers", "a_user_logs_in_and_starts_a_server", "certificate_is_trusted_for_the_name",
              "http_redirects_to_https", "hsts_is_sent", "tls_below_1_2_is_refused"]  # fmt: skip
    for check in wanted:
        assert run.named(f"test_your_server[{check}]").outcome == "passed", f"{check}:\n{run.output[-3000:]}"
    shell = run.named("test_your_server[secret_files_are_private]")
    assert shell.outcome == "skipped" and "needs a shell on the hub's machine" in shell.message
    assert run.count("failed") == run.count("error") == 0, run.output[-3000:]
    record("hub-url-06", {o: run.count(o) for o in ("passed", "skipped")})
