#!/usr/bin/env bash
# Prepare the machine that runs the tests: a Docker Engine that answers,
# debootstrap (to build the base images) and Chromium (for screenshots).
# Idempotent: what is already there is left alone. Needs root (or sudo).
set -euo pipefail

log() { printf '[setup-host] %s\n' "$*"; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

missing=()
if ! docker info >/dev/null 2>&1 && ! command -v dockerd >/dev/null 2>&1; then
    missing+=(docker.io)
fi
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
command -v chromium >/dev/null 2>&1 || missing+=(chromium fonts-dejavu-core)
command -v git >/dev/null 2>&1 || missing+=(git)
command -v ssh >/dev/null 2>&1 || missing+=(openssh-client)

if [ "${#missing[@]}" -gt 0 ]; then
    log "installing from Debian: ${missing[*]}"
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1 apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if docker info >/dev/null 2>&1; then
    log "Docker Engine answers: $(docker version --format '{{.Server.Version}}')"
    exit 0
fi

if [ "$(ps -o comm= -p 1 2>/dev/null)" = "systemd" ]; then
    log "starting docker.service"
    $SUDO systemctl start docker
else
    # No systemd on this machine (a CI container, say): run the engine in the background, in a
    # session of its own (setsid), so that it outlives the shell or job that started it: a job runner
    # that stops a finished job's process group must not take the engine, and every test VM, with it.
    log "starting dockerd in the background (log: /var/log/hhw-dockerd.log)"
    $SUDO sh -c 'setsid nohup dockerd >>/var/log/hhw-dockerd.log 2>&1 < /dev/null &'
fi

for _ in $(seq 1 60); do
    if docker info >/dev/null 2>&1; then
        log "Docker Engine answers: $(docker version --format '{{.Server.Version}}')"
        exit 0
    fi
    sleep 1
done
log "gave up after 60 s waiting for the Docker Engine to answer 'docker info'; last lines of its log:"
tail -n 20 /var/log/hhw-dockerd.log >&2 || true
exit 1
