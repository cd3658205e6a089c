"""``mailplane plan``: the offline resource list in three formats."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from typer.testing import CliRunner

from mailplane.cli import app

ROOT = Path(__file__).resolve().parents[2]
PROD = ROOT / "stacks" / "prod"


def _plan(*args: str) -> str:
    result = CliRunner().invoke(app, ["plan", str(PROD), *args])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_json_plan_lists_every_resource_with_type_name_parent_inputs() -> None:
    resources = json.loads(_plan("--format", "json"))
    assert all({"type", "name", "parent", "inputs", "tenant"} <= set(r) for r in resources)
    identities = {r["name"]: r for r in resources if r["type"] == "aws:sesv2/emailIdentity:EmailIdentity"}
    assert set(identities) == {"mail1.example.com", "news.example.com", "globex.example.net", "initech.example.org"}
    assert identities["mail1.example.com"]["parent"] == "mailplane:cloud:Domain::mail1.example.com"
    assert identities["mail1.example.com"]["tenant"] == "sos-expat"
    assert identities["news.example.com"]["inputs"]["dkimSigningAttributes"] == "[secret]"
    dkim = next(r for r in resources if r["name"] == "mail1.example.com-dkim-1")
    assert dkim["inputs"]["name"] == "(known after apply)" and dkim["inputs"]["type"] == "CNAME"
    policy = [r for r in resources if r["type"] == "aws:iam/userPolicy:UserPolicy" and r["name"] == "sos-expat-app"]
    statement = json.loads(policy[0]["inputs"]["policy"])["Statement"][0]
    assert statement["Resource"] == ["arn:aws:ses:eu-north-1:<account>:identity/mail1.example.com",
                                     "arn:aws:ses:eu-north-1:<account>:configuration-set/sos-expat"]


def test_plan_is_deterministic_and_masks_secrets() -> None:
    first, second = _plan("--format", "json"), _plan("--format", "json")
    assert first == second
    assert "PRIVATE KEY" not in first
    names = [(r["type"], r["name"]) for r in json.loads(first)]
    assert len(names) == len(set(names))


def test_text_plan_groups_by_tenant_with_totals() -> None:
    text = _plan()
    resources = json.loads(_plan("--format", "json"))
    counted = [r for r in resources if not r["type"].startswith("mailplane:")]
    assert text.startswith(f"Plan for stack prod (eu-north-1): {len(counted)} resources")
    for tenant in ("tenant globex", "tenant initech", "tenant sos-expat"):
        assert f"\n{tenant}\n" in text
    assert f"  {sum(r['type'] == 'aws:route53/record:Record' for r in counted):>4}  aws:route53/record:Record" in text
    assert text.index("tenant globex") < text.index("tenant initech") < text.index("tenant sos-expat")


def test_markdown_plan_has_a_totals_table_and_details_per_tenant() -> None:
    markdown = _plan("--format", "markdown")
    assert markdown.startswith("### Plan for stack `prod`")
    assert "| `aws:sesv2/emailIdentity:EmailIdentity` | 4 |" in markdown
    assert markdown.count("<details>") == 4 and markdown.count("</details>") == 4


def test_plan_of_an_invalid_stack_reports_located_errors(tmp_path: Path) -> None:
    stack = tmp_path / "prod"
    shutil.copytree(PROD, stack)
    path = stack / "tenants" / "globex.yaml"
    path.write_text(path.read_text().replace("host: mta2", "host: mta9"))
    result = CliRunner().invoke(app, ["plan", str(stack)])
    assert result.exit_code == 1
    assert "globex.yaml:" in result.stderr and "no MTA host 'mta9'" in result.stderr
    assert "Traceback" not in result.output


def test_plan_rejects_an_unknown_format() -> None:
    result = CliRunner().invoke(app, ["plan", str(PROD), "--format", "yaml"])
    assert result.exit_code == 2
