"""``mailplane serve`` and ``mailplane sender-key``: run the sender service, mint its API keys."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from mailplane.cli.common import StackDir, fail, load_or_exit, require, usage_error
from mailplane.model.addresses import normalise_listener
from mailplane.model.problems import StackError
from mailplane.model.types import normalise_slug

CONFIG_ENV = "MAILPLANE_SENDER_CONFIG"


def register(app: typer.Typer) -> None:
    @app.command("serve")
    def serve(
        stack_dir: StackDir,
        config: Annotated[Path | None, typer.Option(
            "--config", help=f"Sender config file (secrets; mode 0600). Default: ${CONFIG_ENV}.",
            show_default=False)] = None,
        db: Annotated[str | None, typer.Option(
            "--db", help="Database URL, overriding the config: sqlite:///FILE or postgresql://...",
            show_default=False)] = None,
        listen: Annotated[str | None, typer.Option(
            "--listen", help="ADDRESS:PORT for the HTTP API, overriding the config.", show_default=False)] = None,
        log_level: Annotated[str, typer.Option("--log-level", help="debug, info, warning or error.")] = "info",
    ) -> None:
        """Run the sender service: HTTP API, delivery workers and event ingestion."""
        require("sender", "serve")
        from mailplane.sender.config import load_config
        from mailplane.sender.server import serve as run

        path = config or (Path(os.environ[CONFIG_ENV]) if os.environ.get(CONFIG_ENV) else None)
        if path is None:
            usage_error(f"give --config FILE or set {CONFIG_ENV}")
        if not path.is_file():
            where = "--config" if config else f"${CONFIG_ENV}"
            usage_error(f"{where}: {path} is not a file (`mailplane sender-config {stack_dir} --out {path}` "
                        "writes a starter one)")
        try:
            settings = load_config(path)
        except StackError as err:
            fail(err.problems)
        update: dict[str, str] = {}
        if db:
            update["database_url"] = db
        if listen:
            try:
                update["listen"] = normalise_listener(listen)
            except ValueError as err:
                usage_error(f"--listen: {err}")
        if log_level not in ("debug", "info", "warning", "error"):
            usage_error(f"--log-level: {log_level!r} is not debug, info, warning or error")
        from mailplane.sender.service import mismatches

        fleet = load_or_exit(stack_dir)  # located stack problems before anything starts
        problems = mismatches(fleet, settings)
        if problems:
            for problem in problems:
                print(f"{path}: {problem}", file=sys.stderr)
            raise typer.Exit(1)
        run(stack_dir, settings.model_copy(update=update), log_level=log_level)

    @app.command("sender-key")
    def sender_key(
        name: Annotated[str, typer.Argument(help="tenant/sender, as in the stack (with --admin: an operator's name).",
                                            metavar="TENANT/SENDER")],
        stack_dir: Annotated[Path | None, typer.Option(
            "--stack", help="Check that the sender exists in this stack.", show_default=False)] = None,
        admin: Annotated[bool, typer.Option(
            "--admin", help="An operator's key for the admin API (`admin_keys`), not a sender's.")] = False,
    ) -> None:
        """Mint an API key: the key goes to the sender's owner, the hash into the sender config."""
        from mailplane.sender.config import hash_api_key, new_api_key

        if admin:
            try:
                normalise_slug(name)
            except ValueError as err:
                usage_error(f"{name!r}: an operator's name is a slug: {err}")
        else:
            tenant, _, sender = name.partition("/")
            if not tenant or not sender or "/" in sender:
                usage_error(f"{name!r}: give TENANT/SENDER")
            if stack_dir is not None:
                fleet = load_or_exit(stack_dir)
                known = {f"{t.name}/{s.name}" for t in fleet.tenants for s in t.senders}
                if name not in known:
                    usage_error(f"{name!r} is not a sender of {stack_dir} (known: {', '.join(sorted(known))})")
        key = new_api_key()
        typer.echo(f"key:  {key}")
        typer.echo(f"config line ({'admin_keys' if admin else 'api_keys'}):  {name}: \"{hash_api_key(key)}\"")
