"""``mailplane tenant add``, ``domain add``, ``ip add``: the edits a pull-request author makes.

Each command computes the new text of one tenant file (:mod:`mailplane.edits`), validates the
whole stack as if the file had been written, and only then writes it, atomically.  A refused
edit leaves the tree exactly as it was, so the author can fix the arguments and run it again.
Malformed arguments exit 2 before any file is read; a well-formed edit that breaks the stack
exits 1 with the same located problems ``mailplane validate`` would print.
"""

from __future__ import annotations

import datetime
import os
import re
import sys
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal, NoReturn

import typer

from mailplane import edits
from mailplane.cli.common import StackDir, fail, usage_error
from mailplane.files import write_atomic
from mailplane.model.loader import TENANTS_DIR, load_stack, tenant_files
from mailplane.model.problems import StackError, display_path
from mailplane.model.source import decode
from mailplane.model.types import normalise_domain, normalise_email, normalise_ip, normalise_label, normalise_slug

BOM = b"\xef\xbb\xbf"
_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")


class StreamChoice(StrEnum):
    """An Enum rather than the model's ``Stream`` Literal: typer cannot repeat an option typed as a Literal."""

    transactional = "transactional"
    marketing = "marketing"


TenantName = Annotated[str, typer.Argument(metavar="TENANT", help="Tenant name: the file tenants/TENANT.yaml.",
                                           show_default=False)]
Streams = Annotated[list[StreamChoice] | None, typer.Option(
    "--stream", help="A stream (transactional or marketing); repeat for both.", show_default=False)]

tenant_app = typer.Typer(help="Tenants of a stack.", no_args_is_help=True)
domain_app = typer.Typer(help="Sending domains of a tenant.", no_args_is_help=True)
ip_app = typer.Typer(help="Dedicated IPs of a tenant.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Sub-commands by noun (``tenant add``), so later verbs (``remove``, ``set``) fit beside them."""
    app.add_typer(tenant_app, name="tenant")
    app.add_typer(domain_app, name="domain")
    app.add_typer(ip_app, name="ip")


@tenant_app.command("add")
def tenant_add(
    stack_dir: StackDir,
    name: Annotated[str, typer.Argument(metavar="NAME", help="New tenant: creates tenants/NAME.yaml.",
                                        show_default=False)],
    display_name: Annotated[str | None, typer.Option("--display-name", help="Human-readable name.")] = None,
    stream: Streams = None,
) -> None:
    """Create tenants/NAME.yaml; refuses if it exists."""
    _checked(name, normalise_slug, "NAME")
    _require_stack(stack_dir)
    path = stack_dir / TENANTS_DIR / f"{name}.yaml"
    if path.exists():
        _refuse(f"{display_path(path)} already exists; add to it with `mailplane domain add` or `mailplane ip add`")
    text = edits.new_tenant(edits.NewTenant(name, display_name, _streams(stream)), schema_ref(path))
    _validate_and_write(stack_dir, path, text.encode("utf-8"), f"new tenant {name}")


@domain_app.command("add")
def domain_add(
    stack_dir: StackDir,
    tenant: TenantName,
    domain: Annotated[str, typer.Argument(
        metavar="DOMAIN", help="Sending domain; Unicode names are accepted.", show_default=False)],
    dkim: Annotated[Literal["easy", "byo"], typer.Option(
        "--dkim", help="easy: SES-managed keys; byo: one key for SES and PowerMTA (needs --selector).",
        show_default=False)],
    selector: Annotated[str | None, typer.Option("--selector", help="DKIM selector (byo only).")] = None,
    mail_from: Annotated[str | None, typer.Option("--mail-from", help="Custom MAIL FROM, a subdomain.")] = None,
    dmarc_policy: Annotated[Literal["none", "quarantine", "reject"] | None, typer.Option(
        "--dmarc-policy", help="Publish DMARC with this p= policy.")] = None,
    rua: Annotated[list[str] | None, typer.Option(
        "--rua", help="DMARC aggregate report URI (mailto:...); repeatable.")] = None,
    dns_provider: Annotated[Literal["route53", "external"] | None, typer.Option(
        "--dns-provider", help="Default: the fleet's dns.default_provider.")] = None,
    zone: Annotated[str | None, typer.Option("--zone", help="Route53 hosted zone holding the domain.")] = None,
) -> None:
    """Append a domain to the tenant's domains: list."""
    _checked(domain, normalise_domain, "DOMAIN")
    for value, check, hint in ((selector, normalise_label, "--selector"), (mail_from, normalise_domain, "--mail-from"),
                               (zone, normalise_domain, "--zone")):
        if value is not None:
            _checked(value, check, hint)
    for uri in rua or []:
        _checked(uri, _mailto, "--rua")
    if rua and dmarc_policy is None:
        raise typer.BadParameter("--rua needs --dmarc-policy: a DMARC record is written with both",
                                 param_hint="--rua")
    new = edits.NewDomain(domain, dkim, selector, mail_from, dmarc_policy, tuple(rua or ()), dns_provider, zone)
    path, text, bom = _read_tenant(stack_dir, tenant)
    new_text = _edit(lambda: edits.add_domain(text, display_path(path), new))
    _validate_and_write(stack_dir, path, bom + new_text.encode("utf-8"), f"added domain {domain} to {tenant}")


@ip_app.command("add")
def ip_add(
    stack_dir: StackDir,
    tenant: TenantName,
    address: Annotated[str, typer.Argument(
        metavar="ADDRESS", help="Dedicated IPv4 or IPv6 address.", show_default=False)],
    host: Annotated[str, typer.Option("--host", help="MTA host (a key of mta_hosts).", show_default=False)],
    hostname: Annotated[str, typer.Option("--hostname", help="PTR name of the address.", show_default=False)],
    plan: Annotated[str, typer.Option("--plan", help="Warmup plan or built-in preset.", show_default=False)],
    started: Annotated[str, typer.Option("--started", help="Day 1 of the plan, YYYY-MM-DD.", show_default=False)],
    stream: Streams = None,
) -> None:
    """Append an IP, with its warmup plan, to the tenant's ips: list."""
    _checked(address, normalise_ip, "ADDRESS")
    _checked(hostname, normalise_domain, "--hostname")
    _checked(host, normalise_slug, "--host")
    _checked(plan, normalise_slug, "--plan")
    new = edits.NewIp(address, hostname, host, plan, _date(started, "--started"), _streams(stream))
    path, text, bom = _read_tenant(stack_dir, tenant)
    new_text = _edit(lambda: edits.add_ip(text, display_path(path), new))
    _validate_and_write(stack_dir, path, bom + new_text.encode("utf-8"), f"added IP {address} to {tenant}")


def schema_ref(tenant_path: Path) -> str:
    """Relative link from a tenant file to the nearest ``schema/tenant.schema.json`` above its stack.

    A relative link keeps working in every clone and in the editor's language server; a stack
    outside any checkout (a scratch copy) gets the link that fits this repository's layout.
    """
    folder = tenant_path.parent.resolve()
    for parent in (folder, *folder.parents):
        schema = parent / "schema" / "tenant.schema.json"
        if schema.is_file():
            return Path(os.path.relpath(schema, folder)).as_posix()
    return edits.DEFAULT_SCHEMA_REF


def _validate_and_write(stack_dir: Path, path: Path, new_bytes: bytes, what: str) -> None:
    """Load the whole stack as if ``path`` held ``new_bytes``; write only if nothing is wrong.

    The whole stack, not the one file: most mistakes an edit can make (a domain another tenant
    owns, an IP already bound, an unknown MTA host) are only visible across files.
    """
    try:
        load_stack(stack_dir, overrides={path: new_bytes})
    except StackError as err:
        print(f"error: {what}: not written, the stack would not validate; lines refer to the edited "
              f"{display_path(path)}", file=sys.stderr)
        fail(err.problems)
    write_atomic(path, new_bytes)
    print(f"wrote {display_path(path)}: {what}")


def _read_tenant(stack_dir: Path, tenant: str) -> tuple[Path, str, bytes]:
    """The tenant file's path, text and byte-order mark (kept so the diff is only the edit)."""
    _require_stack(stack_dir)
    known = [p.stem for p in tenant_files(stack_dir)]
    if tenant not in known:
        listed = ", ".join(known) if known else "none yet; create one with `mailplane tenant add`"
        _refuse(f"no tenant {tenant!r} in {display_path(stack_dir)} (tenants: {listed})")
    path = stack_dir / TENANTS_DIR / f"{tenant}.yaml"
    raw = path.read_bytes()
    try:
        text = decode(raw, display_path(path))
    except StackError as err:
        fail(err.problems)
    return path, text, BOM if raw.startswith(BOM) else b""


def _edit(make: Callable[[], str]) -> str:
    try:
        return make()
    except StackError as err:
        fail(err.problems)


def _require_stack(stack_dir: Path) -> None:
    if not stack_dir.is_dir():
        usage_error(f"{stack_dir} is not a folder (pass a stack folder holding fleet.yaml and tenants/)")


def _refuse(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise typer.Exit(1)


def _checked(value: str, check: Callable[[str], str], hint: str) -> None:
    """Reject a malformed argument up front, in the model's own words, before any file is read."""
    try:
        check(value)
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint=hint) from None


def _mailto(value: str) -> str:
    if not value.startswith("mailto:"):
        raise ValueError(f"{value!r} is not a mailto: report URI (e.g. mailto:dmarc@example.com)")
    return normalise_email(value.removeprefix("mailto:").split("!", 1)[0])


def _date(value: str, hint: str) -> datetime.date:
    """Strictly YYYY-MM-DD: ``fromisoformat`` alone also takes 20261102 and week dates."""
    try:
        if not _DATE_RE.fullmatch(value):
            raise ValueError
        return datetime.date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)", param_hint=hint) from None


def _streams(streams: list[StreamChoice] | None) -> tuple[str, ...]:
    return tuple(s.value for s in streams or ())
