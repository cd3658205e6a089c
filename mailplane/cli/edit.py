"""``mailplane tenant add``, ``domain add``, ``ip add``, ``sender add``: the edits a pull-request author makes.

Each command computes the new text of one tenant file (:mod:`mailplane.edits`), validates the
whole stack as if the file had been written, runs the policy checks ``mailplane validate`` runs,
and only then writes it, atomically.  A refused edit leaves the tree exactly as it was, so the
author can fix the arguments and run it again.  Malformed arguments exit 2 before any file is
read; a well-formed edit that breaks the stack, or brings a policy error, exits 1 with the same
located problems ``mailplane validate`` would print, each naming the flag behind it
(:mod:`mailplane.edit_flags`).  ``--force`` writes an edit whose only fault is a policy error
(which a reviewer may waive in the file) and warns; a stack that does not load is never written.
"""

from __future__ import annotations

import datetime
import os
import sys
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

import typer
from ruamel.yaml.comments import CommentedMap

from mailplane import edits
from mailplane.cli.common import StackDir, fail, parse_date, refuse, usage_error
from mailplane.edit_flags import Flags, finding_for_flags, for_flags, new_findings
from mailplane.files import write_atomic
from mailplane.gitops.policy import check_policies
from mailplane.model.loader import TENANTS_DIR, load_stack, tenant_files
from mailplane.model.problems import StackError, display_path
from mailplane.model.source import decode, parse
from mailplane.model.types import normalise_domain, normalise_email, normalise_ip, normalise_label, normalise_slug

BOM = b"\xef\xbb\xbf"


class StreamChoice(StrEnum):
    """An Enum rather than the model's ``Stream`` Literal: typer cannot repeat an option typed as a Literal."""

    transactional = "transactional"
    marketing = "marketing"


TenantName = Annotated[str, typer.Argument(metavar="TENANT", help="Tenant name: the file tenants/TENANT.yaml.",
                                           show_default=False)]
Force = Annotated[bool, typer.Option(
    "--force", help="Write even when the edit brings policy errors (warned, and `mailplane validate` will report "
    "them); a stack that does not load is never written.")]
Streams = Annotated[list[StreamChoice] | None, typer.Option(
    "--stream", help="A stream (transactional or marketing); repeat for both.", show_default=False)]

tenant_app = typer.Typer(help="Tenants of a stack.", no_args_is_help=True)
domain_app = typer.Typer(help="Sending domains of a tenant.", no_args_is_help=True)
ip_app = typer.Typer(help="Dedicated IPs of a tenant.", no_args_is_help=True)
sender_app = typer.Typer(help="Senders of a tenant: applications with their own API key and IAM user.",
                         no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Sub-commands by noun (``tenant add``), so later verbs (``remove``, ``set``) fit beside them."""
    app.add_typer(tenant_app, name="tenant")
    app.add_typer(domain_app, name="domain")
    app.add_typer(ip_app, name="ip")
    app.add_typer(sender_app, name="sender")


@tenant_app.command("add")
def tenant_add(
    stack_dir: StackDir,
    name: Annotated[str, typer.Argument(metavar="NAME", help="New tenant: creates tenants/NAME.yaml.",
                                        show_default=False)],
    display_name: Annotated[str | None, typer.Option("--display-name", help="Human-readable name.")] = None,
    stream: Streams = None,
    force: Force = False,
) -> None:
    """Create tenants/NAME.yaml; refuses if it exists."""
    _checked(name, normalise_slug, "NAME")
    _require_stack(stack_dir)
    path = stack_dir / TENANTS_DIR / f"{name}.yaml"
    if path.exists():
        refuse(f"{display_path(path)} already exists; add to it with `mailplane domain add` or `mailplane ip add`")
    text = edits.new_tenant(edits.NewTenant(name, display_name, _streams(stream)), schema_ref(path))
    flags = Flags("", {"name": "NAME", "display_name": "--display-name", "streams": "--stream"})
    _validate_and_write(stack_dir, path, text.encode("utf-8"), f"new tenant {name}", flags, force)


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
    force: Force = False,
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
    _append(stack_dir, tenant, "domains", edits.domain_entry(new), f"added domain {domain} to {tenant}",
            lambda entry: _domain_flags(entry, domain), force)


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
    force: Force = False,
) -> None:
    """Append an IP, with its warmup plan, to the tenant's ips: list."""
    _checked(address, normalise_ip, "ADDRESS")
    _checked(hostname, normalise_domain, "--hostname")
    _checked(host, normalise_slug, "--host")
    _checked(plan, normalise_slug, "--plan")
    new = edits.NewIp(address, hostname, host, plan, parse_date(started, "--started"), _streams(stream))
    _append(stack_dir, tenant, "ips", edits.ip_entry(new), f"added IP {address} to {tenant}",
            lambda entry: _ip_flags(entry, tenant), force)


@sender_app.command("add")
def sender_add(
    stack_dir: StackDir,
    tenant: TenantName,
    name: Annotated[str, typer.Argument(
        metavar="NAME", help="Sender name: its IAM user and its API key's name (TENANT/NAME).", show_default=False)],
    from_: Annotated[list[str], typer.Option(
        "--from", help="A From address it may use, in one of the tenant's domains (`*@DOMAIN` for any); repeatable.",
        show_default=False)],
    force: Force = False,
) -> None:
    """Append a sender to the tenant's senders: list; then mint its key with `mailplane sender-key`."""
    _checked(name, normalise_slug, "NAME")
    for address in from_:
        _checked(address, normalise_email, "--from")
    _append(stack_dir, tenant, "senders", edits.sender_entry(edits.NewSender(name, tuple(from_))),
            f"added sender {name} to {tenant}",
            lambda entry: Flags(entry, {"": "NAME", "name": "NAME", "from": "--from"}), force)
    print(f"next: mailplane sender-key {tenant}/{name} --stack {stack_dir}")


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


def _validate_and_write(stack_dir: Path, path: Path, new_bytes: bytes, what: str, flags: Flags,
                        force: bool) -> None:
    """Load the whole stack as if ``path`` held ``new_bytes`` and run its policy checks; write only if
    nothing new is wrong (or ``force`` and what is wrong is only policy).

    The whole stack, not the one file: most mistakes an edit can make (a domain another tenant
    owns, an IP already bound, an unknown MTA host) are only visible across files.  Policy findings
    the stack had before the edit do not refuse it: they are someone else's to fix.
    """
    today = datetime.date.today()
    try:
        after = load_stack(stack_dir, overrides={path: new_bytes})
    except StackError as err:
        print(f"error: {what}: not written, the stack would not validate; lines refer to the edited "
              f"{display_path(path)}", file=sys.stderr)
        fail([for_flags(p, flags) if p.file == display_path(path) else p for p in err.problems])
    try:
        before = check_policies(load_stack(stack_dir), today=today)
    except StackError:
        before = []  # the stack was broken before the edit, and the edit mends it
    brought = [finding_for_flags(f, flags) if f.problem.file == display_path(path) else f
               for f in new_findings(before, check_policies(after, today=today))]
    errors = [f for f in brought if f.blocking]
    if errors and not force:
        print(f"error: {what}: not written, `mailplane validate` would reject it (--force writes it anyway); "
              f"lines refer to the edited {display_path(path)}", file=sys.stderr)
    for finding in brought:
        if finding.waived is None:
            print(finding, file=sys.stderr)
    if errors and not force:
        print(f"{len(errors)} policy error{'s' if len(errors) != 1 else ''}", file=sys.stderr)
        raise typer.Exit(1)
    write_atomic(path, new_bytes)
    print(f"wrote {display_path(path)}: {what}")
    if errors:
        print(f"warning: written with {len(errors)} policy error{'s' if len(errors) != 1 else ''} (--force): "
              "`mailplane validate` fails until they are fixed or waived", file=sys.stderr)


def _entry(edited: str, key: str) -> str:
    """Path of the item the edit appended: the last of the top-level list ``key`` of the edited text."""
    data = parse(edited.encode("utf-8"), "edited")[0]
    return f"{key}[{len(data[key]) - 1}]"


def _domain_flags(entry: str, domain: str) -> Flags:
    return Flags(
        entry,
        {"": "DOMAIN", "name": "DOMAIN", "dkim": "--dkim", "dkim.selector": "--selector", "mail_from": "--mail-from",
         "dmarc": "--dmarc-policy", "dmarc.rua": "--rua", "dns": "--dns-provider", "dns.zone": "--zone",
         "spf": "DOMAIN"},
        hints={"dkim": "with --dkim byo, pass --selector, e.g. --selector s2026a",
               "dns": f"pass --zone with its Route53 hosted zone, e.g. --zone {domain}; or --dns-provider external",
               "dmarc.rua": f"e.g. --rua mailto:dmarc@{domain}"},
        checks={"dmarc-published": ("--dmarc-policy", f"pass --dmarc-policy none --rua mailto:dmarc@{domain}"),
                "dmarc-aligned": ("--mail-from", f"pass --mail-from bounce.{domain}, a return path under the domain"),
                "marketing-unsubscribe": ("fleet.yaml", "set sender.public_url in fleet.yaml (no flag sets it), "
                                          "or add the domain with --force and waive the check on it")})


def _ip_flags(entry: str, tenant: str) -> Flags:
    return Flags(
        entry,
        {"": "ADDRESS", "address": "ADDRESS", "hostname": "--hostname", "host": "--host", "warmup": "--plan",
         "warmup.plan": "--plan", "warmup.started": "--started", "streams": "--stream"},
        checks={"ptr-in-tenant-domains": ("--hostname", f"pass a --hostname under one of {tenant}'s domains, "
                                          "and set the PTR to it"),
                "warmup-start-future": ("--started", "check --started: it is more than 14 days away"),
                "warmup-plan": ("--plan", "pass --plan with a warmup plan of fleet.yaml or a preset")})


def _read_tenant(stack_dir: Path, tenant: str) -> tuple[Path, str, bytes]:
    """The tenant file's path, text and byte-order mark (kept so the diff is only the edit)."""
    _require_stack(stack_dir)
    known = [p.stem for p in tenant_files(stack_dir)]
    if tenant not in known:
        listed = ", ".join(known) if known else "none yet; create one with `mailplane tenant add`"
        refuse(f"no tenant {tenant!r} in {display_path(stack_dir)} (tenants: {listed})")
    path = stack_dir / TENANTS_DIR / f"{tenant}.yaml"
    raw = path.read_bytes()
    try:
        text = decode(raw, display_path(path))
    except StackError as err:
        fail(err.problems)
    return path, text, BOM if raw.startswith(BOM) else b""


def _append(stack_dir: Path, tenant: str, key: str, item: CommentedMap, what: str,
            flags: Callable[[str], Flags], force: bool) -> None:
    """Append ``item`` to the tenant file's list ``key``, then validate, check and write.

    ``flags`` gives the flags of the entry at its path, known only once the edit is made.
    """
    path, text, bom = _read_tenant(stack_dir, tenant)
    try:
        new_text = edits.append_item(text, display_path(path), key, item)
    except StackError as err:
        fail(err.problems)
    _validate_and_write(stack_dir, path, bom + new_text.encode("utf-8"), what, flags(_entry(new_text, key)), force)


def _require_stack(stack_dir: Path) -> None:
    if not stack_dir.is_dir():
        usage_error(f"{stack_dir} is not a folder (pass a stack folder holding fleet.yaml and tenants/)")


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


def _streams(streams: list[StreamChoice] | None) -> tuple[str, ...]:
    return tuple(s.value for s in streams or ())
