"""The exported JSON Schema: committed, current, and accepting the example stacks."""

from __future__ import annotations

import datetime
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from mailplane.cli import app
from mailplane.model.schema import render_schemas, stale_schemas

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "stacks").glob("*/fleet.yaml")) + sorted((ROOT / "stacks").glob("*/tenants/*.yaml"))
SCHEMA_LINE = re.compile(r"^# yaml-language-server: \$schema=(\S+)$", re.M)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value.isoformat() if isinstance(value, datetime.date) else value


def test_committed_schema_is_current() -> None:
    assert stale_schemas(ROOT / "schema") == [], "run `make schema` and commit the result"


def test_a_stale_schema_is_detected_and_rewritten(tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["schema", "--out-dir", str(tmp_path), "--check"]).exit_code == 1
    assert runner.invoke(app, ["schema", "--out-dir", str(tmp_path)]).exit_code == 0
    assert runner.invoke(app, ["schema", "--out-dir", str(tmp_path), "--check"]).exit_code == 0
    (tmp_path / "tenant.schema.json").write_text("{}\n")
    assert stale_schemas(tmp_path) == ["tenant.schema.json"]


def test_schema_output_is_deterministic() -> None:
    assert render_schemas() == render_schemas()


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: str(p.relative_to(ROOT)))
def test_examples_name_their_schema_and_satisfy_it(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    match = SCHEMA_LINE.search(text)
    assert match, "example files start with the yaml-language-server schema line"
    schema_path = (path.parent / match.group(1)).resolve()
    expected = "fleet.schema.json" if path.name == "fleet.yaml" else "tenant.schema.json"
    assert schema_path == ROOT / "schema" / expected
    schema = json.loads(schema_path.read_text())
    jsonschema.validate(_jsonable(yaml.safe_load(text)), schema)


def test_schema_rejects_unknown_keys_like_the_loader() -> None:
    import json

    schema = json.loads((ROOT / "schema" / "tenant.schema.json").read_text())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"name": "a", "domainz": []}, schema)
