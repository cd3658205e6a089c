"""``mailplane plan``: the resources the Pulumi program would declare, offline; with ``--base``,
what a change does compared with another git revision, for a pull-request review.

Exit status with ``--base``, for CI to gate on (as ``terraform plan -detailed-exitcode``): 0 no
change, 2 changes, 1 an error (invalid stack at the head or the base, git cannot answer), an
unwaived policy error, or a change that destroys what cannot come back (SES identities, DKIM keys,
IAM users, configuration sets, SNS topics, or more than ``--max-destroy`` percent of the stack)
without ``--allow-destroy``.  The review is printed in every case but an error, so a blocked pull
request still shows what it would do.
"""

from __future__ import annotations

import datetime
import sys
from pathlib import Path
from typing import Annotated

import typer

from mailplane.cli.common import StackDir, fail, load_or_exit, parse_date, require, usage_error
from mailplane.model.problems import StackError
from mailplane.model.stack import Fleet

FORMATS = ("text", "json", "markdown")
EXIT_NO_CHANGES, EXIT_ERROR, EXIT_CHANGES = 0, 1, 2


def _review(stack_dir: Path, base_ref: str, on: datetime.date, output: str, chart_url: str | None,
            allow_destroy: bool = False, max_destroy: float | None = None) -> int:
    """Print the review of the working tree's stack against ``base_ref``; return the exit status.

    The review itself is :func:`mailplane.gitops.review.build_review`'s; here are the two sides'
    loading errors, the printing and the exit status."""
    from mailplane.gitops import revision

    head = load_or_exit(stack_dir)
    try:
        base = revision.load_revision(stack_dir, base_ref)
    except revision.GitError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_ERROR
    except StackError as err:
        print(f"error: the stack at {base_ref} is invalid, so there is nothing valid to compare with "
              "(fix the base branch first):", file=sys.stderr)
        fail(err.problems)
    # Pulumi and pulumi-aws load in ~1 s: only here.
    require("cloud", "plan")
    from mailplane.gitops.format import render
    from mailplane.gitops.review import build_review

    review = build_review(head, base, stack_dir=str(stack_dir), on=on, chart_url=chart_url,
                          allow_destroy=allow_destroy, max_destroy=max_destroy)
    print(render(review, output), end="")
    refusals = review.refusals()
    for line in refusals:
        print(line, file=sys.stderr)
    if refusals:
        return EXIT_ERROR
    return EXIT_CHANGES if review.diff.changed else EXIT_NO_CHANGES


def _resources(fleet: Fleet, output: str) -> None:
    require("cloud", "plan")
    from mailplane.cloud import plan as cloud_plan  # Pulumi and pulumi-aws load in ~1 s: only here

    resources = cloud_plan.plan(fleet)
    if output == "json":
        print(cloud_plan.to_json(resources), end="")
    elif output == "markdown":
        print(cloud_plan.to_markdown(fleet, resources), end="")
    else:
        print(cloud_plan.to_text(fleet, resources), end="")


def register(app: typer.Typer) -> None:
    @app.command()
    def plan(
        stack_dir: StackDir,
        output: Annotated[str, typer.Option("--format", help="text, json or markdown.")] = "text",
        base: Annotated[str | None, typer.Option(
            "--base", metavar="GIT_REF", show_default=False,
            help="Compare with the stack at this git revision (origin/main) instead of listing resources: "
            "exit 0 no change, 2 changes, 1 errors or policy errors.")] = None,
        date: Annotated[str | None, typer.Option(
            "--date", help="With --base: day of the PowerMTA configs, capacities and policy checks; default today.",
            show_default=False)] = None,
        chart_url: Annotated[str | None, typer.Option(
            "--chart-url", metavar="URL", show_default=False,
            help="With --base: where the warmup chart of the change is published, to link from the review.")] = None,
        allow_destroy: Annotated[bool, typer.Option(
            "--allow-destroy/--no-allow-destroy",
            help="With --base: let the change delete or replace SES identities, DKIM keys, IAM users, "
            "configuration sets or SNS topics, or more than --max-destroy of the stack's resources "
            "(without it such a change exits 1).")] = False,
        max_destroy: Annotated[float | None, typer.Option(
            "--max-destroy", metavar="PERCENT", min=0, max=100, show_default=False,
            help="With --base: the share of the base stack's resources a change may delete or replace "
            "without --allow-destroy; default 20.")] = None,
    ) -> None:
        """Run the Pulumi program under mocks and list every resource it declares, by tenant.

        Secret inputs are masked and values AWS computes show as "(known after apply)"; the real
        diff against the cloud is `pulumi preview`.  With --base GIT_REF: what the working tree's
        stack changes compared with that revision (fleet, DNS records, resources, PowerMTA configs,
        warmup capacity, policy findings), read from git without touching the working tree.
        """
        if output not in FORMATS:
            usage_error(f"--format must be one of {', '.join(FORMATS)}, not {output!r}")
        if base is None:
            if date is not None or chart_url is not None or allow_destroy or max_destroy is not None:
                usage_error("--date, --chart-url, --allow-destroy and --max-destroy go with --base GIT_REF")
            _resources(load_or_exit(stack_dir), output)
            return
        raise typer.Exit(_review(stack_dir, base, parse_date(date), output, chart_url, allow_destroy, max_destroy))
