"""The documentation's examples marked ``<!-- runnable -->`` run, each page in a fresh folder (see runnable.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.docs.runnable import MARKER, ExampleError, documentation_files, extract, run_page

REPO = Path(__file__).resolve().parents[2]
PAGES = {path: extract(path) for path in documentation_files(REPO)}
RUNNABLE = {path: examples for path, examples in PAGES.items() if examples}


def test_the_documentation_has_runnable_examples():
    # The checks below must have something to check: the getting-started page and subclassing.
    names = {path.name for path in RUNNABLE}
    assert {"getting-started.md", "subclassing.md"} <= names, names
    assert sum(len(e) for e in RUNNABLE.values()) >= 5


@pytest.mark.parametrize("path", sorted(RUNNABLE), ids=lambda p: str(p.relative_to(REPO)))
def test_runnable_examples_run(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    run_page(RUNNABLE[path])


def test_a_broken_example_fails_and_names_its_page_and_line(tmp_path):
    page = tmp_path / "broken.md"
    page.write_text(
        "# Broken\n\n"
        f"{MARKER}\n```python\nfrom brain_mtl import UNet\nvalue = 1\n```\n\n"
        "Text.\n\n"
        f"{MARKER}\n```python\nfrom brain_mtl import NoSuchName\n```\n"
    )
    examples = extract(page)
    assert [e.line for e in examples] == [5, 13]
    with pytest.raises(ExampleError, match=r"broken\.md:13 failed: ImportError: cannot import name 'NoSuchName'"):
        run_page(examples)


def test_a_failing_assertion_in_an_example_fails(tmp_path):
    page = tmp_path / "wrong.md"
    page.write_text(f"{MARKER}\n```python\nimport torch\nassert torch.zeros(2).shape == (3,)\n```\n")
    with pytest.raises(ExampleError, match=r"wrong\.md:3 failed: AssertionError"):
        run_page(extract(page))


def test_unmarked_blocks_are_not_run_and_a_misplaced_marker_is_an_error(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("```python\nraise SystemExit('never run')\n```\n")
    assert extract(page) == []
    page.write_text(f"{MARKER}\n\n```python\nx = 1\n```\n")
    with pytest.raises(ExampleError, match="must be followed directly"):
        extract(page)
    page.write_text(f"{MARKER}\n```bash\necho hi\n```\n")
    with pytest.raises(ExampleError, match="must be followed directly"):
        extract(page)


def test_examples_of_one_page_share_a_namespace_in_order(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(f"{MARKER}\n```python\nx = 2\n```\n\n{MARKER}\n```python\ny = x * 3\n```\n")
    before = os.getcwd()
    assert run_page(extract(page))["y"] == 6
    assert os.getcwd() == before  # running a page leaves the working folder as it was
