"""The drift page shows only what the last `make test-latest` run found: every date, version and result on
book/drift.md comes from book/drift/latest.json; and the drift run's rewrite lifts the pins of the step files
it copies onto a build VM, and nothing else."""

from __future__ import annotations

import json
import re

from scripts.latest.unpin import FAILED, failed_packages, pins_in, rewrite, stage_pins
from tests.book_pages import load_extension, typed_prose
from tests.harness.stages import REPO, all_stages

PAGE = REPO / "book" / "drift.md"
RESULTS = REPO / "book" / "drift" / "latest.json"
EXT = REPO / "book" / "_ext" / "drift_table.py"
DIRECTIVE = re.compile(r"^```\{(drift-[a-z]+)\}\s*$", re.M)
ROLE = re.compile(r"\{drift\}`([^`]+)`")
NUMBER = re.compile(r"(?<![\w.\-/])\d+(?:\.\d+)*(?![\w/])")


def extension():
    return load_extension(EXT)


def prose(text: str) -> str:
    return typed_prose(text, ROLE)


def test_the_results_file_says_when_on_what_and_which_stages():
    r = json.loads(RESULTS.read_text())
    assert re.fullmatch(r"\d{4}-\d\d-\d\d", r["date"]), r["date"]
    assert str(r["debian_release"]) in {"12", "13"}
    names = {s.name for s in all_stages()}
    for s in r["stages"]:
        assert s["status"] in {"passed", "broke", "install failed", "not run",
                               "passed but for the book's quoted versions"}, s  # fmt: skip
        assert s["stage"] in names or s["status"] == "not run", f"{s['stage']} is no stage of the book"
        if s["status"] not in {"not run", "install failed"}:
            assert {"passed", "failed", "skipped", "failures"} <= set(s), s
    assert r["covered"] == [s["number"] for s in r["stages"] if s["status"] != "not run"]
    assert r["covered"], "the last run covered no stage"
    for p in r["pins"]:
        assert p["differs"] == (bool(p["ran_with"]) and p["ran_with"] != p["pinned"]), p


def test_no_version_or_result_is_typed_into_the_page():
    allowed = {f"{s.number:02d}" for s in all_stages()} | {str(json.loads(RESULTS.read_text())["debian_release"])}
    typed = set(NUMBER.findall(prose(PAGE.read_text())))
    assert typed <= allowed, (
        f"numbers typed into {PAGE.name} (draw them from book/drift/latest.json): {typed - allowed}"
    )


def test_every_table_and_value_on_the_page_is_drawn_from_the_results():
    ext, text = extension(), PAGE.read_text()
    found = set(DIRECTIVE.findall(text))
    assert found == {"drift-summary", *ext.TABLES}, found
    r = ext.results()
    for name, table in ext.TABLES.items():
        head, rows = table()
        assert all(len(cells) == len(head) for _, cells in rows), name
    head, rows = ext.TABLES["drift-stages"]()
    assert [cells[0] for _, cells in rows] == [f"{s['number']} {s['stage']}" for s in r["stages"]]
    assert [cells[1] for _, cells in rows] == [s["status"] for s in r["stages"]]
    red = {cells[0] for cls, cells in rows if cls == "drift-red"}
    assert red == {f"{s['number']} {s['stage']}" for s in r["stages"] if s["status"] in {"broke", "install failed"}}
    head, rows = ext.TABLES["drift-versions"]()
    assert [(cells[0], cells[3]) for _, cells in rows] == [(p["name"], p["pinned"]) for p in r["pins"]]
    summary = ext.summary_text()
    assert r["date"] in summary and f"Debian {r['debian_release']}" in summary
    covered = [s["number"] for s in r["stages"] if s["status"] != "not run"]
    assert ", ".join(covered) in summary, "the page must say which stages the last run covered"
    quoted = ROLE.findall(text)
    assert quoted, "the page quotes nothing from the run"
    for path in quoted:
        ext.lookup(path)  # raises when the key is missing


def test_every_stage_of_the_book_has_a_row_run_or_not():
    head, rows = extension().TABLES["drift-stages"]()
    assert {cells[0] for _, cells in rows} >= {f"{s.number:02d} {s.name}" for s in all_stages()}


def test_the_rewrite_lifts_pip_and_npm_pins_and_keeps_the_rest():
    text = (
        "apt-get install -y python3-venv nodejs npm\n"
        "/opt/jupyterhub/bin/pip install jupyterhub==6.1.1 jupyterlab==4.6.6\n"
        'npm install --global --engine-strict "configurable-http-proxy@$chp"\n'
        "cat > f <<'EOF'\npip install inside-a-heredoc==1.0\nEOF\n"
    )
    out, lifted = rewrite(text, "install.sh")
    assert lifted == ["jupyterhub", "jupyterlab", "configurable-http-proxy"]
    assert "apt-get install -y python3-venv nodejs npm\n" in out
    assert "pip install --upgrade jupyterhub jupyterlab ||" in out
    assert '"configurable-http-proxy@latest" ||' in out
    assert "inside-a-heredoc==1.0" in out
    held, lifted = rewrite(text, "install.sh", frozenset({"configurable-http-proxy"}))
    assert "configurable-http-proxy@$chp" in held and "configurable-http-proxy" not in lifted
    dockerfile, lifted = rewrite("RUN pip install --no-cache-dir numpy==2.4.6 pandas==3.1.1\n", "Dockerfile")
    assert dockerfile == "RUN pip install --upgrade --no-cache-dir numpy pandas\n" and FAILED not in dockerfile
    assert failed_packages(f"x\n{FAILED} jupyterhub jupyterlab\n") == ["jupyterhub", "jupyterlab"]


def test_the_pins_are_found_in_the_step_files():
    case = 'case "$VERSION_ID" in\n    12) chp=5.1.0 ;;\n    *)  chp=5.2.0 ;;\nesac\n'
    case += 'npm install "configurable-http-proxy@$chp"\n'
    assert [p.version for p in pins_in(case, "install.sh", "12")] == ["5.1.0"]
    assert [p.version for p in pins_in(case, "install.sh", "13")] == ["5.2.0"]
    pins = [p for s in all_stages() for p in stage_pins(s.path, "13")]
    names = {p.name for p in pins}
    assert {"jupyterhub", "jupyterlab", "configurable-http-proxy"} <= names, names
    assert all(p.version for p in pins), [p for p in pins if not p.version]
