"""The README is a contract: its first commands work, its YAML reference matches the model."""

from __future__ import annotations

from pathlib import Path

import typer

from mailplane.cli import app
from mailplane.model.reference import render, update

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_readme_opens_with_the_two_setup_commands() -> None:
    first_block = README.split("```sh", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in first_block.strip().splitlines()]
    assert commands == ["make run", "make test"]


def test_yaml_reference_is_current() -> None:
    assert update(README) == README, "run `make schema` and commit README.md"
    assert render() in README


def test_every_key_of_the_model_is_in_the_reference() -> None:
    from mailplane.model.fleet import FleetSettings
    from mailplane.model.tenant import Domain, Ip, Tenant

    for model in (FleetSettings, Tenant, Domain, Ip):
        for name, field in model.model_fields.items():
            assert f"| `{field.alias or name}` |" in README


def _commands(group: typer.Typer, prefix: str = "mailplane") -> list[str]:
    names = [f"{prefix} {c.name or c.callback.__name__}" for c in group.registered_commands]
    for sub in group.registered_groups:
        names += _commands(sub.typer_instance, f"{prefix} {sub.name}")
    return names


def test_every_command_is_documented() -> None:
    commands = _commands(app)
    assert "mailplane validate" in commands and "mailplane warmup status" in commands
    for command in commands:
        assert f"`{command} " in README or f"`{command}`" in README, command
