"""Every file a reader copies is shown in its chapter, and every include resolves."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.book_pages import BOOK, chapter_of, included, referenced
from tests.harness.stages import REPO, all_stages


@pytest.mark.parametrize("stage", all_stages(), ids=lambda s: s.name)
def test_every_step_file_is_included_by_its_chapter(stage):
    shown = included(chapter_of(stage.number))
    missing = [p.relative_to(REPO).as_posix() for p in stage.files() if p.resolve() not in shown]
    assert not missing, f"{chapter_of(stage.number).name} does not include: {missing}"


@pytest.mark.parametrize("page", sorted(BOOK.glob("*.md")), ids=lambda p: p.name)
def test_every_path_a_page_references_exists(page):
    missing = [p.as_posix() for p in referenced(page) if not p.exists()]
    assert not missing, f"{page.name} points at files that do not exist: {missing}"


@pytest.mark.parametrize("stage", all_stages(), ids=lambda s: s.name)
def test_install_sections_are_balanced(stage):
    """Each `# [start:NAME]` in a step script has its `# [end:NAME]`, and the chapter uses each."""
    chapter = chapter_of(stage.number).read_text()
    for script in stage.path.glob("*.sh"):
        text = script.read_text()
        starts = text.count("# [start:")
        assert starts == text.count("# [end:"), f"{script.name}: unbalanced sections"
        for line in text.splitlines():
            if line.startswith("# [start:"):
                name = line.removeprefix("# [start:").rstrip("]")
                assert f"# [end:{name}]" in text, f"{script.name}: no end for {name}"
                assert f'"{line}"' in chapter, f"{chapter_of(stage.number).name} never shows {script.name} {name}"


def test_every_what_goes_wrong_box_is_in_the_troubleshooting_index():
    """Each chapter's "What goes wrong" box is listed, by its title, on the troubleshooting page."""
    index = (BOOK / "troubleshooting.md").read_text()
    missing = []
    for stage in all_stages():
        page = chapter_of(stage.number)
        for title in re.findall(r"^:::\{admonition\} (.+)$", page.read_text(), re.M):
            if f"{stage.number:02d}: {title}]" not in index:
                missing.append(f"{page.name}: {title}")
    assert not missing, f"add these to book/troubleshooting.md: {missing}"


TROUBLE_ROW = re.compile(
    r"^\| (?P<see>.+?) \| .+? \| .+? \| \[(?P<nn>\d\d): [^\]]+\]\([^)]+\) \| `(?P<test>test_\w+)` \|$"
)


def test_every_troubleshooting_row_is_provoked_by_a_test_that_asserts_its_text():
    """Each row names the test that provokes it; that test exists, and its module asserts every quoted message."""
    lines = (BOOK / "troubleshooting.md").read_text().splitlines()
    rows = [line for line in lines if line.startswith("| ") and not line.startswith(("| You see", "| ---"))]
    assert rows, "no rows in book/troubleshooting.md"
    problems = []
    for row in rows:
        m = TROUBLE_ROW.match(row)
        if not m:
            problems.append(f"row without a box link and a test name: {row[:80]}")
            continue
        stage = next(s for s in all_stages() if s.number == int(m["nn"]))
        source = "\n".join(p.read_text() for p in stage.path.glob("test_*.py"))
        if f"def {m['test']}(" not in source:
            problems.append(f"{m['nn']}: no test {m['test']}")
        for message in re.findall(r"`([^`]+)`", m["see"]):
            if message not in source:
                problems.append(f"{m['nn']}: {m['test']}'s module never asserts {message!r}")
    assert not problems, "\n".join(problems)


def test_verification_blocks_count_the_tests_a_stage_has():
    """Each chapter's Verification output says "N passed" for the N tests `pytest steps/NN` collects."""
    proc = subprocess.run([sys.executable, "-m", "pytest", "steps", "--collect-only", "-q"],
                          cwd=REPO, capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    collected = [line for line in proc.stdout.splitlines() if "::" in line]
    wrong = []
    for stage in all_stages():
        count = sum(line.startswith(f"steps/{stage.name}/") for line in collected)
        page = chapter_of(stage.number).read_text()
        verification = page.split("## Verification", 1)[1].split("\n## ", 1)[0]
        said = re.search(r"=+ (\d+) passed", verification)
        if not said or int(said.group(1)) != count:
            wrong.append(f"{chapter_of(stage.number).name}: says {said and said.group(0)!r}, stage has {count}")
    assert not wrong, "\n".join(wrong)
