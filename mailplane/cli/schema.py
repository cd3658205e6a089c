"""``mailplane schema``: write (or check) the committed JSON Schema files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mailplane.files import write_atomic
from mailplane.model.schema import render_schemas, stale_schemas


def register(app: typer.Typer) -> None:
    @app.command()
    def schema(
        out_dir: Annotated[Path, typer.Option("--out-dir", help="Where the schema files go.")] = Path("schema"),
        check: Annotated[bool, typer.Option("--check", help="Only report stale files; exit 1 if any.")] = False,
    ) -> None:
        """Write schema/fleet.schema.json and schema/tenant.schema.json from the model."""
        if check:
            stale = stale_schemas(out_dir)
            for name in stale:
                print(f"{out_dir / name}: stale; run `mailplane schema`")
            raise typer.Exit(1 if stale else 0)
        for name, text in render_schemas().items():
            write_atomic(out_dir / name, text)
            print(f"wrote {out_dir / name}")
