"""Every code block of the README and docs/ marked ``<!-- runs -->`` runs as written and exits 0: Python blocks
with the project's interpreter, shell blocks with bash (-euo pipefail) and the virtualenv's commands first on
PATH, each in a throwaway copy of the repository's stacks."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MARK = "<!-- runs -->"
FENCE = re.compile(r"^" + re.escape(MARK) + r"\n```(python|sh|bash)\n(.*?)^```", re.M | re.S)


def blocks() -> list[tuple[str, int, str, str]]:
    """(file, line, language, code) of every marked block."""
    found = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        text = path.read_text(encoding="utf-8")
        for match in FENCE.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            found.append((str(path.relative_to(ROOT)), line, match.group(1), match.group(2)))
    return found


def test_the_marker_is_only_on_code_blocks() -> None:
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        text = path.read_text(encoding="utf-8")
        assert text.count(MARK) == len(FENCE.findall(text)), f"{path}: a {MARK} not followed by a code block"


@pytest.mark.parametrize(("where", "line", "language", "code"), blocks(), ids=lambda v: str(v)[:40])
def test_a_marked_block_runs(where: str, line: int, language: str, code: str, tmp_path: Path) -> None:
    shutil.copytree(ROOT / "stacks", tmp_path / "stacks")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    argv = [sys.executable, "-c", code] if language == "python" else ["bash", "-euo", "pipefail", "-c", code]
    done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, f"{where}:{line}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"


def test_there_are_blocks_to_run() -> None:
    assert len(blocks()) >= 1
