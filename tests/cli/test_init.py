"""A new stack from nothing: `mailplane init`, the edit commands, and a sender config that `serve` accepts."""

from __future__ import annotations

import shutil
import stat
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner, Result

from mailplane.cli import app
from mailplane.model.loader import load_stack
from mailplane.model.problems import StackError
from mailplane.sender.config import hash_api_key, load_config
from mailplane.sender.service import mismatches
from mailplane.starter import ACCOUNT_PLACEHOLDER

REPO = Path(__file__).resolve().parents[2]


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A checkout as a platform team has it: the Pulumi project, the schema and the workflows."""
    shutil.copy(REPO / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    shutil.copytree(REPO / "schema", tmp_path / "schema")
    shutil.copytree(REPO / ".github", tmp_path / ".github")
    (tmp_path / "stacks").mkdir()
    return tmp_path


def test_init_writes_a_stack_that_validates_and_its_pulumi_stack(project: Path) -> None:
    stack = project / "stacks" / "staging"
    result = run("init", stack, "--region", "eu-west-1")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in stack.iterdir()) == ["fleet.yaml", "tenants"]
    fleet = load_stack(stack)
    assert fleet.settings.ses.region == "eu-west-1" and not fleet.tenants
    assert run("validate", stack).exit_code == 0
    # Pulumi reads the stack's config from Pulumi.yaml's stackConfigDir; the program reads the fleet
    # at mailplane:fleet, relative to the project
    config_dir = yaml.safe_load((project / "Pulumi.yaml").read_text())["stackConfigDir"]
    config = yaml.safe_load((project / config_dir / "Pulumi.staging.yaml").read_text())["config"]
    assert config == {"aws:region": "eu-west-1", "mailplane:fleet": "stacks/staging"}
    assert (project / config["mailplane:fleet"]).resolve() == stack.resolve()
    # the editor's schema link resolves
    first = (stack / "fleet.yaml").read_text().splitlines()[0]
    assert (stack / first.split("$schema=")[1]).resolve() == (project / "schema" / "fleet.schema.json").resolve()


def test_init_says_what_the_workflows_need(project: Path) -> None:
    result = run("init", project / "stacks" / "staging", "--region", "eu-west-1")
    plan = yaml.safe_load((project / ".github/workflows/plan.yml").read_text())
    now = plan["jobs"]["plan"]["strategy"]["matrix"]["stack"]
    assert f"stack: [{', '.join([*now, 'staging'])}]" in result.stdout
    assert "- {stack: staging, region: eu-west-1}" in result.stdout
    assert "GitHub environment 'staging'" in result.stdout
    assert "pulumi stack init staging" in result.stdout


def test_a_new_stack_takes_a_tenant_a_domain_and_a_sender(project: Path) -> None:
    stack = project / "stacks" / "staging"
    assert run("init", stack).exit_code == 0
    assert run("tenant", "add", stack, "acme").exit_code == 0
    result = run("domain", "add", stack, "acme", "mail.acme.example", "--dkim", "easy",
                 "--dmarc-policy", "none", "--mail-from", "bounce.mail.acme.example")
    assert result.exit_code == 0, result.output
    result = run("sender", "add", stack, "acme", "app", "--from", "no-reply@mail.acme.example")
    assert result.exit_code == 0, result.output
    assert f"mailplane sender-key acme/app --stack {stack}" in result.stdout
    assert run("validate", stack).exit_code == 0
    [sender] = load_stack(stack).tenant("acme").senders
    assert sender.name == "app" and sender.from_ == ["no-reply@mail.acme.example"]


@pytest.mark.parametrize(("existing", "message"), [
    ("stacks/staging/notes.txt", "is not an empty folder"),
    ("stacks/Pulumi.staging.yaml", "already a Pulumi stack"),
])
def test_init_never_overwrites(project: Path, existing: str, message: str) -> None:
    (project / existing).parent.mkdir(parents=True, exist_ok=True)
    (project / existing).write_text("kept\n")
    before = sorted(str(p.relative_to(project)) for p in project.rglob("*"))
    result = run("init", project / "stacks" / "staging")
    assert result.exit_code == 1 and message in result.stderr
    assert sorted(str(p.relative_to(project)) for p in project.rglob("*")) == before
    assert (project / existing).read_text() == "kept\n"


@pytest.mark.parametrize(("args", "message"), [
    (["stacks/Staging_1"], "stack's name"),
    (["stacks/ok", "--region", "Europe"], "is not an AWS region"),
])
def test_init_usage_errors_exit_2(project: Path, args: list[str], message: str,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project)
    result = run("init", *args)
    assert result.exit_code == 2 and message in result.output
    assert sorted(p.name for p in (project / "stacks").iterdir()) == []


# --- sender-config ---------------------------------------------------------------------------


def test_sender_config_loads_once_its_placeholder_is_replaced(tmp_path: Path) -> None:
    result = run("sender-config", REPO / "stacks" / "prod")
    assert result.exit_code == 0, result.output
    path = tmp_path / "sender.yaml"
    path.write_text(result.stdout)
    with pytest.raises(StackError) as err:
        load_config(path)  # the account id cannot be guessed: refused, located, until replaced
    assert err.value.problems[0].path == "aws.account_id"
    path.write_text(result.stdout.replace(ACCOUNT_PLACEHOLDER, "123456789012"))
    config = load_config(path)
    assert config.api_keys == {} and len(config.unsubscribe_keys) == 1
    fleet = load_stack(REPO / "stacks" / "prod")
    for tenant in fleet.tenants:
        for sender in tenant.senders:  # every sender is named, with the command that mints its key
            assert f"#  {tenant.name}/{sender.name}: from `mailplane sender-key" in result.stdout


def test_sender_config_mints_keys_that_match_and_writes_0600(tmp_path: Path) -> None:
    out = tmp_path / "sender.yaml"
    prod = REPO / "stacks" / "prod"
    result = run("sender-config", prod, "--account-id", "123456789012", "--mint-keys", "--out", out)
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    config = load_config(out)
    fleet = load_stack(prod)
    assert mismatches(fleet, config) == []  # `mailplane serve` starts with it
    keys = dict(line.removeprefix("key ").split(": ") for line in result.stderr.splitlines()
                if line.startswith("key "))
    senders = {f"{t.name}/{s.name}" for t in fleet.tenants for s in t.senders}
    assert set(config.api_keys) == senders
    for name in senders:
        assert config.api_keys[name] == hash_api_key(keys[name])
        assert keys[name] not in out.read_text()  # only the hash is kept
    assert config.admin_keys == {"ops": hash_api_key(keys["admin ops"])}
    again = run("sender-config", prod, "--out", out)
    assert again.exit_code == 2 and "exists" in again.output


def test_sender_config_unsubscribe_keys_are_fresh() -> None:
    first, second = (run("sender-config", REPO / "stacks" / "prod").stdout for _ in range(2))
    key = [line for line in first.splitlines() if line.startswith("  - ")]
    assert len(key) == 1 and len(key[0]) > 40 and key[0] not in second


def test_sender_key_for_an_operator() -> None:
    result = run("sender-key", "ops", "--admin")
    assert result.exit_code == 0
    key = result.stdout.split("key:", 1)[1].split()[0]
    assert f'ops: "{hash_api_key(key)}"' in result.stdout
    assert run("sender-key", "Ops Team", "--admin").exit_code == 2


@pytest.mark.parametrize("args", [
    ["warmup", "status", "stacks/prod", "--tenant", "globx"],
    ["warmup", "chart", "stacks/prod", "--out", "x.svg", "--tenant", "globx"],
    ["dns", "check", "stacks/prod", "--tenant", "globx"],
])
def test_an_unknown_tenant_option_names_the_flag_and_the_close_tenant(args: list[str],
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    result = run(*args)
    assert result.exit_code == 2
    assert "--tenant: no tenant 'globx' in stacks/prod (did you mean 'globex'?)" in result.stderr


def test_serve_without_its_config_file_is_a_usage_error_that_says_how_to_make_one(tmp_path: Path) -> None:
    missing = tmp_path / "sender.yaml"
    result = run("serve", REPO / "stacks" / "prod", "--config", missing)
    assert result.exit_code == 2
    assert f"--config: {missing} is not a file (`mailplane sender-config" in result.stderr
    result = CliRunner().invoke(app, ["serve", str(REPO / "stacks" / "prod")],
                                env={"MAILPLANE_SENDER_CONFIG": str(missing)})
    assert result.exit_code == 2 and "$MAILPLANE_SENDER_CONFIG: " in result.stderr


def test_init_outside_a_pulumi_project_says_where_the_stack_config_went(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = run("init", "stacks/x")
    assert result.exit_code == 0, result.output
    assert "note: no Pulumi.yaml above stacks/x" in result.stdout
    config = yaml.safe_load((tmp_path / "stacks" / "Pulumi.x.yaml").read_text())["config"]
    assert config == {"aws:region": "us-east-1", "mailplane:fleet": "stacks/x"}
    assert "workflows" not in result.stdout  # no .github/workflows to speak of
