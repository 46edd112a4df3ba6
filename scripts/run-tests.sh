#!/usr/bin/env bash
# Run every test (all stages, the repo-level tests, the book build) and fail loudly
# when pytest collected nothing: its exit code 5 must never pass as green.
set -uo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)
.venv/bin/pytest --durations=12 "$@"
rc=$?
echo "[run-tests] pytest exited $rc after $(( $(date +%s) - started )) s"
# Measurements the tests recorded (spawn, restart and issuance times, security scores).
for f in .cache/results/*.json; do
    [ -e "$f" ] && echo "[run-tests] $(basename "$f" .json): $(tr -d '\n ' < "$f")"
done
if [ "$rc" -eq 5 ]; then
    echo "[run-tests] pytest collected no tests: that is a failure here" >&2
    exit 1
fi
exit "$rc"
