#!/usr/bin/env bash
# Stage 12: a compute node's software: Slurm's node daemon, munge, and JupyterLab
# for the users' servers. Joining the cluster is join-node.sh, after the key copy.
# Run as root from inside this directory, on each compute node (node1, node2); it
# needs nothing from the hub's machine, so it can run while install-controller.sh does.
set -euo pipefail

# [start:packages]
apt-get update
apt-get install -y --no-install-recommends slurmd slurm-client munge python3-venv
slurmd -V
# [end:packages]

# [start:venv]
# What the users' servers run: the same path as on the hub's machine, plus JupyterLab.
python3 -m venv /opt/jupyterhub
/opt/jupyterhub/bin/pip install jupyterhub==6.1.1 jupyterlab==4.6.6 batchspawner==1.3.0
/opt/jupyterhub/bin/pip show jupyterlab batchspawner | grep -E '^(Name|Version):'
# [end:venv]
