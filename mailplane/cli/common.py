"""What every command shares: loading a stack or exiting with its located problems."""

from __future__ import annotations

import datetime
import importlib.util
import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from mailplane.model.checks import did_you_mean
from mailplane.model.dates import parse_iso_date
from mailplane.model.loader import load_stack
from mailplane.model.problems import StackError, YamlProblem
from mailplane.model.stack import Fleet

StackDir = Annotated[
    Path, typer.Argument(help="Stack folder: fleet.yaml and tenants/.", metavar="STACK_DIR", show_default=False)
]


def fail(problems: list[YamlProblem]) -> NoReturn:
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


def parse_date(value: str | None, hint: str = "--date") -> datetime.date:
    """A ``YYYY-MM-DD`` option (default today), refused with what is wrong with it (exit 2)."""
    if value is None:
        return datetime.date.today()
    try:
        date = parse_iso_date(value)
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint=hint) from None
    if not datetime.date(1970, 1, 1) <= date <= datetime.date(9000, 1, 1):
        raise typer.BadParameter(f"{value!r} is outside the years 1970 to 9000", param_hint=hint)
    return date


def is_terminal() -> bool:
    """Tables for people on a terminal, plain columns for pipes and CI logs."""
    return sys.stdout.isatty()


EXTRAS = {"cloud": "pulumi_aws", "dns": "spf", "sender": "sqlalchemy", "chart": "matplotlib"}
"""Each optional dependency group (pyproject's extras) and a module only it installs."""


def require(extra: str, command: str) -> None:
    """Exit 1 with the install line when ``command`` needs an extra this installation lacks (the core
    installs alone; an MTA host has only ``sender``), rather than a traceback of an ImportError."""
    if importlib.util.find_spec(EXTRAS[extra]) is None:
        print(f"error: `mailplane {command}` needs the {extra!r} extra, which is not installed: "
              f"pip install 'mailplane[{extra}]'", file=sys.stderr)
        raise typer.Exit(1)


def check_tenant_option(fleet: Fleet, tenant: str | None, stack_dir: Path) -> None:
    """Exit 2 when ``--tenant`` names no tenant of the stack, saying which are there (or the close one)."""
    if tenant is None:
        return
    names = [t.name for t in fleet.tenants]
    if tenant not in names:
        hint = did_you_mean(tenant, names) or "no tenants yet"
        usage_error(f"--tenant: no tenant {tenant!r} in {stack_dir} ({hint})")


def refuse(message: str) -> NoReturn:
    """Exit 1 with ``error: message``: a well-formed request the stack cannot take."""
    print(f"error: {message}", file=sys.stderr)
    raise typer.Exit(1)


def usage_error(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise typer.Exit(2)
