"""``mailplane validate``: the offline check every pull request runs first."""

from __future__ import annotations

import typer

from mailplane.cli.common import StackDir, load_or_exit


def register(app: typer.Typer) -> None:
    @app.command()
    def validate(stack_dir: StackDir) -> None:
        """Load and check a stack; print every problem as file:line:col and exit 1 if any."""
        fleet = load_or_exit(stack_dir)
        ips = sum(len(t.ips) for t in fleet.tenants)
        domains = sum(len(t.domains) for t in fleet.tenants)
        print(f"{stack_dir}: ok ({len(fleet.tenants)} tenants, {domains} domains, {ips} IPs, "
              f"{len(fleet.settings.mta_hosts)} MTA hosts)")
