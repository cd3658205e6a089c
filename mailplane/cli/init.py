"""``mailplane init`` and ``mailplane sender-config``: a new stack, and a sender config for it.

The text comes from :mod:`mailplane.starter`; this module finds where it goes (the Pulumi project
whose ``stackConfigDir`` holds the stack's ``Pulumi.<stack>.yaml``), refuses to overwrite, and
writes.  Files that hold a secret are written mode 0600.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from mailplane import starter
from mailplane.cli.common import StackDir, load_or_exit, refuse, usage_error
from mailplane.cli.edit import schema_ref
from mailplane.files import write_atomic
from mailplane.model.fleet import REGION_PATTERN
from mailplane.model.loader import TENANTS_DIR
from mailplane.model.types import normalise_slug

PULUMI_PROJECT = "Pulumi.yaml"


def _pulumi_project(start: Path) -> Path | None:
    """The nearest folder at or above ``start`` holding ``Pulumi.yaml``."""
    for folder in (start, *start.parents):
        if (folder / PULUMI_PROJECT).is_file():
            return folder
    return None


def _stack_config_dir(project: Path) -> Path:
    """Where Pulumi keeps ``Pulumi.<stack>.yaml``: the project's ``stackConfigDir``, else the project folder."""
    try:
        settings = yaml.safe_load((project / PULUMI_PROJECT).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        settings = {}
    config_dir = settings.get("stackConfigDir") if isinstance(settings, dict) else None
    return project / config_dir if isinstance(config_dir, str) else project


def _matrix(project: Path) -> starter.WorkflowMatrix:
    """The stacks ``plan.yml`` runs for and the regions ``pulumi-up.yml`` gives them, if they can be read."""
    workflows = project / ".github" / "workflows"
    stacks: list[str] = []
    regions: dict[str, str] = {}
    try:
        plan: Any = yaml.safe_load((workflows / "plan.yml").read_text(encoding="utf-8"))
        stacks = [str(s) for s in plan["jobs"]["plan"]["strategy"]["matrix"]["stack"]]
        up: Any = yaml.safe_load((workflows / "pulumi-up.yml").read_text(encoding="utf-8"))
        for job in up["jobs"].values():
            for row in job.get("strategy", {}).get("matrix", {}).get("include", []):
                regions[str(row["stack"])] = str(row["region"])
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError):
        pass
    return starter.WorkflowMatrix(stacks, regions)


def register(app: typer.Typer) -> None:
    @app.command("init")
    def init(
        stack_dir: Annotated[Path, typer.Argument(
            help="New stack folder, e.g. stacks/staging; its name is the stack's name.", metavar="STACK_DIR",
            show_default=False)],
        region: Annotated[str, typer.Option("--region", help="AWS region of the stack's SES account.")]
            = "us-east-1",
    ) -> None:
        """Start a stack: fleet.yaml to fill in, tenants/, and Pulumi.<stack>.yaml."""
        name = stack_dir.resolve().name
        try:
            normalise_slug(name)
        except ValueError as err:
            raise typer.BadParameter(f"the folder's name is the stack's name: {err}", param_hint="STACK_DIR") from None
        if not re.fullmatch(REGION_PATTERN, region):
            raise typer.BadParameter(f"{region!r} is not an AWS region (e.g. eu-west-1)", param_hint="--region")
        if stack_dir.exists() and (not stack_dir.is_dir() or any(stack_dir.iterdir())):
            refuse(f"{stack_dir} exists and is not an empty folder; `mailplane init` writes only new stacks")
        project = _pulumi_project(stack_dir.resolve().parent)
        config_dir = _stack_config_dir(project) if project else stack_dir.resolve().parent
        stack_config = config_dir / f"Pulumi.{name}.yaml"
        if stack_config.exists():
            refuse(f"{stack_config} exists: stack {name!r} is already a Pulumi stack of this project")
        fleet_path = Path(os.path.relpath(stack_dir.resolve(), project)).as_posix() if project else str(stack_dir)

        (stack_dir / TENANTS_DIR).mkdir(parents=True, exist_ok=True)
        (stack_dir / TENANTS_DIR / ".gitkeep").touch()
        fleet_file = stack_dir / "fleet.yaml"
        ref = schema_ref(stack_dir / TENANTS_DIR / "x.yaml").replace("tenant.schema.json", "fleet.schema.json")
        write_atomic(fleet_file, starter.fleet_yaml(region, ref.removeprefix("../")).encode("utf-8"))
        config_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(stack_config, starter.stack_config_yaml(region, fleet_path).encode("utf-8"))
        print(f"wrote {fleet_file}, {stack_dir / TENANTS_DIR}/ and {stack_config}")
        print("next:")
        print(f"  edit {fleet_file} (the SES limits, MTA hosts, the sender's public URL)")
        print(f"  mailplane tenant add {stack_dir} NAME, then `domain add`, `ip add`, `sender add`")
        print(f"  mailplane validate {stack_dir} && mailplane plan {stack_dir}")
        print(f"  pulumi stack init {name}   (Pulumi reads {stack_config})")
        if project is None:
            print(f"note: no {PULUMI_PROJECT} above {stack_dir}: {stack_config.name} went beside the stack folder, "
                  "with mailplane:fleet as given; move it to the project's stackConfigDir")
        if project is not None and (project / ".github" / "workflows").is_dir():
            for line in starter.workflow_advice(name, region, _matrix(project)):
                print(line)

    @app.command("sender-config")
    def sender_config(
        stack_dir: StackDir,
        account_id: Annotated[str | None, typer.Option(
            "--account-id", help="AWS account of the stack's SNS topics (12 digits); default: a placeholder to "
            "replace.", show_default=False)] = None,
        mint_keys: Annotated[bool, typer.Option(
            "--mint-keys", help="Mint an API key for every sender of the stack and an admin key `ops`: the hashes "
            "go into the config, the keys to stderr, once.")] = False,
        out: Annotated[Path | None, typer.Option(
            "--out", help="Write to this new file, mode 0600 (default: stdout).", show_default=False)] = None,
    ) -> None:
        """Print a starter config for `mailplane serve`: SQLite, the API on loopback, a fresh unsubscribe key."""
        from mailplane.sender.config import ACCOUNT_ID_PATTERN, hash_api_key, new_api_key

        if account_id is not None and not re.fullmatch(ACCOUNT_ID_PATTERN, account_id):
            raise typer.BadParameter(f"{account_id!r} is not an AWS account id (12 digits)", param_hint="--account-id")
        if out is not None and out.exists():
            usage_error(f"--out: {out} exists; mailplane does not overwrite a sender config")
        fleet = load_or_exit(stack_dir)
        senders = [f"{t.name}/{s.name}" for t in fleet.tenants for s in t.senders]
        keys = {name: new_api_key() for name in (senders if mint_keys else [])}
        admin = {"ops": new_api_key()} if mint_keys else {}
        text = starter.sender_config_yaml(
            str(stack_dir), account_id=account_id, unsubscribe_key=new_api_key().removeprefix("mpk_"),
            api_keys={n: hash_api_key(k) for n, k in keys.items()}, senders=senders,
            admin_keys={n: hash_api_key(k) for n, k in admin.items()})
        for name, key in {**keys, **{f"admin {n}": k for n, k in admin.items()}}.items():
            print(f"key {name}: {key}", file=sys.stderr)
        if out is None:
            sys.stdout.write(text)
            return
        write_atomic(out, text.encode("utf-8"), mode=0o600)
        print(f"wrote {out} (mode 0600)", file=sys.stderr)
