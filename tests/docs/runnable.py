"""Find and run the documentation's runnable examples.

A fenced ``python`` block is runnable when the line just before its opening fence is ``<!-- runnable -->`` (an
HTML comment: invisible on the site and on GitHub). The runnable blocks of one page run in order, in one namespace,
so a later block can use what an earlier one defined. A marker that is not followed by a ``python`` block is an
error, so that a marked example can never be skipped silently.
"""

from __future__ import annotations

import dataclasses
import re
import traceback
from pathlib import Path

MARKER = "<!-- runnable -->"
_FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)")


@dataclasses.dataclass(frozen=True)
class Example:
    """One runnable block: its page, the line of its first code line (1-based), and its code."""

    path: Path
    line: int
    code: str


class ExampleError(AssertionError):
    """A runnable example raised, or a marker is misplaced; the message names the page and the line."""


def extract(path: Path, text: str | None = None) -> list[Example]:
    """The runnable examples of one Markdown file, in page order."""
    lines = (path.read_text(encoding="utf-8") if text is None else text).splitlines()
    examples: list[Example] = []
    i = 0
    while i < len(lines):
        if lines[i].strip() != MARKER:
            i += 1
            continue
        fence = _FENCE.match(lines[i + 1]) if i + 1 < len(lines) else None
        if fence is None or fence.group(3) not in ("python", "py"):
            raise ExampleError(f"{path}:{i + 1}: {MARKER} must be followed directly by a ```python block")
        indent, marks = fence.group(1), fence.group(2)
        body: list[str] = []
        j = i + 2
        while j < len(lines) and not lines[j].strip().startswith(marks):
            body.append(lines[j][len(indent) :] if lines[j].startswith(indent) else lines[j])
            j += 1
        if j == len(lines):
            raise ExampleError(f"{path}:{i + 2}: the runnable block is never closed")
        examples.append(Example(path, i + 3, "\n".join(body) + "\n"))
        i = j + 1
    return examples


def run_page(examples: list[Example]) -> dict:
    """Run one page's examples in order in one namespace; raise ExampleError naming the failing block's line."""
    namespace: dict = {"__name__": "__docs_example__"}
    for example in examples:
        # Compiled with the page's name and padded to its line, so that a traceback points into the Markdown file.
        code = compile("\n" * (example.line - 1) + example.code, str(example.path), "exec")
        try:
            exec(code, namespace)
        except Exception as error:
            raise ExampleError(
                f"the runnable example at {example.path}:{example.line} failed: {type(error).__name__}: {error}\n"
                + "".join(traceback.format_exception(error)[-3:])
            ) from error
    return namespace


def documentation_files(repo: Path) -> list[Path]:
    """The Markdown files whose examples are checked: README.md and everything under docs/."""
    return [repo / "README.md", *sorted((repo / "docs").rglob("*.md"))]
