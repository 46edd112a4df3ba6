"""Sphinx extension: the drift page, drawn from the last ``make test-latest`` run (book/drift/latest.json).

Nothing on the page is typed in: the run's date, machine, stages, versions and results all come
from the results file, read when the book is built (offline).

    ```{drift-summary}      when, on what, which stages the run covered, how long it took
    ```{drift-stages}       a row per stage: its result, the versions that differ, the first failure (red: broke)
    ```{drift-versions}     every pin of the stages run: pinned, what the run got
    ```{drift-held}         packages whose newest release could not be installed at all
    {drift}`covered_count`  one value from the results file (a key, or KEY/KEY/...), or DERIVED
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import Directive
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxRole

RESULTS = Path(__file__).resolve().parents[1] / "drift" / "latest.json"
STEPS = Path(__file__).resolve().parents[2] / "steps"
RED = {"broke", "install failed"}
STYLE = (
    "<style>tr.drift-red td{background:#f8d7da}tr.drift-green td{background:#e6f4ea}"
    "tr.drift-grey td{color:#666}tr.drift-changed td{font-weight:600}table.drift-table td{vertical-align:top}</style>"
)


def results() -> dict:
    """book/drift/latest.json, with a "not run" row for every stage of the book that it does not name
    (a stage added since the run)."""
    if not RESULTS.exists():
        raise LookupError(f"no results file {RESULTS.name} in book/drift/: run `make test-latest`")
    r = json.loads(RESULTS.read_text())
    named = {s["stage"] for s in r["stages"]}
    for path in sorted(STEPS.iterdir()):
        m = re.match(r"^(\d\d)-[a-z0-9-]+$", path.name)
        if m and path.is_dir() and path.name not in named:
            r["stages"].append({"stage": path.name, "number": m.group(1), "status": "not run",
                                "error": "this stage was added after the run"})  # fmt: skip
    r["stages"].sort(key=lambda s: s["number"])
    return r


def _ran(r: dict) -> list[dict]:
    return [s for s in r["stages"] if s["status"] != "not run"]


DERIVED: dict[str, Callable[[dict], object]] = {
    "covered_count": lambda r: len(_ran(r)),
    "stage_count": lambda r: len(r["stages"]),
    "broke_count": lambda r: sum(s["status"] in RED for s in r["stages"]),
    "differing_count": lambda r: sum(p["differs"] for p in r["pins"]),
    "pin_count": lambda r: len(r["pins"]),
    "held_count": lambda r: len(r["held"]),
    "minutes_taken": lambda r: round(r["seconds_taken"] / 60),
    "covered": lambda r: ", ".join(s["number"] for s in _ran(r)),
    "not_covered": lambda r: ", ".join(s["number"] for s in r["stages"] if s["status"] == "not run") or "none",
}


def lookup(path: str) -> object:
    r = results()
    if path in DERIVED:
        return DERIVED[path](r)
    value: object = r
    for key in path.split("/"):
        value = value[int(key)] if isinstance(value, list) else value[key]
    return value


def summary_text() -> str:
    r = results()
    ran = _ran(r)
    missing = [s["number"] for s in r["stages"] if s["status"] == "not run"]
    covered = ", ".join(s["number"] for s in ran)
    text = (
        f"Last run {r['date']} (finished {r['finished']}), on Debian {r['debian_release']} test VMs "
        f"(Python {r['python']}, Node.js {r['node']}), {r['host']['cores']} cores, "
        f"{round(r['seconds_taken'] / 60)} minutes. It covered stages {covered}"
    )
    text += f"; stages {', '.join(missing)} were not run in it." if missing else ": every stage."
    text += f" The repo-level tests were {r['repo_tests']}."
    return text


def stage_rows() -> tuple[list[str], list[tuple[str, list[str]]]]:
    head = ["stage", "result", "passed / failed / skipped", "versions that differ from the pins", "first failure"]
    rows = []
    for s in results()["stages"]:
        counts = f"{s['passed']} / {s['failed']} / {s['skipped']}" if "passed" in s else ""
        breaks = [f for f in s.get("failures", []) if f["kind"] == "break"]
        expected = [f for f in s.get("failures", []) if f["kind"] != "break"]
        if breaks:
            first = f"{breaks[0]['test']}: {breaks[0]['message']}"
            if len(breaks) > 1:
                first += f" (and {len(breaks) - 1} more)"
        elif s.get("error"):
            first = s["error"]
        elif expected:
            first = "; ".join(sorted({f"{f['test']} ({f['kind']})" for f in expected}))
        else:
            first = ""
        cls = "drift-red" if s["status"] in RED else ("drift-grey" if s["status"] == "not run" else "drift-green")
        rows.append((cls, [f"{s['number']} {s['stage']}", s["status"], counts, "; ".join(s.get("differs", [])), first]))
    return head, rows


def version_rows() -> tuple[list[str], list[tuple[str, list[str]]]]:
    head = ["package", "kind", "stage (file)", "pinned", "the run got"]
    rows = []
    r = results()
    for p in r["pins"]:
        got = p["ran_with"] or "(not recorded)"
        held = r["held"].get(p["name"])
        if held:
            got += f" (held at the pin: the newest, {held.get('newest') or '?'}, did not install)"
        cls = "drift-changed" if p["differs"] else ""
        rows.append((cls, [p["name"], p["kind"], f"{p['stage']} ({p['file']})", p["pinned"], got]))
    return head, rows


def held_rows() -> tuple[list[str], list[tuple[str, list[str]]]]:
    head = [
        "package held at its pin",
        "its newest release",
        "stage",
        "why: the install's error with the newest release",
    ]
    held = results()["held"].items()
    return head, [("drift-red", [name, h.get("newest", ""), h["stage"], h["error"]]) for name, h in held]


TABLES = {"drift-stages": stage_rows, "drift-versions": version_rows, "drift-held": held_rows}


def table_node(head: list[str], rows: list[tuple[str, list[str]]]) -> nodes.table:
    table = nodes.table(classes=["drift-table"])
    group = nodes.tgroup(cols=len(head))
    table += group
    group += [nodes.colspec(colwidth=1) for _ in head]

    def row(cells: list[str], cls: str = "") -> nodes.row:
        r = nodes.row(classes=[cls] if cls else [])
        for cell in cells:
            r += nodes.entry("", nodes.paragraph(text=cell))
        return r

    group += nodes.thead("", row(head))
    group += nodes.tbody("", *(row(cells, cls) for cls, cells in rows))
    return table


class DriftTable(Directive):
    def run(self) -> list[nodes.Node]:
        try:
            head, rows = TABLES[self.name]()
        except (LookupError, KeyError) as exc:
            raise self.error(f"{self.name}: {exc}") from exc
        if not rows:
            return [nodes.paragraph(text="None in the last run.")]
        return [nodes.raw("", STYLE, format="html"), table_node(head, rows)]


class DriftSummary(Directive):
    def run(self) -> list[nodes.Node]:
        try:
            return [nodes.paragraph(text=summary_text(), classes=["drift-summary"])]
        except (LookupError, KeyError) as exc:
            raise self.error(f"drift-summary: {exc}") from exc


class DriftValue(SphinxRole):
    def run(self) -> tuple[list[nodes.Node], list[nodes.system_message]]:
        try:
            return [nodes.Text(str(lookup(self.text)))], []
        except (LookupError, KeyError, IndexError, ValueError) as exc:
            msg = self.inliner.reporter.error(f"drift: {self.text}: {exc}", line=self.lineno)
            return [], [msg]


def setup(app: Sphinx) -> dict[str, object]:
    for name in TABLES:
        app.add_directive(name, DriftTable)
    app.add_directive("drift-summary", DriftSummary)
    app.add_role("drift", DriftValue())
    return {"parallel_read_safe": True, "parallel_write_safe": True}
