"""make test-latest: every stage's tests on stage images built with the newest releases instead of the pins.

    python -m scripts.latest [--stages 01 02 ...] [--debian 13] [--run DATE]

Stage by stage, in book order, continuing after failures: build the stage's image with every Python
and npm pin lifted (``scripts/latest/unpin.py``; Debian packages as they are), then run
``pytest steps/NN`` on it. A package whose newest release cannot be installed at all is held at its pin
(and reported) and the stage is built again, so the later stages can still be tried; a stage whose
install fails otherwise is reported, and the stages built on it are not run.

Results go to ``.cache/latest/run-DATE-dNN.json`` after every stage (a second invocation with the same
date goes on from there, reusing that day's images), and at the end to ``book/drift/latest.json``,
which the book's drift page (``book/drift.md``) shows, and as a table on the terminal.
The repo-level tests (tests/) are not run: they check the book's own files and the pinned images.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from . import REPO, VERSIONS
from .unpin import ENV, HOLD_ENV, failed_packages, stage_pins

STATE = REPO / ".cache" / "latest"
OUT = REPO / "book" / "drift" / "latest.json"
# Failures that only say the book's text names the pinned versions (expected once versions change).
EXPECTED = {
    "versions table": re.compile(r"versions table is out of date"),
    "output the chapter quotes": re.compile(r"quotes output that .* did not print"),
}
PINNED_EXPECTED = "expects the pinned version"  # a test asserting a version that the run changed


def log(msg: str) -> None:
    print(f"[test-latest] {msg}", flush=True)


def first_sentences(text: str, limit: int = 400) -> str:
    """The first two sentences (or lines) of an error, on one line."""
    text = re.sub(r"\s+", " ", text.strip())
    parts = re.split(r"(?<=[.!?:])\s+(?=[A-Z\[])", text)
    out = " ".join(parts[:2])
    return out if len(out) <= limit else out[: limit - 3] + "..."


def install_error(log_text: str) -> str:
    """The lines of an install log that say what went wrong (npm's and pip's error lines first)."""
    lines = [ln.strip() for ln in log_text.splitlines() if ln.strip()]
    wanted: list[str] = []
    for line in lines:
        if not re.match(r"(npm (error|ERR!)|ERROR:|E:|error:)", line, re.I) or re.search(r"complete log|_logs/", line):
            continue
        said = re.sub(r"^npm (error|ERR!)\s+(code|engine|notsup)?\s*", "", line)
        if said and said not in wanted:
            wanted.append(said)
    return re.sub(r"\s+", " ", "; ".join(wanted[:6] or lines[-3:]))[:600]


def newest(name: str, kind: str) -> str:
    """The newest release a registry offers of a package (asked with its own client on this machine).

    For pip that would be the newest for this machine's Python, not the test VM's: asked for npm only.
    """
    if kind != "npm":
        return ""
    try:
        out = subprocess.run(["npm", "view", name, "version"], capture_output=True, text=True, timeout=120,
                             check=False).stdout  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return ""
    m = re.search(r"\S+", out)
    return m.group(0) if m else ""


def classify(message: str) -> str:
    for kind, pattern in EXPECTED.items():
        if pattern.search(message):
            return kind
    return "break"


def junit_results(path: Path) -> dict:
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    failures = []
    if not path.exists():
        return {**counts, "failures": failures}
    for case in ET.parse(path).getroot().iter("testcase"):
        bad = case.find("failure")
        if bad is None:
            bad = case.find("error")
        if bad is not None:
            counts["failed"] += 1
            message = bad.get("message") or ((bad.text or "").strip().splitlines() or [""])[-1]
            failures.append({"test": case.get("name", "?"), "kind": classify((bad.text or "") + message),
                             "message": first_sentences(message)})  # fmt: skip
        elif case.find("skipped") is not None:
            counts["skipped"] += 1
        else:
            counts["passed"] += 1
    return {**counts, "failures": failures}


def versions_of(tag: str) -> dict:
    path = VERSIONS / f"{tag.replace('/', '_').replace(':', '_')}.json"
    return json.loads(path.read_text()) if path.exists() else {}


def installed(pin: dict, versions: dict) -> str:
    """The version a drift image got of a pinned package: in the hub's venv, npm, or the image a Dockerfile made."""
    if pin["kind"] == "npm":
        return versions.get("npm", {}).get(pin["name"], "")
    if pin["file"].startswith("images/"):
        name = pin["file"].split("/")[1]
        for ref, packages in versions.get("images", {}).items():
            if ref.split("/", 1)[1].split(":")[0] == name and pin["name"] in packages:
                return packages[pin["name"]]
        return ""
    return versions.get("pip", {}).get(pin["name"], "")


def machine_tags(prefix: str) -> list[str]:
    """The saved machines of a cluster stage whose versions were recorded: every tag that starts with ``prefix``
    (hhw/stage:latest-d13-12-KEY-), one per machine (tests/harness/cluster.py records each)."""
    stem = prefix.replace("/", "_").replace(":", "_")
    return sorted(f"{prefix}{p.stem[len(stem) :]}" for p in VERSIONS.glob(f"{stem}*.json"))


def merged_versions(tags: list[str]) -> dict:
    """What several machines got, as one record (the first machine that has a package names its version)."""
    merged: dict = {"pip": {}, "npm": {}, "images": {}}
    for tag in tags:
        got = versions_of(tag)
        for part in merged:
            for name, version in (got.get(part) or {}).items():
                merged[part].setdefault(name, version)
    return merged if any(merged.values()) else {}


def run_stage(stage, release: str, state: dict) -> dict:
    from tests.harness import images

    started = time.monotonic()
    result: dict = {"stage": stage.name, "number": f"{stage.number:02d}"}
    tag = None
    if stage.is_cluster:
        # Its machines boot from the base image and are provisioned by its own scripts (the pins lifted in each
        # machine's copy, tests/harness/cluster.py); what each got is recorded under its machine's tag.
        os.environ[HOLD_ENV] = " ".join(sorted(state["holds"]))  # the holds are part of the key
        result["machines"] = f"{images.STAGE_REPO}:{images.stage_prefix(stage)}{images.stage_key(stage)}-"
    while not stage.is_cluster:
        os.environ[HOLD_ENV] = " ".join(sorted(state["holds"]))
        try:
            tag = images.ensure_stage_image(stage)
            break
        except Exception as exc:  # any failure to build is this stage's result
            text = str(exc)
            logfile = re.search(r"full log: (\S+)\)", text)
            full = Path(logfile.group(1)).read_text() if logfile and Path(logfile.group(1)).exists() else text
            new = [n for n in failed_packages(full) if n not in state["holds"]]
            if new:
                kinds = {p.name: p.kind for p in stage_pins(stage.path, release)}
                for name in new:
                    state["holds"][name] = {"stage": stage.name, "error": install_error(full),
                                            "newest": newest(name, kinds.get(name, "pip"))}  # fmt: skip
                log(f"{stage.name}: the newest {', '.join(new)} could not be installed; held at the pin, again")
                continue
            result.update(status="install failed", error=install_error(full), seconds=round(time.monotonic() - started))
            return result
    result["tag"] = tag
    env = {**os.environ, HOLD_ENV: " ".join(sorted(state["holds"]))}
    junit = STATE / f"junit-{state['run']}-d{release}-{stage.name}.xml"
    junit.unlink(missing_ok=True)
    cmd = [str(REPO / ".venv/bin/pytest"), f"steps/{stage.number:02d}", "--debian", release, "-p", "no:cacheprovider",
           f"--junitxml={junit}", "-o", "junit_family=xunit2", "-q"]  # fmt: skip
    log(f"{stage.name}: {' '.join(cmd[1:])} on {tag or result['machines'] + '*'}")
    rc = subprocess.run(cmd, cwd=REPO, env=env, check=False).returncode
    result.update(junit_results(junit), pytest_exit=rc)
    recheck(stage, result, release, state)
    result["seconds"] = round(time.monotonic() - started)
    return result


RERUN_PASSED = "failed, then passed when run again alone"


def changed_pins(stage, result: dict, release: str) -> list[tuple[str, str]]:
    """(pinned, got) of every pin up to this stage that the run's image got in another version."""
    from tests.harness.stages import stages_up_to

    got = versions_of(result["tag"]) if result.get("tag") else {}
    pairs = []
    for s in stages_up_to(stage):
        for pin in (p.to_dict() for p in stage_pins(s.path, release)):
            ran = installed(pin, got) if got else ""
            if ran and ran != pin["pinned"]:
                pairs.append((pin["pinned"], ran))
    return pairs


def status_of(result: dict) -> str:
    breaks = [f for f in result["failures"] if f["kind"] == "break"]
    if breaks or (result.get("pytest_exit") not in (0, 1) and not result["failures"]):
        return "broke"
    if all(f["kind"] == RERUN_PASSED for f in result["failures"]):
        return "passed"
    return "passed but for the book's quoted versions"


def recheck(stage, result: dict, release: str, state: dict) -> None:
    """Run each test that broke once more, alone: on a shared machine a slow moment can fail a test.

    One that passes then is reported as such (the row stays green); one that fails again stays a break.
    """
    changed = changed_pins(stage, result, release)
    for f in result["failures"]:
        if f["kind"] == "break" and any(old in f["message"] and new in f["message"] for old, new in changed):
            f["kind"] = PINNED_EXPECTED
    breaks = [f for f in result["failures"] if f["kind"] == "break"]
    if breaks:
        env = {**os.environ, HOLD_ENV: " ".join(sorted(state["holds"]))}
        junit = STATE / f"junit-{state['run']}-d{release}-{stage.name}-again.xml"
        junit.unlink(missing_ok=True)
        cmd = [str(REPO / ".venv/bin/pytest"), f"steps/{stage.number:02d}", "--debian", release, "-p",
               "no:cacheprovider", "-k", " or ".join(f["test"] for f in breaks), f"--junitxml={junit}",
               "-o", "junit_family=xunit2", "-q"]  # fmt: skip
        log(f"{stage.name}: running again what broke: {' '.join(cmd[1:])}")
        subprocess.run(cmd, cwd=REPO, env=env, check=False)
        again = junit_results(junit)
        still = {f["test"] for f in again["failures"]}
        ran = still | ({f["test"] for f in breaks} if again["passed"] + again["failed"] else set())
        for f in breaks:
            if f["test"] in ran and f["test"] not in still:
                f["kind"] = RERUN_PASSED
        result["rerun"] = {"passed": again["passed"], "failed": again["failed"]}
    result["status"] = status_of(result)


def versions_table(stages, results: dict, release: str) -> list[dict]:
    """Every pin of the stages run: pinned, what the drift image got, whether it differs."""
    rows = []
    for stage in stages:
        r = results.get(stage.name)
        got = {}
        if r and r.get("tag"):
            got = versions_of(r["tag"])
        elif r and r.get("machines"):  # a cluster stage: what its machines got, recorded after its tests ran
            got = merged_versions(machine_tags(r["machines"]))
        for pin in (p.to_dict() for p in stage_pins(stage.path, release)):
            ran = installed(pin, got) if got else ""
            rows.append({**pin, "stage": stage.name, "ran_with": ran, "differs": bool(ran) and ran != pin["pinned"]})
    return rows


def write_report(state: dict, release: str, every_stage, seconds: float) -> dict:
    results = state["stages"]
    order = [s for s in every_stage if s.name in results]
    pins = versions_table(order, results, release)
    rows = []
    for stage in every_stage:
        r = results.get(stage.name)
        if r is None:
            rows.append({"stage": stage.name, "number": f"{stage.number:02d}", "status": "not run"})
            continue
        r = {k: v for k, v in r.items() if k != "tag"}
        r["differs"] = [f"{p['name']} {p['pinned']} -> {p['ran_with']}" for p in pins
                        if p["stage"] == stage.name and p["differs"]]  # fmt: skip
        rows.append(r)
    vm = next((versions_of(r["tag"]) for r in results.values() if r.get("tag")), {})
    kinds = {p["name"]: p["kind"] for p in pins}
    for name, held in state["holds"].items():
        held.setdefault("newest", newest(name, kinds.get(name, "pip")))
        # A release that does not even install breaks a reader who unpins: the stage's row says so.
        for r in rows:
            if r["stage"] == held["stage"] and r["status"] != "not run":
                r["error"] = (f"the newest {name} ({held['newest'] or '?'}) did not install: {held['error']}; "
                              f"held at its pin, the stage {r['status']}")  # fmt: skip
                r["status"] = "broke"
    report = {
        "date": state["run"],
        "finished": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "debian_release": int(release),
        "python": vm.get("python", ""),
        "node": vm.get("node", ""),
        "seconds_taken": round(seconds),
        "host": {
            "cores": os.cpu_count(),
            "load_average_1min": round(os.getloadavg()[0], 1),
            "kernel": platform.release(),
        },  # fmt: skip
        "covered": [r["number"] for r in rows if r["status"] != "not run"],
        "held": state["holds"],
        "repo_tests": "not run: they check the book's own files and the pinned stage images",
        "stages": rows,
        "pins": pins,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(report, indent=1) + "\n")
    return report


def print_table(report: dict) -> None:
    log(f"drift run {report['date']}, Debian {report['debian_release']}: {report['seconds_taken']} s")
    for r in report["stages"]:
        counts = f"{r.get('passed', 0)} passed, {r.get('failed', 0)} failed, {r.get('skipped', 0)} skipped"
        first = next((f"{f['test']}: {f['message']}" for f in r.get("failures", []) if f["kind"] == "break"),
                     r.get("error", ""))  # fmt: skip
        print(f"  {r['number']} {r['stage']:<20} {r['status']:<42} {counts if 'passed' in r else '':<36} "
              f"{'; '.join(r.get('differs', []))}  {first[:200]}")  # fmt: skip
    for name, why in report["held"].items():
        print(f"  held at the pin: {name} (stage {why['stage']}): {why['error'][:300]}")
    print(f"  written: {OUT.relative_to(REPO)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", nargs="*", help="stage numbers (default: every stage)")
    parser.add_argument("--debian", default=os.environ.get("HHW_DEBIAN", "13"))
    parser.add_argument("--run", default=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d"),
                        help="the run's date: images and results of the same date are reused")  # fmt: skip
    parser.add_argument("--recheck", nargs="*", default=[],
                        help="run again, alone, the tests that broke in these stages of the run")  # fmt: skip
    parser.add_argument("--report-only", action="store_true",
                        help="write book/drift/latest.json from the run's results so far, run nothing")  # fmt: skip
    args = parser.parse_args(argv)
    os.environ["HHW_DEBIAN"] = args.debian
    os.environ[ENV] = args.run
    sys.path.insert(0, str(REPO))
    from tests.harness.stages import all_stages, stages_up_to

    every = all_stages()
    wanted = [s for s in every if not args.stages or f"{s.number:02d}" in {n.zfill(2) for n in args.stages}]
    STATE.mkdir(parents=True, exist_ok=True)
    state_file = STATE / f"run-{args.run}-d{args.debian}.json"
    state = json.loads(state_file.read_text()) if state_file.exists() else {"run": args.run, "holds": {},
                                                                              "stages": {}, "seconds": 0}  # fmt: skip
    started = time.monotonic()
    for stage in [s for s in every if f"{s.number:02d}" in {n.zfill(2) for n in args.recheck}
                  and "failures" in state["stages"].get(s.name, {})]:  # fmt: skip
        os.environ[HOLD_ENV] = " ".join(sorted(state["holds"]))
        recheck(stage, state["stages"][stage.name], args.debian, state)
        state_file.write_text(json.dumps(state, indent=1) + "\n")
    for stage in [] if args.report_only or args.recheck else wanted:
        failed_before = [s.name for s in stages_up_to(stage)[:-1]
                         if state["stages"].get(s.name, {}).get("status") == "install failed"]  # fmt: skip
        if failed_before:
            state["stages"][stage.name] = {"stage": stage.name, "number": f"{stage.number:02d}", "status": "not run",
                                           "error": f"built on {failed_before[0]}, whose install failed"}  # fmt: skip
            continue
        log(f"{stage.name}: building with the newest releases, then its tests")
        state["stages"][stage.name] = run_stage(stage, args.debian, state)
        log(f"{stage.name}: {state['stages'][stage.name]['status']} ({state['stages'][stage.name]['seconds']} s)")
        state_file.write_text(json.dumps({**state, "seconds": state.get("seconds", 0) + time.monotonic() - started},
                                         indent=1) + "\n")  # fmt: skip
    if not args.report_only:
        state["seconds"] = state.get("seconds", 0) + time.monotonic() - started
        state_file.write_text(json.dumps(state, indent=1) + "\n")
    report = write_report(state, args.debian, every, state["seconds"])
    print_table(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
