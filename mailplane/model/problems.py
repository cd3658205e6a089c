"""Located problems: the one error currency of the loader, the checks and the editors.

Every consumer of the fleet reports bad input the same way, ``file:line:col: path: message
(hint)``, so a reviewer can jump straight to the offending key.  Problems are collected, never
raised one at a time: the author of a pull request wants the whole list in one run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PathPart = object
"""Mostly str keys and int indexes; YAML also allows numbers, dates and booleans as keys."""
YamlPath = tuple[PathPart, ...]


def format_path(path: YamlPath) -> str:
    """Render a YAML path the way users write it: ``domains[0].dkim.mode``."""
    out = ""
    for part in path:
        if isinstance(part, int) and not isinstance(part, bool):
            out += f"[{part}]"
        elif isinstance(part, str) and part and all(c.isalnum() or c in "_-" for c in part):
            out += f".{part}" if out else part
        else:  # keys that need quoting, and non-text keys YAML allows (1.5, 2026-01-01, true)
            out += f"[{part!r}]"
    return out or "(document)"


@dataclass(frozen=True, order=True)
class YamlProblem:
    """One located error.  ``line`` and ``col`` are 1-based, as editors count."""

    file: str
    line: int
    col: int
    path: str
    message: str
    hint: str = ""

    def __str__(self) -> str:
        hint = f" ({self.hint})" if self.hint else ""
        return f"{self.file}:{self.line}:{self.col}: {self.path}: {self.message}{hint}"


class StackError(Exception):
    """Raised once with every problem found, sorted by file and position."""

    def __init__(self, problems: list[YamlProblem]) -> None:
        self.problems = sorted(set(problems))
        super().__init__("\n".join(str(p) for p in self.problems))


def display_path(path: Path, root: Path | None = None) -> str:
    """Show paths relative to the working directory when they lie below it, as compilers do.

    Lexical (no symlink resolution): it runs once per file of a stack, and a linked tenant file
    should be shown under the name it has in the stack.
    """
    absolute = os.path.abspath(path)
    base = os.path.abspath(root or os.curdir)
    if absolute.startswith(base.rstrip(os.sep) + os.sep):
        return os.path.relpath(absolute, base)
    return str(path)
