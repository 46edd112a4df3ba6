#!/usr/bin/env bash
# Give a hub user a new name (their GitHub login), keeping their files: stop their
# server, rename the user through the hub's REST API, copy their volume to the one
# the new name uses. The old volume stays until you remove it yourself.
# Usage, as root on the hub's machine, with an admin's API token (from /hub/token):
#   JUPYTERHUB_API_TOKEN=... bash rename-user.sh OLD-NAME NEW-NAME
set -euo pipefail
old=${1:?usage: rename-user.sh OLD-NAME NEW-NAME}
new=${2:?usage: rename-user.sh OLD-NAME NEW-NAME}
: "${JUPYTERHUB_API_TOKEN:?set JUPYTERHUB_API_TOKEN to an API token of an admin (make one at /hub/token)}"

# The hub's own API, on this machine's docker0 address (no TLS or DNS in between).
api="http://$(ip -4 -brief address show docker0 | awk '{print $3}' | cut -d/ -f1):8081/hub/api"
# The token goes to curl in a file, not on its command line (which every user can see in ps).
header=$(mktemp)
trap 'rm -f "$header"' EXIT
printf 'Authorization: token %s\n' "$JUPYTERHUB_API_TOKEN" > "$header"
call() { curl -sS -H @"$header" -o /dev/null -w '%{http_code}' "$@"; }

# DockerSpawner's names of containers and volumes escape all but a-z and 0-9
# (the volume of bob-smith is jupyterhub-user-bob-2dsmith): ask it for them.
escaped() {
    /opt/jupyterhub/bin/python -c 'import sys; from dockerspawner import DockerSpawner; print(DockerSpawner._escape(sys.argv[1]))' "$1"
}
from=$(escaped "$old")
to=$(escaped "$new")

status=$(call -X DELETE "$api/users/$old/server")
case $status in
    202|204) echo "stopping $old's server" ;;
    400) echo "$old has no running server" ;;
    *) echo "rename-user.sh: the hub answered $status to stopping $old's server" >&2; exit 1 ;;
esac
for _ in $(seq 60); do
    docker container inspect "jupyter-$from" >/dev/null 2>&1 || break
    sleep 1
done

# The hub renames only a user whose server has stopped: try for a while.
for _ in $(seq 30); do
    status=$(call -X PATCH -H 'Content-Type: application/json' -d "{\"name\": \"$new\"}" "$api/users/$old")
    [ "$status" = 200 ] && break
    sleep 1
done
[ "$status" = 200 ] || { echo "rename-user.sh: the hub answered $status to renaming $old" >&2; exit 1; }
echo "renamed $old to $new in the hub"
# The running hub still knows the user's server by the old name (its address
# /user/OLD/, its OAuth client) until it restarts. Users' servers keep running.
systemctl restart jupyterhub
for _ in $(seq 60); do curl -sf -o /dev/null "$api/" && break; sleep 1; done
echo "restarted the hub"

if docker volume inspect "jupyterhub-user-$from" >/dev/null 2>&1; then
    docker volume create "jupyterhub-user-$to" >/dev/null
    docker run --rm --user root --network none --entrypoint cp \
        -v "jupyterhub-user-$from:/from:ro" -v "jupyterhub-user-$to:/to" local/lab:1 -a /from/. /to/
    echo "copied volume jupyterhub-user-$from to jupyterhub-user-$to (remove the old one when $new has checked)"
fi
