"""``mailplane plan``: the resources the Pulumi program would declare, offline."""

from __future__ import annotations

from typing import Annotated

import typer

from mailplane.cli.common import StackDir, load_or_exit, usage_error

FORMATS = ("text", "json", "markdown")


def register(app: typer.Typer) -> None:
    @app.command()
    def plan(
        stack_dir: StackDir,
        output: Annotated[str, typer.Option("--format", help="text, json or markdown.")] = "text",
    ) -> None:
        """Run the Pulumi program under mocks and list every resource it declares, by tenant.

        Secret inputs are masked and values AWS computes show as "(known after apply)"; the real
        diff against the cloud is `pulumi preview`.
        """
        if output not in FORMATS:
            usage_error(f"--format must be one of {', '.join(FORMATS)}, not {output!r}")
        fleet = load_or_exit(stack_dir)
        from mailplane.cloud import plan as cloud_plan  # Pulumi and pulumi-aws load in ~1 s: only here

        resources = cloud_plan.plan(fleet)
        if output == "json":
            print(cloud_plan.to_json(resources), end="")
        elif output == "markdown":
            print(cloud_plan.to_markdown(fleet, resources), end="")
        else:
            print(cloud_plan.to_text(fleet, resources), end="")
