"""Generated blocks inside hand-written Markdown: the YAML, command-line and policy-check references in docs/.

Each block sits between a start and an end marker; regenerating rewrites only what lies
between them, so the prose around stays the authors'.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path


def replace_block(text: str, start: str, end: str, body: str, what: str) -> str:
    """``text`` with the block between ``start`` and ``end`` replaced by ``body`` (which holds both)."""
    head, found, rest = text.partition(start)
    if not found:
        raise ValueError(f"the page has no {what} start marker")
    _, found, tail = rest.partition(end)
    if not found:
        raise ValueError(f"the page has no {what} end marker")
    return head + body + tail


def main(update: Callable[[str], str]) -> None:
    """``python -m <module> [FILE.md]``: rewrite the file in place (default README.md)."""
    path = Path(sys.argv[1] if len(sys.argv) > 1 else "README.md")
    path.write_text(update(path.read_text(encoding="utf-8")), encoding="utf-8")
