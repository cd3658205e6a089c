"""A git repository holding stacks/prod at a tag ``base``, and the edits a pull request makes to it.

``plan --base`` compares a stack with its own history, so its tests need a real repository; the
plan, scope and review tests make and edit it the same way, so the steps live here once.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from mailplane.cli import app

ROOT = Path(__file__).resolve().parents[2]
PROD = ROOT / "stacks" / "prod"
DATE = "2026-12-01"
"""The day every ``plan --base`` of these tests plans for."""

def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout


def make_repo(root: Path, *, with_stack: bool = True) -> Path:
    """A repository whose commit tagged ``base`` holds stacks/prod; returns the stack folder."""
    root.mkdir(parents=True, exist_ok=True)
    git(root, "init", "-q")
    for key, value in (("user.name", "Test"), ("user.email", "test@example.com"), ("commit.gpgsign", "false")):
        git(root, "config", key, value)
    stack = root / "stacks" / "prod"
    if with_stack:
        shutil.copytree(PROD, stack)
    else:
        (root / "README").write_text("nothing yet\n")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "base")
    git(root, "tag", "base")
    if not with_stack:
        shutil.copytree(PROD, stack)
    return stack


def edit(path: Path, old: str, new: str) -> None:
    """Replace ``old`` (which must occur exactly once) by ``new``: the edit a pull request makes."""
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times in {path}"
    path.write_text(text.replace(old, new), encoding="utf-8")


def commit(stack: Path, message: str) -> None:
    git(stack, "commit", "-qam", message)


def plan_base(stack: Path, *args: str, base: str = "base") -> Any:
    return CliRunner().invoke(app, ["plan", str(stack), "--base", base, "--date", DATE, *args])


SHOP = """  - name: shop.example.com
    dkim: {mode: easy}
    mail_from: bounce.shop.example.com
    dmarc: {policy: quarantine, rua: mailto:dmarc@example.com}
    dns: {zone: example.com}
ips:
"""
"""A domain for sos-expat (insert it in place of its ``ips:`` line): the change the plan tests make."""
