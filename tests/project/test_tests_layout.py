"""The tests mirror the package, and share their helpers instead of copying them.

A folder of tests/ names a package of mailplane (``tests/sender/db/`` is ``mailplane/sender/db/``)
unless it is one of the few kinds of test that have no package of their own; a test module imports
helpers from tests/support/, never another test module, so one copy of a helper serves everyone.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"
OWN_FOLDERS = {"support", "e2e", "roles", "project", "fixtures", "golden"}
"""Folders that mirror no package: helpers, end-to-end runs, Ansible runs, the repository's own rules, data."""


def _test_folders() -> list[Path]:
    return sorted(p for p in TESTS.rglob("*") if p.is_dir() and p.name != "__pycache__"
                  and p.relative_to(TESTS).parts[0] not in OWN_FOLDERS)


def test_every_folder_of_the_tests_names_a_package() -> None:
    folders = _test_folders()
    assert folders, "no test folder found"
    for folder in folders:
        package = ROOT / "mailplane" / folder.relative_to(TESTS)
        assert (package / "__init__.py").is_file(), f"{folder.relative_to(ROOT)} mirrors no package of mailplane"


def test_the_sender_is_tested_layer_by_layer() -> None:
    layers = {p.name for p in (ROOT / "mailplane" / "sender").iterdir() if (p / "__init__.py").is_file()}
    tested = {p.name for p in (TESTS / "sender").iterdir() if p.is_dir() and any(p.glob("test_*.py"))}
    assert layers <= tested, f"sender layers without a test folder: {sorted(layers - tested)}"


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def test_no_test_module_imports_another() -> None:
    modules = {p.stem for p in TESTS.rglob("test_*.py")}
    offenders = {str(p.relative_to(ROOT)): sorted(_imported_modules(p) & modules)
                 for p in TESTS.rglob("*.py") if _imported_modules(p) & modules}
    assert offenders == {}, f"import helpers from tests/support/ instead: {offenders}"


def test_helpers_live_in_support_only() -> None:
    stray = sorted(str(p.relative_to(ROOT)) for p in TESTS.rglob("*.py")
                   if not p.name.startswith("test_") and p.name != "conftest.py"
                   and p.parent.name != "support" and "fixtures" not in p.relative_to(TESTS).parts)
    assert stray == [], f"helper modules outside tests/support/: {stray}"
