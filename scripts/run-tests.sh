#!/usr/bin/env bash
# Run the tests (all of them, or the paths given) on test VMs of Debian $HHW_DEBIAN
# (13 when unset), and fail loudly when pytest collected nothing: its exit code 5
# must never pass as green.
set -uo pipefail
cd "$(dirname "$0")/.."
release="${HHW_DEBIAN:-13}"
started=$(date +%s)
load_before=$(cut -d' ' -f1 /proc/loadavg)
images_before=$(docker image ls hhw/stage --format '{{.Tag}}' 2>/dev/null | grep -c "^d$release-" || true)
echo "[run-tests] Debian $release test VMs: pytest ${*:-(every test)}"
junit=".cache/results/junit-d$release.xml"
mkdir -p .cache/results && rm -f "$junit"
# Two test modules at once (HHW_WORKERS=1: one at a time): each module keeps its order on one worker;
# a stage image another worker is building is waited for, not built twice.
workers="${HHW_WORKERS:-2}"
parallel=()
[ "$workers" -gt 1 ] && parallel=(-n "$workers" --dist loadfile)
.venv/bin/pytest "${parallel[@]}" --debian "$release" --durations=12 --junitxml="$junit" -o junit_family=xunit2 "$@"
rc=$?
echo "[run-tests] Debian $release: pytest exited $rc after $(( $(date +%s) - started )) s"
# How long each stage's tests took (its image built, if it had to be, included).
[ -s "$junit" ] && .venv/bin/python scripts/stage_times.py "$junit" "[run-tests] time"
# The same, with the machine's facts, for the book's performance page (book/bench/test-times.json is a copy).
[ -s "$junit" ] && .venv/bin/python -m scripts.test_times "$junit" ".cache/results/test-times-d$release.json" \
    --wall "$(( $(date +%s) - started ))" --images-before "$images_before" --workers "$workers" \
    --load-before "$load_before" --debian "$release"
# Measurements the tests recorded (spawn, restart and issuance times, security scores).
for f in .cache/results/*.json; do
    [ -e "$f" ] && echo "[run-tests] $(basename "$f" .json): $(tr -d '\n ' < "$f")"
done
if [ "$rc" -eq 5 ]; then
    echo "[run-tests] pytest collected no tests: that is a failure here" >&2
    exit 1
fi
exit "$rc"
