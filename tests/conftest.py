"""Shared fixtures: small, generic helpers only."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture
def stack_copy(tmp_path: Path) -> Callable[[str | Path], Path]:
    """Copy a stack to ``tmp_path``: a name under ``stacks/`` ("dev", "prod") or any folder."""

    def copy(source: str | Path) -> Path:
        src = Path(source) if Path(source).is_absolute() else ROOT / "stacks" / source
        dest = tmp_path / src.name
        shutil.copytree(src, dest)
        return dest

    return copy
