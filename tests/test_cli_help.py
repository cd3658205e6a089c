"""Every command's --help renders its arguments and options as a person reads them: metavars such as
PATH and TEXT, never a Python type (`<bool>`, `list[Path]`) -- what a mismatched typer and click print."""

from __future__ import annotations

import re

import click
import typer
from typer.main import get_command
from typer.testing import CliRunner

from mailplane.cli import app


def commands(group: click.Command, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = [path]
    if isinstance(group, click.Group):
        for name, sub in sorted(group.commands.items()):
            out += commands(sub, (*path, name))
    return out


def test_every_help_renders_without_python_types() -> None:
    root = get_command(app)
    paths = commands(root)
    assert len(paths) > 20
    runner = CliRunner()
    for path in paths:
        result = runner.invoke(app, [*path, "--help"], terminal_width=120)
        assert result.exit_code == 0, (path, result.output)
        text = result.output
        assert not re.search(r"<(bool|str|int|float|path)>|list\[|\{[a-z_]+\}\.\.\.", text), (path, text)
    assert isinstance(app, typer.Typer)


def test_version_prints_the_installed_version() -> None:
    from importlib.metadata import version

    for flag in ("--version", "-V"):
        result = CliRunner().invoke(app, [flag])
        assert result.exit_code == 0 and result.output == f"mailplane {version('mailplane')}\n"
    assert CliRunner().invoke(app, ["--no-such-option"]).exit_code == 2  # a usage error
