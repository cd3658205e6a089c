"""What every command shares: loading a stack or exiting with its located problems."""

from __future__ import annotations

import datetime
import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from mailplane.model.loader import load_stack
from mailplane.model.problems import Problem, StackError
from mailplane.model.stack import Fleet

StackDir = Annotated[
    Path, typer.Argument(help="Stack folder: fleet.yaml and tenants/.", metavar="STACK_DIR", show_default=False)
]


def fail(problems: list[Problem]) -> NoReturn:
    for problem in problems:
        print(problem, file=sys.stderr)
    count = len(problems)
    print(f"{count} error{'s' if count != 1 else ''}", file=sys.stderr)
    raise typer.Exit(1)


def load_or_exit(stack_dir: Path) -> Fleet:
    try:
        return load_stack(stack_dir)
    except StackError as err:
        fail(err.problems)


def parse_date(value: str | None) -> datetime.date:
    if value is None:
        return datetime.date.today()
    try:
        date = datetime.date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)") from None
    if not datetime.date(1970, 1, 1) <= date <= datetime.date(9000, 1, 1):
        raise typer.BadParameter(f"{value!r} is outside the years 1970 to 9000")
    return date


def is_terminal() -> bool:
    """Tables for people on a terminal, plain columns for pipes and CI logs."""
    return sys.stdout.isatty()


def usage_error(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise typer.Exit(2)
