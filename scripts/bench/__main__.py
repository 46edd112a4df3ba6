"""``python -m scripts.bench`` (``make bench``): every benchmark in turn, each bounded in rounds and time.

python -m scripts.bench                     all of them (about 20 minutes on 2 cores)
python -m scripts.bench --only spawn-docker --rounds 2    one, quickly (for development)
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from . import concurrency, project, proxies, restart, spawn
from .common import Budget, clean_up, install_signal_handlers, progress

# name -> (run(rounds, budget), default rounds, time budget in seconds)
BENCHMARKS: dict[str, tuple[Callable[[int, Budget], object], int, float]] = {
    "spawn-local": (spawn.run_local, 8, 90),
    # These three share one stage-05 VM, in this order.
    "spawn-docker": (spawn.run_docker, 8, 400),
    "proxies": (proxies.run, 8, 120),
    "hub-restart": (restart.run, 3, 60),
    # A VM of its own: it adds fifty users to the hub's config.
    "concurrency": (lambda rounds, budget: concurrency.run(concurrency.LEVELS[: max(1, rounds)], budget), 3, 420),
    "book-build": (project.run, 2, 60),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", choices=sorted(BENCHMARKS), help="run only these (repeatable)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds of each benchmark (default: each its own)")
    args = parser.parse_args()
    install_signal_handlers()
    started = time.monotonic()
    failed = []
    try:
        for name, (run, rounds, seconds) in BENCHMARKS.items():
            if args.only and name not in args.only:
                continue
            progress(name, f"start ({args.rounds or rounds} rounds, at most {seconds:.0f} s of rounds)")
            try:
                run(args.rounds or rounds, Budget(seconds))
            except Exception as exc:  # one benchmark failing leaves the others' results
                failed.append(name)
                progress(name, f"FAILED: {type(exc).__name__}: {exc}")
    finally:
        clean_up()
    progress("all", f"done in {(time.monotonic() - started) / 60:.1f} min" + (f"; failed: {failed}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
