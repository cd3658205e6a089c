"""JSON Schema of the two file kinds, for editors (yaml-language-server) and reviewers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from mailplane.model.fleet import FleetSettings
from mailplane.model.tenant import Tenant

SCHEMAS: dict[str, tuple[type[BaseModel], str]] = {
    "fleet.schema.json": (FleetSettings, "mailplane fleet.yaml"),
    "tenant.schema.json": (Tenant, "mailplane tenant file"),
}


def schema_of(model: type[BaseModel], title: str) -> dict[str, Any]:
    schema = model.model_json_schema(by_alias=True, mode="validation")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema, "title": title}


def render_schemas() -> dict[str, str]:
    """File name to text: sorted keys and a final newline, so the output is byte-stable."""
    return {name: json.dumps(schema_of(model, title), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
            for name, (model, title) in SCHEMAS.items()}


def stale_schemas(out_dir: Path) -> list[str]:
    return [name for name, text in render_schemas().items()
            if not (out_dir / name).is_file() or (out_dir / name).read_text(encoding="utf-8") != text]
