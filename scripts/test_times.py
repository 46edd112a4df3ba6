"""Write how long one ``make test`` run took, stage by stage, from pytest's JUnit XML (for the book).

    python -m scripts.test_times JUNIT OUT --wall SECONDS --images-before N --workers W --load-before L

OUT gets the machine's facts, the run's wall time, how many stage images were already saved when it
started (0: a cold run, every image built during it) and, per test module, its tests and seconds (setup,
call and teardown summed; with two workers, modules run two at a time, so they add up to more than the
wall time). run-tests.sh writes .cache/results/test-times-dNN.json after every run; the book's
performance page reads book/bench/test-times.json, a copy of one such file.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from scripts.bench.common import host_facts
from scripts.stage_times import module_times
from tests.harness.images import STAGE_REPO
from tests.harness.stages import all_stages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("junit")
    parser.add_argument("out")
    parser.add_argument("--wall", type=float, required=True, help="the run's wall time, in seconds")
    parser.add_argument("--images-before", type=int, required=True, help="stage images saved when it started")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--load-before", type=float, default=None, help="1-minute load average when it started")
    parser.add_argument("--debian", default="13")
    args = parser.parse_args()
    modules = module_times(args.junit)
    data = {
        "benchmark": "test-times",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seconds_taken": round(args.wall, 1),
        "host": {**host_facts(), "load_average_1min_at_start": args.load_before},
        "debian_release": args.debian,
        "workers": args.workers,
        "stage_images_before": args.images_before,
        "stage_images_repo": STAGE_REPO,
        "stages": len(all_stages()),
        "modules": {name: {"tests": n, "seconds": round(s, 1)} for name, (n, s) in sorted(modules.items())},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(data, indent=1) + "\n")


if __name__ == "__main__":
    main()
