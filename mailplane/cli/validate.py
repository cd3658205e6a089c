"""``mailplane validate``: the offline check every pull request runs first.

Two layers, in order: the loader (bad input: every located problem, exit 1) and, on a fleet that
loads, the policy checks (``mailplane.gitops.policy``).  Unwaived findings go to stderr like the
loader's problems, with ``[error check-id]`` or ``[warning check-id]`` at the end so CI logs
can be grepped; a waived finding is a short info line on stdout, next to the ok line, because it
is part of what passed rather than a problem.  Only an unwaived error fails the run.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from mailplane.cli.common import StackDir, load_or_exit, parse_date
from mailplane.gitops.policy import Finding, check_policies


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'s' if n != 1 else ''}"


def report(findings: list[Finding]) -> tuple[int, int, int]:
    """Print findings; return the numbers of blocking errors, warnings and waived findings."""
    for finding in findings:
        print(finding, file=sys.stdout if finding.waived else sys.stderr)
    errors = sum(f.blocking for f in findings)
    warnings = sum(f.severity == "warning" and f.waived is None for f in findings)
    return errors, warnings, sum(f.waived is not None for f in findings)


def register(app: typer.Typer) -> None:
    @app.command()
    def validate(
        stack_dir: StackDir,
        date: Annotated[str | None, typer.Option(
            "--date", help="Day the date-dependent policy checks use (YYYY-MM-DD); default today.")] = None,
    ) -> None:
        """Load and check a stack, then its policies; print every problem as file:line:col and exit 1 if any."""
        today = parse_date(date)
        fleet = load_or_exit(stack_dir)
        errors, warnings, waived = report(check_policies(fleet, today=today))
        if errors:
            print(f"{_count(errors, 'policy error')}" + (f", {_count(warnings, 'warning')}" if warnings else ""),
                  file=sys.stderr)
            raise typer.Exit(1)
        ips = sum(len(t.ips) for t in fleet.tenants)
        domains = sum(len(t.domains) for t in fleet.tenants)
        notes = [_count(n, what) for n, what in ((warnings, "policy warning"), (waived, "waived finding")) if n]
        print(f"{stack_dir}: ok ({len(fleet.tenants)} tenants, {domains} domains, {ips} IPs, "
              f"{len(fleet.settings.mta_hosts)} MTA hosts)" + (f"; {', '.join(notes)}" if notes else ""))
