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


def test_every_argument_and_option_shows_its_help() -> None:
    """What each parameter is for reaches ``--help``: a typer release and a click release that disagree drop
    an argument's help silently (typer 0.25 with click 8.5 did), leaving a bare name and type."""
    root = get_command(app)
    runner = CliRunner()
    checked = 0
    for path in commands(root):
        command = _command(root, path)
        result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "400"})  # wide: one line per parameter
        flat = " ".join(re.sub(r"[│╭╮╰╯─]", " ", result.output).split())
        for param in command.params:
            meant = getattr(param, "help", None)
            if meant and not getattr(param, "hidden", False):
                words = " ".join(meant.split()[:4])
                assert words in flat, (path, param.name, words)
                checked += 1
    arguments = [p for path in commands(root) for p in _command(root, path).params if isinstance(p, click.Argument)]
    assert arguments and all(getattr(p, "help", None) for p in arguments if p.name == "stack_dir")
    assert checked > 100


def _command(root: click.Command, path: tuple[str, ...]) -> click.Command:
    for name in path:
        assert isinstance(root, click.Group)
        root = root.commands[name]
    return root


def test_version_prints_the_installed_version() -> None:
    from importlib.metadata import version

    for flag in ("--version", "-V"):
        result = CliRunner().invoke(app, [flag])
        assert result.exit_code == 0 and result.output == f"mailplane {version('mailplane')}\n"
    assert CliRunner().invoke(app, ["--no-such-option"]).exit_code == 2  # a usage error


def test_shell_completion_is_installable_and_completes_commands() -> None:
    """The script bash sources (what `--install-completion` installs, from the user's own shell); asked as bash
    asks, mailplane completes."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    mailplane = str(Path(sys.executable).parent / "mailplane")
    script = subprocess.run([mailplane], capture_output=True, text=True, check=False,
                            env={**os.environ, "_MAILPLANE_COMPLETE": "source_bash"})
    assert script.returncode == 0, script.stdout + script.stderr
    assert "_MAILPLANE_COMPLETE=complete_bash" in script.stdout and "complete " in script.stdout

    def complete(words: str) -> list[str]:
        env = {**os.environ, "_MAILPLANE_COMPLETE": "complete_bash", "COMP_WORDS": words,
               "COMP_CWORD": str(len(words.split()) - 1)}
        done = subprocess.run([mailplane], capture_output=True, text=True, env=env, check=True)
        return done.stdout.split()

    assert complete("mailplane val") == ["validate"]
    assert complete("mailplane admin pa") == ["pauses", "pause"]


def test_every_usage_error_exits_2() -> None:
    """An unknown option, and for commands that take arguments none at all, is a usage error (2) on every
    command: scripts and CI tell a mistyped command line (2) from a failed check (1)."""
    root = get_command(app)
    runner = CliRunner()
    checked = 0
    for path in commands(root):
        result = runner.invoke(app, [*path, "--no-such-option"])
        assert result.exit_code == 2, (path, result.output)
        assert "No such option" in result.output, (path, result.output)
        command = _command(root, path)
        required = [p for p in command.params if p.required]
        if path and required and not isinstance(command, click.Group):
            bare = runner.invoke(app, list(path))
            assert bare.exit_code == 2, (path, bare.output)
            checked += 1
    assert checked > 15
