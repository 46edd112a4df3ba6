"""The performance appendix shows only what the benchmarks measured: every figure, table and number
on book/performance.md comes from a results file in book/bench/ (written by `make bench`)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.book_pages import load_extension, typed_prose
from tests.harness.stages import REPO, all_stages

PAGE = REPO / "book" / "performance.md"
RESULTS = REPO / "book" / "bench"
EXT = REPO / "book" / "_ext" / "bench_plots.py"
DIRECTIVE = re.compile(r"^```\{(bench-figure|bench-table|bench-machine)\} (\S+)\s*$", re.M)
ROLE = re.compile(r"\{bench\}`([^`]+)`")
NUMBER = re.compile(r"(?<![\w.\-/])\d+(?:\.\d+)?(?![\w/])")


def extension():
    return load_extension(EXT)


def prose(text: str) -> str:
    return typed_prose(text, ROLE)


def results_files() -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(RESULTS.glob("*.json"))}


def test_every_number_typed_on_the_page_names_a_stage_or_a_debian_release():
    allowed = {f"{s.number:02d}" for s in all_stages()}
    allowed |= {str(r["debian_release"]) for r in results_files().values() if "debian_release" in r}
    typed = set(NUMBER.findall(prose(PAGE.read_text())))
    assert typed <= allowed, f"numbers typed into {PAGE.name} (draw them from book/bench/ instead): {typed - allowed}"


def test_every_number_the_page_quotes_is_found_in_the_results():
    ext, text = extension(), PAGE.read_text()
    quoted = ROLE.findall(text)
    assert quoted, "the page quotes no measured number"
    for path in quoted:
        value = ext.lookup(path)  # raises when the file or key is missing
        assert isinstance(value, int | float) and not isinstance(value, bool), f"{path} is not a number: {value!r}"


def test_every_figure_and_table_is_drawn_from_the_results():
    ext, text = extension(), PAGE.read_text()
    found = DIRECTIVE.findall(text)
    kinds = {kind for kind, _ in found}
    assert kinds == {"bench-figure", "bench-table", "bench-machine"}, kinds
    for kind, name in found:
        if kind == "bench-figure":
            assert ext.png(name).startswith(b"\x89PNG"), name
        elif kind == "bench-table":
            head, rows = ext.TABLES[name]()
            assert rows and all(len(r) == len(head) for r in rows), name
        else:
            assert "cores" in ext.machine_text(name), name
    shown = {name for kind, name in found if kind == "bench-machine"} | {p.split("/")[0] for p in ROLE.findall(text)}
    assert set(results_files()) <= shown, f"results files the page never shows: {set(results_files()) - shown}"


def test_every_figure_has_a_table_with_p50_and_p95():
    ext = extension()
    for name in ext.FIGURES:
        head, rows = ext.TABLES[name]()
        assert "p50" in " ".join(head) and "p95" in " ".join(head), f"{name}: {head}"


@pytest.mark.parametrize("name", sorted(results_files()))
def test_results_file_holds_the_machine_every_sample_and_summaries_that_match(name):
    ext, r = extension(), results_files()[name]
    assert {"cores", "memory_gib", "kernel", "host_debian", "load_average_1min_at_start"} <= set(r["host"])
    if name != "book-build" and not name.startswith("test-times"):  # the project's own speed: no VM of its own
        assert {"JupyterHub", "Debian"} <= set(r["versions"]), r.get("versions")

    def check(node: object, where: str) -> None:
        if isinstance(node, dict):
            if "samples" in node and "summary" in node and node["samples"]:
                s, values = node["summary"], node["samples"]
                assert s["n"] == len(values), where
                assert s["max"] == pytest.approx(max(values), abs=1e-3), where
                assert s["p50"] == pytest.approx(percentile(values, 50), abs=1e-3), where
                assert s["p95"] == pytest.approx(percentile(values, 95), abs=1e-3), where
            for key, value in node.items():
                check(value, f"{where}/{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                check(value, f"{where}/{i}")

    check(r, name)
    assert ext.results(name) == r


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def test_the_benchmarks_write_where_the_page_reads():
    common = (REPO / "scripts" / "bench" / "common.py").read_text()
    assert 'RESULTS = REPO / "book" / "bench"' in common
    assert Path(extension().RESULTS) == RESULTS
