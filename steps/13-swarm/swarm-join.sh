#!/usr/bin/env bash
# Stage 13, on each worker: join the swarm, with the token from the manager.
set -euo pipefail

# [start:join]
docker swarm join --token "$(cat /root/swarm-worker-token)" hub:2377
rm /root/swarm-worker-token
# [end:join]
