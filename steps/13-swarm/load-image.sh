#!/usr/bin/env bash
# Stage 13, each worker: load the users' image from the file install.sh saved on
# the manager, copied here first (scp manager:/root/notebook-1.tar /root/).
set -euo pipefail

# [start:load]
docker load --input /root/notebook-1.tar
rm /root/notebook-1.tar
docker image ls local/*
# [end:load]
