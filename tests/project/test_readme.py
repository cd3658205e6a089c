"""The README and the docs are a contract: the README's first commands work and its links lead to pages,
the YAML reference matches the model, the command-line reference matches the command."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mailplane import cli_reference
from mailplane.model.reference import render, update

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
YAML_PAGE = (ROOT / "docs" / "reference" / "yaml.md").read_text(encoding="utf-8")
CLI_PAGE = (ROOT / "docs" / "reference" / "cli.md").read_text(encoding="utf-8")


def test_readme_opens_with_the_two_setup_commands() -> None:
    first_block = README.split("```sh", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in first_block.strip().splitlines()]
    assert commands == ["make run", "make test"]


def test_every_docs_link_of_the_readme_leads_to_a_page() -> None:
    links = re.findall(r"\]\((docs/[^)#\s]+)(?:#[^)\s]*)?\)", README)
    assert len(links) >= 10
    for link in links:
        assert (ROOT / link).is_file(), link


def test_the_readme_links_every_docs_page() -> None:
    linked = set(re.findall(r"\]\((docs/[^)#\s]+)", README))
    pages = {str(p.relative_to(ROOT)) for p in (ROOT / "docs").rglob("*.md")}
    assert pages <= linked, sorted(pages - linked)


def test_yaml_reference_is_current() -> None:
    assert update(YAML_PAGE) == YAML_PAGE, "run `make schema` and commit docs/reference/yaml.md"
    assert render() in YAML_PAGE


def test_every_key_of_the_model_is_in_the_reference() -> None:
    from mailplane.model.fleet import FleetSettings
    from mailplane.model.tenant import Domain, Ip, Tenant

    for model in (FleetSettings, Tenant, Domain, Ip):
        for name, field in model.model_fields.items():
            assert f"| `{field.alias or name}` |" in YAML_PAGE


def test_cli_reference_is_current() -> None:
    assert cli_reference.update(CLI_PAGE) == CLI_PAGE, "run `make schema` and commit docs/reference/cli.md"


def _commands(command: object, prefix: str = "mailplane") -> list[str]:
    """Every command path of the click tree, walked here independently of :mod:`mailplane.cli_reference`."""
    import click

    names = [prefix]
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            names += _commands(sub, f"{prefix} {name}")
    return names


def test_every_command_is_documented() -> None:
    import typer.main

    from mailplane.cli import app

    commands = _commands(typer.main.get_command(app))
    assert "mailplane validate" in commands and "mailplane warmup status" in commands
    headings = set(re.findall(r"^### (mailplane.*)$", CLI_PAGE, flags=re.MULTILINE))
    for command in commands:
        assert command in headings, command
    assert sorted(commands) == sorted(cli_reference.command_paths())


def test_the_cli_reference_does_not_depend_on_the_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    first = cli_reference.render()
    monkeypatch.setenv("COLUMNS", "40")
    monkeypatch.setenv("TERM", "dumb")
    assert cli_reference.render() == first
