"""The ``mailplane`` command: one sub-module per command group, all sharing one error path."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from mailplane.cli import admin, dns, edit, init, lint, plan, render, schema, serve, ses, validate, warmup

app = typer.Typer(
    name="mailplane",
    help="Control plane for a multi-tenant email sending fleet.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        print(f"mailplane {version('mailplane')}")
        raise typer.Exit()


@app.callback()
def _main(version: Annotated[bool, typer.Option("--version", "-V", callback=_version, is_eager=True,
                                                help="Print mailplane's version and exit.")] = False) -> None:
    """Control plane for a multi-tenant email sending fleet."""


# Each sub-module adds its commands, or its command groups, to the one app: --help lists the commands, then
# the groups, each in this order.
init.register(app)
validate.register(app)
plan.register(app)
schema.register(app)
warmup.register(app)
dns.register(app)
ses.register(app)
admin.register(app)
edit.register(app)
lint.register(app)
render.register(app)
serve.register(app)


def main(argv: list[str] | None = None) -> None:
    try:
        app(args=argv, prog_name="mailplane")
    except KeyboardInterrupt:
        sys.exit(130)
