#!/usr/bin/env python3
"""Benchmark: how long a user's server takes to start, per stage.

Boots a test VM of the stage (as the tests do), logs in as alice, then starts and
stops her server N times, timing each start from the spawn request to the first
page her server answers through the proxy. Writes .cache/results/spawn-NN.json and
prints a one-line summary. Traffic goes only to the test VM's ports on loopback.

    .venv/bin/python scripts/bench_spawn.py --stage 01 --runs 5
    .venv/bin/python scripts/bench_spawn.py --stage 03 --runs 5 --option image=JupyterLab
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.harness.fixtures import Hub, set_password
from tests.harness.images import boot_stage, ensure_stage_image
from tests.harness.stages import REPO, all_stages
from tests.harness.users import stop_server


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", default="01", help="stage number, e.g. 01 or 3")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a spawn-form field, e.g. image=JupyterLab (stages with an options form)",
    )
    args = parser.parse_args()
    stage = next(s for s in all_stages() if s.number == int(args.stage))
    vm = boot_stage(ensure_stage_image(stage), purpose=f"bench{stage.number:02d}")
    try:
        hub = Hub(vm, stage, vm.loopback_url(8000))
        if (stage.path / "start.sh").exists():
            hub.start()
        hub.wait_up()
        alice = set_password(vm, "alice")
        client = hub.session(alice)
        token = client.create_token(alice.name, note="benchmark")
        form = dict(o.split("=", 1) for o in args.option) or None
        seconds = []
        for _ in range(args.runs):
            client.start_server(alice.name, timeout=300, data=form)
            seconds.append(round(client.spawn_seconds or 0.0, 2))
            stop_server(client, alice.name, token, timeout=120)
    finally:
        vm.remove()
    result = {
        "stage": stage.name,
        "runs": len(seconds),
        "seconds": seconds,
        "p50": statistics.median(seconds),
        "max": max(seconds),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    out = REPO / ".cache" / "results" / f"spawn-{stage.number:02d}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{stage.name}: spawn p50 {result['p50']:.2f} s, max {result['max']:.2f} s over {len(seconds)} runs -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
