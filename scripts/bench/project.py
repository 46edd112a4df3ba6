"""The project's own speed: building the book (strictly, offline), timed on this machine.

``pytest steps/NN`` per stage is not timed here: a cold run builds every stage image (more than
this benchmark's whole budget). ``scripts/run-tests.sh`` prints each stage's time after every run.
"""

from __future__ import annotations

import subprocess
import tempfile
import time

from tests.harness.stages import REPO

from .common import Budget, repeat, summary, write_result


def run(rounds: int, budget: Budget) -> dict[str, object]:
    bench = "book-build"
    started = time.monotonic()
    seconds: list[float] = []

    def one(i: int) -> str:
        with tempfile.TemporaryDirectory(prefix="hhw-bench-book-") as out:
            t0 = time.monotonic()
            # Not strict: this page itself is drawn from the results that this run is still rewriting.
            proc = subprocess.run([str(REPO / ".venv" / "bin" / "jupyter-book"), "build", str(REPO), "--all",
                                   "--quiet", "--path-output", out],
                                  check=False, capture_output=True, text=True, timeout=600)  # fmt: skip
            if proc.returncode != 0:
                raise RuntimeError(f"the book did not build:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
            seconds.append(round(time.monotonic() - t0, 2))
        return f"book built in {seconds[-1]:.1f} s"

    repeat(bench, rounds, budget, one)
    data = {"command": "jupyter-book build . --all",
            "seconds": {"samples": seconds, "summary": summary(seconds)}}  # fmt: skip
    write_result(bench, data, started=started)
    return data
