#!/usr/bin/env bash
# Build the base images the tests need, from Debian packages only (there is no
# container registry to pull from). For each Debian release asked for
# (HHW_DEBIAN="13 12" by default; 13 = trixie, 12 = bookworm):
#   hhw/vm:CODENAME          a fresh Debian "VM": systemd as PID 1, an SSH server, nothing else
#   debian:CODENAME-slim     the FROM of stage 03's single-user Dockerfile (the name a reader pulls)
# Each image carries a label with a hash of this script; an image with the
# current hash is kept, so a warm run takes a second. Releases build in parallel.
set -euo pipefail

log() { printf '[base-images] %s\n' "$*"; }

here="$(cd "$(dirname "$0")" && pwd)"
recipe_hash="$(sha256sum "$here/build-base-images.sh" | cut -c1-16)"
work="${HHW_CACHE:-$here/../.cache}/rootfs"
releases="${HHW_DEBIAN:-13 12}"

# The Debian mirror this machine already uses (so no host is named here);
# debootstrap's own default when the machine has none.
mirror="$( (grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}';
            grep -hs '^deb ' /etc/apt/sources.list | awk '{print $2}') | grep -v security | head -n1 || true)"
security="$( (grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}';
              grep -hs '^deb ' /etc/apt/sources.list | awk '{print $2}') | grep security | head -n1 || true)"

ca_bundle="${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}"

codename() {  # 12 -> bookworm, 13 -> trixie
    case "$1" in
        12) echo bookworm ;;
        13) echo trixie ;;
        *) echo "unknown Debian release $1 (12 or 13)" >&2; return 1 ;;
    esac
}

image_current() {  # NAME -> exit 0 when NAME exists and was built by this recipe
    [ "$(docker image inspect -f '{{index .Config.Labels "hhw.recipe"}}' "$1" 2>/dev/null || true)" = "$recipe_hash" ]
}

build() {  # SUITE NAME INCLUDES CMD [IMPORT-ARGS...]
    local suite="$1" name="$2" includes="$3" cmd="$4" dir; shift 4
    if image_current "$name"; then log "$name is up to date"; return; fi
    dir="$work/${name//[:\/]/-}"
    rm -rf "$dir"; mkdir -p "$dir"
    log "debootstrap $suite into $dir (about a minute)"
    debootstrap --variant=minbase --include="$includes" "$suite" "$dir" ${mirror:+"$mirror"} \
        >"$dir.log" 2>&1 || { tail -n 30 "$dir.log" >&2; exit 1; }
    # The release, its updates and its security suite, from this machine's mirrors
    # (debootstrap writes only "SUITE main").
    if [ -n "$mirror" ]; then
        rm -f "$dir/etc/apt/sources.list"
        {
            printf 'Types: deb\nURIs: %s\nSuites: %s %s-updates\nComponents: main\n' "$mirror" "$suite" "$suite"
            printf 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n'
            if [ -n "$security" ]; then
                printf '\nTypes: deb\nURIs: %s\nSuites: %s-security\nComponents: main\n' "$security" "$suite"
                printf 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n'
            fi
        } >"$dir/etc/apt/sources.list.d/debian.sources"
    fi
    # Trust what this machine trusts (a network that re-signs TLS needs it for pip).
    mkdir -p "$dir/usr/local/share/hhw"
    cp -L "$ca_bundle" "$dir/usr/local/share/hhw/host-ca.pem"
    : >"$dir/etc/machine-id"             # systemd makes a new one at first boot
    rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*
    if [ "$cmd" = '["/sbin/init"]' ]; then vm_tweaks "$dir"; fi
    log "importing $name"
    tar -C "$dir" -c . | docker import \
        -c "CMD $cmd" -c "LABEL hhw.recipe=$recipe_hash" -c 'ENV LANG=C.UTF-8' "$@" \
        - "$name" >/dev/null
    rm -rf "$dir" "$dir.log"
}

# What makes a container a usable test VM, and nothing a reader's machine needs.
vm_tweaks() {  # ROOTFS
    local dir="$1"
    # This kernel loads no modules: the unit would fail on every boot.
    ln -sf /dev/null "$dir/etc/systemd/system/systemd-modules-load.service"
    # /proc/sys is read-only in a container: Docker 26 (Debian 13) refuses every
    # `docker run` ("failed to disable IPv6 on container's interface eth0") unless told.
    mkdir -p "$dir/etc/systemd/system/docker.service.d"
    printf '[Service]\nEnvironment=DOCKER_ALLOW_IPV6_ON_IPV4_INTERFACE=1\n' \
        >"$dir/etc/systemd/system/docker.service.d/hhw-test-vm.conf"
    # The tests reach a VM as a reader reaches theirs: with an SSH key, as root.
    mkdir -p "$dir/etc/ssh/sshd_config.d"
    printf 'PermitRootLogin prohibit-password\nPasswordAuthentication no\n' \
        >"$dir/etc/ssh/sshd_config.d/hhw-test-vm.conf"
}

build_release() {  # 12|13
    local suite; suite="$(codename "$1")"
    build "$suite" "hhw/vm:$suite" \
        systemd,systemd-sysv,dbus,sudo,iproute2,procps,ca-certificates,openssh-server \
        '["/sbin/init"]'
    # Stands in for the image a reader pulls: it trusts this machine's CAs, so that
    # `pip install` in a reader's Dockerfile works behind a TLS-intercepting network.
    build "$suite" "debian:$suite-slim" ca-certificates '["bash"]' \
        -c 'ENV PIP_CERT=/usr/local/share/hhw/host-ca.pem'
}

pids=()
for release in $releases; do
    codename "$release" >/dev/null
    build_release "$release" &
    pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -E '^(hhw/vm|debian):' || true
exit "$status"
