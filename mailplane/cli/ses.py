"""``mailplane ses status``: the fleet's SES identities and account as SES reports them."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from mailplane.cli.common import StackDir, load_or_exit, require, usage_error

ses_app = typer.Typer(help="The SES account and identities as SES reports them.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(ses_app, name="ses")


@ses_app.command("status")
def status(
    stack_dir: StackDir,
    output: Annotated[str, typer.Option("--format", help="text or json.")] = "text",
    endpoint_url: Annotated[str | None, typer.Option(
        "--endpoint-url", help="Another SES endpoint (a test server); default: AWS's for fleet.yaml's region.",
        show_default=False)] = None,
) -> None:
    """Per domain: identity verified, DKIM and MAIL FROM status; the account: sandbox or production, sending,
    quota and rate against fleet.yaml's, suppression.  Exit 1 when an item fails (for cron)."""
    if output not in ("text", "json"):
        usage_error(f"--format must be text or json, not {output!r}")
    require("sender", "ses status")  # boto3 comes with the sender's group
    import boto3
    from botocore.config import Config

    from mailplane.ses.status import exit_status, gather, judge

    fleet = load_or_exit(stack_dir)
    region = fleet.settings.ses.region
    config = Config(connect_timeout=5, read_timeout=15, retries={"total_max_attempts": 2, "mode": "standard"})
    seen = gather(fleet, boto3.client("sesv2", region_name=region, endpoint_url=endpoint_url, config=config),
                  boto3.client("ses", region_name=region, endpoint_url=endpoint_url, config=config))
    items = judge(fleet, seen)
    if output == "json":
        print(json.dumps([item.__dict__ for item in items], indent=2))
    else:
        width = max((len(i.subject) for i in items), default=0)
        for item in items:
            print(f"{item.status:<4}  {item.subject:<{width}}  {item.check:<17}  {item.detail}")
    raise typer.Exit(exit_status(items))


@ses_app.command("request-production")
def request_production(
    stack_dir: StackDir,
    website: Annotated[str, typer.Option("--website", help="The sending organisation's website (http(s) URL).",
                                         show_default=False)],
    contact: Annotated[list[str] | None, typer.Option(
        "--contact", metavar="ADDRESS", help="An additional contact address for AWS (at most 4).",
        show_default=False)] = None,
    submit: Annotated[bool, typer.Option("--submit", help="Send it (PutAccountDetails); without: print only.")] = False,
    endpoint_url: Annotated[str | None, typer.Option("--endpoint-url", help="Another SES endpoint.",
                                                     show_default=False)] = None,
) -> None:
    """Compose the SES production-access request from the fleet and print it for review; `--submit` sends it."""
    import datetime

    from mailplane.ses.production import compose

    fleet = load_or_exit(stack_dir)
    try:
        request = compose(fleet, website, datetime.datetime.now(datetime.UTC).date(), tuple(contact or ()))
    except ValueError as err:
        usage_error(str(err))
    print(f"MailType: {request.mail_type}\nWebsiteURL: {request.website_url}\nContactLanguage: EN")
    if request.contacts:
        print(f"AdditionalContactEmailAddresses: {', '.join(request.contacts)}")
    print(f"UseCaseDescription:\n{request.use_case}")
    if not submit:
        print("\n(not sent: review it, then run again with --submit)")
        return
    require("sender", "ses request-production --submit")
    import boto3

    client = boto3.client("sesv2", region_name=fleet.settings.ses.region, endpoint_url=endpoint_url)
    client.put_account_details(**request.as_params())
    print("\nsubmitted: AWS reviews it and answers by email (usually within a day)")
