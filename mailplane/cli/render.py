"""``mailplane render``: every MTA host's PowerMTA config and every tenant's MailWizz servers, as files.

What the Ansible role would deploy on that date, for review (``git diff`` two renders) and for
hosts managed without Ansible.  Layout under ``--out``:

    powermta/<host>.config     PowerMTA's /etc/pmta/config of each MTA host
    powermta/<host>.deployed.json
                               the record of its VMTAs and their DKIM domains, for the sender on the
                               host to read (``deployed_records``) once PowerMTA runs that config
    mailwizz/<tenant>.json     the tenant's MailWizz SMTP delivery servers

Everything is rendered in memory first and written only when all of it rendered, each file
atomically, so a failure leaves the previous render whole.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Annotated

import typer

from mailplane import mailwizz
from mailplane.cli.common import StackDir, load_or_exit, parse_date
from mailplane.files import write_atomic
from mailplane.model.stack import Fleet
from mailplane.mta.deployed import dumps, record
from mailplane.mta.render import render_vars
from mailplane.mta.view import host_view

POWERMTA_DIR = "powermta"
MAILWIZZ_DIR = "mailwizz"
CONFIG_SUFFIX = ".config"
DEPLOYED_SUFFIX = ".deployed.json"


def render_files(fleet: Fleet, on: datetime.date) -> dict[Path, str]:
    """Relative path to text of every file ``mailplane render`` writes, in a fixed order (pure)."""
    files: dict[Path, str] = {}
    for host in sorted(fleet.settings.mta_hosts):
        pmta = host_view(fleet, host, on).to_vars()
        files[Path(POWERMTA_DIR) / f"{host}{CONFIG_SUFFIX}"] = render_vars(pmta)
        files[Path(POWERMTA_DIR) / f"{host}{DEPLOYED_SUFFIX}"] = dumps(record(pmta))
    for tenant, servers in mailwizz.delivery_servers(fleet, on).items():
        files[Path(MAILWIZZ_DIR) / f"{tenant}.json"] = json.dumps(servers, indent=2) + "\n"
    return files


def register(app: typer.Typer) -> None:
    @app.command()
    def render(
        stack_dir: StackDir,
        out: Annotated[Path, typer.Option("--out", help="Folder to write into (created if missing).",
                                          show_default=False)],
        date: Annotated[str | None, typer.Option(
            "--date", help="Day whose warmup caps set the throttles (YYYY-MM-DD); default today.")] = None,
    ) -> None:
        """Write OUT/powermta/HOST.config for every MTA host and OUT/mailwizz/TENANT.json for every tenant."""
        on = parse_date(date)
        fleet = load_or_exit(stack_dir)
        files = render_files(fleet, on)
        for relative, text in files.items():
            write_atomic(out / relative, text)
        hosts = sum(1 for p in files if p.name.endswith(CONFIG_SUFFIX))
        print(f"wrote {hosts} PowerMTA configs (each with its deployed record) and "
              f"{len(files) - 2 * hosts} MailWizz server files "
              f"to {out} for {on.isoformat()}")
