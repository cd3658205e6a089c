"""Edits for pull-request authors (tenant add, domain add, ip add)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Placeholder until the edit commands land."""
