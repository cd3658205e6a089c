"""``mailplane dns check``: query DNS for every record and reverse name the fleet declares.

Records are judged as receivers judge them: SPF is evaluated (pyspf) for every IP that sends
with it, DKIM keys are compared as keys, every PowerMTA return path's MX and SPF are checked.

Exit status: 0 when every result is ok, skip or warn (warnings are printed); 1 when a result is
fail or error (a nameserver that does not answer is an error per check, never a traceback), or
the stack is invalid; 2 for a usage error (unknown tenant or format, bad --nameserver or
--outputs).
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mailplane.cli import common
from mailplane.cli.common import StackDir, check_tenant_option, load_or_exit, require, usage_error

if TYPE_CHECKING:
    from mailplane.dns.checks import StackOutputs

dns_app = typer.Typer(help="DNS health of the fleet's domains and IPs.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(dns_app, name="dns")


FORMATS = ("text", "json")


def _read_outputs(path: Path) -> StackOutputs:
    from mailplane.dns.checks import StackOutputs

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        usage_error(f"--outputs {path}: cannot read: {err.strerror or err}")
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        usage_error(f"--outputs {path}: not JSON ({err}); give the output of `pulumi stack output --json`")
    try:
        return StackOutputs.from_json(data)
    except ValueError as err:
        usage_error(f"--outputs {path}: {err}")


@dns_app.command()
def check(
    stack_dir: StackDir,
    tenant: Annotated[str | None, typer.Option("--tenant", help="Only this tenant's domains and IPs.")] = None,
    nameserver: Annotated[str | None, typer.Option(
        "--nameserver", metavar="HOST[:PORT]",
        help="Ask only this server (no system resolver configuration); default: the system's resolvers.")] = None,
    outputs: Annotated[Path | None, typer.Option(
        "--outputs", metavar="FILE", help="`pulumi stack output --json` (with --show-secrets to compare DKIM "
        "keys): Easy DKIM tokens, and the private keys PowerMTA signs with (BYODKIM keys, Easy DKIM domains' "
        "PowerMTA keys).")] = None,
    output: Annotated[str, typer.Option("--format", help="text or json.")] = "text",
    timeout: Annotated[float, typer.Option("--timeout", min=0.01, max=120, help="Seconds per DNS question.")] = 5.0,
    concurrency: Annotated[int, typer.Option(
        "--concurrency", min=1, max=256, help="DNS questions in flight at most.")] = 16,
) -> None:
    """Check DKIM, SPF (evaluated for every sending IP), DMARC, MAIL FROM and PowerMTA return paths of every
    domain, and forward-confirmed reverse DNS of every IP."""
    if output not in FORMATS:
        usage_error(f"--format must be text or json, not {output!r}")
    fleet = load_or_exit(stack_dir)
    check_tenant_option(fleet, tenant, stack_dir)
    # dnspython and the checks load only for this command.
    require("dns", "dns check")
    from mailplane.dns import report
    from mailplane.dns.checks import plan_checks, run_checks
    from mailplane.dns.resolver import DnsLookup, make_resolver, parse_nameserver

    stack_outputs = _read_outputs(outputs) if outputs is not None else None
    try:
        server = parse_nameserver(nameserver) if nameserver is not None else None
        lookup = DnsLookup(make_resolver(server, timeout))
    except ValueError as err:
        usage_error(f"--nameserver {err}" if nameserver is not None else str(err))
    checks = plan_checks(fleet, stack_outputs, tenant)
    title = f"DNS check of {fleet.stack} ({lookup.servers})"
    if output == "text" and common.is_terminal():
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        with Progress(TextColumn("checking DNS"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=Console(stderr=True), transient=True) as progress:
            task = progress.add_task("dns", total=len(checks))
            results = asyncio.run(run_checks(checks, lookup, concurrency,
                                             lambda _check, _results: progress.advance(task)))
        report.print_rich(results, title, Console())
    else:
        results = asyncio.run(run_checks(checks, lookup, concurrency))
        if output == "json":
            print(report.to_json(results))
        else:
            print(title)
            report.print_text(results, sys.stdout)
    raise typer.Exit(report.exit_code(results))
