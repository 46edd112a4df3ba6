#!/usr/bin/env bash
# Stage 14: keep it: a nightly backup of everything the hub needs, a restore, a teardown.
# Run as root from inside this directory, on a machine that finished stage 11.
set -euo pipefail

# [start:scripts]
install -m 0755 hub-backup.sh /usr/local/sbin/hub-backup
install -m 0755 hub-restore.sh /usr/local/sbin/hub-restore
install -d -m 0700 /var/backups/jupyterhub
# The step files this machine was built from go into every backup too (edited copies: your name).
printf 'STEPS_DIR=%s\n' "$(cd .. && pwd)" > /etc/default/hub-backup
cat /etc/default/hub-backup
# [end:scripts]

# [start:first]
hub-backup
# [end:first]

# [start:timer]
install -m 0644 hub-backup.service hub-backup.timer /etc/systemd/system/
systemd-analyze verify /etc/systemd/system/hub-backup.service /etc/systemd/system/hub-backup.timer
systemctl daemon-reload
systemctl enable --now hub-backup.timer
systemctl is-enabled hub-backup.timer
systemctl show --property=TimersCalendar --value hub-backup.timer
# [end:timer]
