#!/usr/bin/env bash
# Build the base images the tests need, from Debian packages only (there is no
# container registry to pull from):
#   hhw/vm:bookworm        a fresh Debian 12 "VM": systemd as PID 1, nothing else installed
#   debian:bookworm-slim   the FROM of stage 03's single-user Dockerfile (same name a reader uses)
# Each image carries a label with a hash of this script; an image with the
# current hash is kept, so a warm run takes a second.
set -euo pipefail

log() { printf '[base-images] %s\n' "$*"; }

here="$(cd "$(dirname "$0")" && pwd)"
recipe_hash="$(sha256sum "$here/build-base-images.sh" | cut -c1-16)"
suite=bookworm
work="${HHW_CACHE:-$here/../.cache}/rootfs"

# The Debian mirror this machine already uses (so no host is named here);
# debootstrap's own default when the machine has none.
mirror="$( (grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}';
            grep -hs '^deb ' /etc/apt/sources.list | awk '{print $2}') | grep -v security | head -n1 || true)"

ca_bundle="${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}"

image_current() {  # NAME -> exit 0 when NAME exists and was built by this recipe
    [ "$(docker image inspect -f '{{index .Config.Labels "hhw.recipe"}}' "$1" 2>/dev/null || true)" = "$recipe_hash" ]
}

build() {  # NAME INCLUDES CMD [ENV...]
    local name="$1" includes="$2" cmd="$3" dir; shift 3
    if image_current "$name"; then log "$name is up to date"; return; fi
    dir="$work/${name//[:\/]/-}"
    rm -rf "$dir"; mkdir -p "$dir"
    log "debootstrap $suite into $dir (about a minute)"
    debootstrap --variant=minbase --include="$includes" "$suite" "$dir" ${mirror:+"$mirror"} \
        >"$dir.log" 2>&1 || { tail -n 30 "$dir.log" >&2; exit 1; }
    # Same apt sources as this machine, when it runs the same release.
    if grep -qs "Suites: $suite" /etc/apt/sources.list.d/debian.sources; then
        cp /etc/apt/sources.list.d/debian.sources "$dir/etc/apt/sources.list.d/debian.sources"
        rm -f "$dir/etc/apt/sources.list"
    fi
    # Trust what this machine trusts (a network that re-signs TLS needs it for pip).
    mkdir -p "$dir/usr/local/share/hhw"
    cp -L "$ca_bundle" "$dir/usr/local/share/hhw/host-ca.pem"
    : >"$dir/etc/machine-id"             # systemd makes a new one at first boot
    rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*
    log "importing $name"
    tar -C "$dir" -c . | docker import \
        -c "CMD $cmd" -c "LABEL hhw.recipe=$recipe_hash" -c 'ENV LANG=C.UTF-8' "$@" \
        - "$name" >/dev/null
    rm -rf "$dir" "$dir.log"
}

build hhw/vm:bookworm \
    systemd,systemd-sysv,dbus,sudo,iproute2,procps,ca-certificates \
    '["/sbin/init"]'
# Stands in for the image a reader pulls: it trusts this machine's CAs, so that
# `pip install` in a reader's Dockerfile works behind a TLS-intercepting network.
build debian:bookworm-slim ca-certificates '["bash"]' \
    -c 'ENV PIP_CERT=/usr/local/share/hhw/host-ca.pem'
docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -E '^(hhw/vm|debian):' || true
