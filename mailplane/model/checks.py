"""Checks across keys, files and tenants that a per-file schema cannot express.

Each check reports with the path of the offending value in its own file; when two places clash,
the later one is reported and the hint names the first, so the author of the change sees it.
"""

from __future__ import annotations

import difflib
import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field

from mailplane.model import aws
from mailplane.model.fleet import FleetSettings
from mailplane.model.names import RETURN_PATH_LABEL, return_path_base
from mailplane.model.problems import YamlProblem
from mailplane.model.source import SourceDoc
from mailplane.model.tenant import Domain, Tenant
from mailplane.model.types import normalise_email
from mailplane.model.warmup_plans import PRESETS

IAM_USER_NAME_MAX = 64
"""Each sender becomes the IAM user ``<tenant>-<sender>``."""


@dataclass(frozen=True)
class TenantFile:
    stem: str
    tenant: Tenant
    doc: SourceDoc


def did_you_mean(word: str, options: Iterable[str]) -> str:
    options = sorted(options)
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    if close:
        return f"did you mean {close[0]!r}?"
    if not options:
        return ""
    listed = ", ".join(options[:12]) + (", ..." if len(options) > 12 else "")
    return f"known: {listed}"


def is_subdomain(name: str, parent: str, *, strict: bool = True) -> bool:
    return name.endswith("." + parent) or (not strict and name == parent)


class _Seen:
    """First occurrence of each value, to report the second with a pointer to the first."""

    def __init__(self) -> None:
        self.first: dict[object, tuple[SourceDoc, tuple[str | int, ...]]] = {}

    def check(self, value: object, doc: SourceDoc, path: tuple[str | int, ...], what: str,
              out: list[YamlProblem]) -> None:
        if value in self.first:
            other_doc, other_path = self.first[value]
            line, col = other_doc.locate(other_path)
            out.append(doc.problem(path, f"{what} {value!s} is already used",
                                   f"first at {other_doc.file}:{line}:{col}"))
        else:
            self.first[value] = (doc, path)


def check_fleet(fleet: FleetSettings, doc: SourceDoc) -> list[YamlProblem]:
    out: list[YamlProblem] = []
    for name, spec in fleet.warmup_plans.items():
        path = ("warmup_plans", name)
        if name in PRESETS:
            out.append(doc.problem(path, f"plan {name!r} has the name of a built-in preset",
                                   "choose another name, or use the preset directly", at_key=True))
        if (spec.preset is None) == (spec.schedule is None):
            out.append(doc.problem(path, "give exactly one of 'preset' and 'schedule'"))
        if spec.preset is not None and spec.preset not in PRESETS:
            out.append(doc.problem((*path, "preset"), f"unknown preset {spec.preset!r}",
                                   did_you_mean(spec.preset, PRESETS)))
        out.extend(_check_schedule(spec.schedule or [], doc, (*path, "schedule")))
    seen = _Seen()
    for name, host in fleet.mta_hosts.items():
        seen.check(host.ansible_host, doc, ("mta_hosts", name, "ansible_host"), "address", out)
    return out


def _check_schedule(steps: list, doc: SourceDoc, path: tuple[str | int, ...]) -> list[YamlProblem]:
    out: list[YamlProblem] = []
    if steps and steps[0].day != 1:
        out.append(doc.problem((*path, 0, "day"), "a schedule starts on day 1"))
    for i, (before, step) in enumerate(itertools.pairwise(steps), start=1):
        if step.day <= before.day:
            out.append(doc.problem((*path, i, "day"), f"day {step.day} follows day {before.day}",
                                   "list the days in increasing order, each once"))
        if step.daily < before.daily:
            out.append(doc.problem((*path, i, "daily"),
                                   f"daily cap falls from {before.daily} to {step.daily}",
                                   "a schedule never decreases; hold an IP through its thresholds"))
    for i, step in enumerate(steps):
        if step.hourly is not None and step.hourly > step.daily:
            out.append(doc.problem((*path, i, "hourly"), "hourly ceiling above the daily cap"))
    return out


@dataclass(frozen=True)
class _Unique:
    """The values no two places in the stack may share, each with its first occurrence."""

    names: _Seen = field(default_factory=_Seen)
    domains: _Seen = field(default_factory=_Seen)
    ips: _Seen = field(default_factory=_Seen)
    ptrs: _Seen = field(default_factory=_Seen)
    config_sets: _Seen = field(default_factory=_Seen)
    pools: _Seen = field(default_factory=_Seen)
    ses_tenants: _Seen = field(default_factory=_Seen)


def check_stack(fleet: FleetSettings | None, tenants: list[TenantFile]) -> list[YamlProblem]:
    """Everything that needs more than one file, plus per-tenant rules across keys."""
    out: list[YamlProblem] = []
    seen = _Unique()
    owner: dict[str, str] = {}
    for tf in tenants:
        for domain in tf.tenant.domains:
            owner.setdefault(domain.name, tf.tenant.name)
    for tf in tenants:
        out.extend(_check_names(tf, seen))
        out.extend(_check_domains(tf.tenant, fleet, tf.doc, owner, seen))
        out.extend(_check_ips(tf.tenant, fleet, tf.doc, seen))
        out.extend(_check_senders(tf.tenant, owner, tf.doc))
        if fleet is not None:
            out.extend(_check_sender_policies(tf.tenant, fleet.ses.region, tf.doc))
    return out


def _check_names(tf: TenantFile, seen: _Unique) -> list[YamlProblem]:
    """The tenant's own names: its file's, and those AWS needs unique (configuration set, SES tenant, IP pool)."""
    out: list[YamlProblem] = []
    tenant, doc = tf.tenant, tf.doc
    if tenant.name != tf.stem:
        out.append(doc.problem(("name",), f"tenant {tenant.name!r} is in file {tf.stem}.yaml",
                               f"rename the file to {tenant.name}.yaml or the tenant to {tf.stem!r}"))
    seen.names.check(tenant.name, doc, ("name",), "tenant name", out)
    seen.config_sets.check(tenant.configuration_set, doc, ("ses", "configuration_set") if
                           tenant.ses.configuration_set else ("name",), "configuration set", out)
    seen.ses_tenants.check(tenant.ses_tenant, doc, ("ses", "tenant") if tenant.ses.tenant else ("name",),
                           "SES tenant", out)
    if tenant.ses.dedicated_ip_pool:
        seen.pools.check(tenant.ses.dedicated_ip_pool.name, doc, ("ses", "dedicated_ip_pool", "name"),
                         "dedicated IP pool", out)
    out.extend(_unique_items(tenant.streams, doc, ("streams",)))
    out.extend(_unique_items(tenant.ses.events, doc, ("ses", "events")))
    return out


def _check_domains(tenant: Tenant, fleet: FleetSettings | None, doc: SourceDoc, owner: dict[str, str],
                   seen: _Unique) -> list[YamlProblem]:
    """Each domain once in the stack, its PowerMTA return path no other tenant's domain, and its own rules."""
    out: list[YamlProblem] = []
    for i, domain in enumerate(tenant.domains):
        seen.domains.check(domain.name, doc, ("domains", i, "name"), "domain", out)
        other = owner.get(return_path_base(domain))
        if other is not None:
            out.append(doc.problem(("domains", i, "return_path" if domain.return_path else "name"),
                                   f"the PowerMTA return path {return_path_base(domain)} is a sending "
                                   f"domain of tenant {other!r}", "set return_path to another subdomain"))
        out.extend(_check_domain(domain, fleet, doc, ("domains", i)))
    return out


def _check_ips(tenant: Tenant, fleet: FleetSettings | None, doc: SourceDoc, seen: _Unique) -> list[YamlProblem]:
    """Each IP and PTR name once in the stack, on a host, plan and streams that exist."""
    out: list[YamlProblem] = []
    for i, ip in enumerate(tenant.ips):
        path = ("ips", i)
        seen.ips.check(ip.address, doc, (*path, "address"), "IP address", out)
        seen.ptrs.check(ip.hostname, doc, (*path, "hostname"), "PTR hostname", out)
        if fleet is not None and ip.host not in fleet.mta_hosts:
            out.append(doc.problem((*path, "host"), f"no MTA host {ip.host!r} in fleet.yaml",
                                   did_you_mean(ip.host, fleet.mta_hosts)))
        if fleet is not None and ip.warmup and ip.warmup.plan not in fleet.warmup_plans \
                and ip.warmup.plan not in PRESETS:
            out.append(doc.problem((*path, "warmup", "plan"), f"no warmup plan {ip.warmup.plan!r}",
                                   did_you_mean(ip.warmup.plan, [*fleet.warmup_plans, *PRESETS])))
        for stream in ip.streams or []:
            if stream not in tenant.streams:
                out.append(doc.problem((*path, "streams"), f"stream {stream!r} is not one of the "
                                       "tenant's streams", "add it to the tenant's 'streams'"))
    return out


def check_smtp_region(fleet: FleetSettings, doc: SourceDoc, tenants: list[TenantFile]) -> list[YamlProblem]:
    """Every sender gets SMTP credentials (an access key and the SMTP password SES derives for the
    region): in a region without an SES SMTP endpoint they could log in nowhere."""
    region = fleet.ses.region
    senders = [(tf, i) for tf in tenants for i in range(len(tf.tenant.senders))]
    if region in aws.SMTP_REGIONS or not senders:
        return []
    tf, i = senders[0]
    line, col = tf.doc.locate(("senders", i, "name"))
    more = f" and {len(senders) - 1} more" if len(senders) > 1 else ""
    return [doc.problem(("ses", "region"),
                        f"SES has no SMTP endpoint in {region}, but senders need SMTP credentials there "
                        f"(tenant {tf.tenant.name}'s sender {tf.tenant.senders[i].name!r} at "
                        f"{tf.doc.file}:{line}:{col}{more})",
                        "choose a region with one: " + ", ".join(sorted(aws.SMTP_REGIONS)))]


def _check_sender_policies(tenant: Tenant, region: str, doc: SourceDoc) -> list[YamlProblem]:
    """The send-only inline policy the Pulumi program gives each sender's IAM user fits IAM's quota.

    Measured on the very document the program builds (:func:`mailplane.model.aws.sender_policy`,
    addresses a wildcard already covers left out), with a 12-digit stand-in for the account id.
    """
    out: list[YamlProblem] = []
    for i, sender in enumerate(tenant.senders):
        document = aws.to_json(aws.sender_policy(region, tenant.configuration_set, list(sender.from_)))
        size = aws.policy_size(document)
        if size <= aws.USER_INLINE_POLICY_MAX:
            continue
        domains = sorted({a.rpartition("@")[2] for a in sender.from_})
        out.append(doc.problem(
            ("senders", i, "from"),
            f"the send-only IAM policy of {tenant.name}-{sender.name} would have {size:,} characters "
            f"({len(sender.from_)} From addresses in {len(domains)} domain{'s' if len(domains) != 1 else ''}), "
            f"over IAM's {aws.USER_INLINE_POLICY_MAX:,} for a user's inline policies: pulumi up would fail",
            "allow a whole domain with *@domain where the sender may use any of its addresses, or split "
            "the addresses between several senders, each its own IAM user"))
    return out


def _unique_items(items: list, doc: SourceDoc, path: tuple[str | int, ...]) -> list[YamlProblem]:
    out, seen = [], set()
    for i, item in enumerate(items):
        if item in seen:
            out.append(doc.problem((*path, i), f"{item!r} is listed twice"))
        seen.add(item)
    return out


def _check_domain(domain: Domain, fleet: FleetSettings | None, doc: SourceDoc,
                  path: tuple[str | int, ...]) -> list[YamlProblem]:
    return [*_check_dkim(domain, doc, path), *_check_bounce_names(domain, doc, path),
            *_check_dns(domain, fleet, doc, path), *_check_rua(domain, doc, path)]


def _check_dkim(domain: Domain, doc: SourceDoc, path: tuple[str | int, ...]) -> list[YamlProblem]:
    """Keys that belong to the other DKIM mode: Easy DKIM's selectors and keys are SES's, BYODKIM signs everywhere."""
    out: list[YamlProblem] = []
    if domain.dkim.mode == "byo" and domain.dkim.selector is None:
        out.append(doc.problem((*path, "dkim"), "BYODKIM needs a 'selector'", "e.g. selector: s2026a"))
    if domain.dkim.mode == "easy" and domain.dkim.selector is not None:
        out.append(doc.problem((*path, "dkim", "selector"), "Easy DKIM selectors are chosen by SES",
                               "remove 'selector', or use mode: byo"))
    if domain.dkim.mode == "easy" and "key_bits" in domain.dkim.model_fields_set:
        out.append(doc.problem((*path, "dkim", "key_bits"), "Easy DKIM keys are made by SES (2048 bits)",
                               "remove 'key_bits', or use mode: byo"))
    if domain.dkim.mode == "byo" and domain.dkim.powermta_selector is not None:
        out.append(doc.problem((*path, "dkim", "powermta_selector"),
                               "a BYODKIM domain signs with its 'selector' on every route, PowerMTA included",
                               "remove 'powermta_selector'"))
    return out


def _check_bounce_names(domain: Domain, doc: SourceDoc, path: tuple[str | int, ...]) -> list[YamlProblem]:
    """SES's MAIL FROM and PowerMTA's return path: each under the domain (DMARC alignment), neither under the
    other (each side's bounces come back to a name of its own)."""
    out: list[YamlProblem] = []
    if domain.mail_from is not None and not is_subdomain(domain.mail_from, domain.name):
        out.append(doc.problem((*path, "mail_from"),
                               f"MAIL FROM {domain.mail_from} is not a subdomain of {domain.name}",
                               f"e.g. bounce.{domain.name}"))
    rp = return_path_base(domain)
    rp_path = (*path, "return_path") if domain.return_path is not None else (*path, "mail_from")
    if domain.return_path is not None and not is_subdomain(rp, domain.name):
        out.append(doc.problem(rp_path, f"return path {rp} is not a subdomain of {domain.name} (DMARC would "
                               "not align it)", f"e.g. {RETURN_PATH_LABEL}.{domain.name}"))
    elif domain.mail_from is not None and (is_subdomain(rp, domain.mail_from, strict=False)
                                           or is_subdomain(domain.mail_from, rp)):
        out.append(doc.problem(rp_path, f"MAIL FROM {domain.mail_from} and the PowerMTA return path {rp} "
                               "overlap: SES's bounces and PowerMTA's need names of their own",
                               "set return_path to another subdomain" if domain.return_path is None
                               else f"e.g. {RETURN_PATH_LABEL}.{domain.name}"))
    return out


def _check_dns(domain: Domain, fleet: FleetSettings | None, doc: SourceDoc,
               path: tuple[str | int, ...]) -> list[YamlProblem]:
    """The zone key against the provider in force (the domain's, else the fleet's default) and the domain's name."""
    out: list[YamlProblem] = []
    provider = domain.dns.provider or (fleet.dns.default_provider if fleet else None)
    if provider == "route53" and domain.dns.zone is None:
        out.append(doc.problem((*path, "dns"), "a route53 domain needs its hosted 'zone'",
                               f"e.g. dns: {{provider: route53, zone: {domain.name}}}"))
    if provider == "external" and domain.dns.zone is not None:
        out.append(doc.problem((*path, "dns", "zone"), "an external domain has no Route53 zone",
                               "remove 'zone', or use provider: route53"))
    if domain.dns.zone is not None and not is_subdomain(domain.name, domain.dns.zone, strict=False):
        out.append(doc.problem((*path, "dns", "zone"),
                               f"zone {domain.dns.zone} does not contain {domain.name}"))
    return out


def _check_rua(domain: Domain, doc: SourceDoc, path: tuple[str | int, ...]) -> list[YamlProblem]:
    """DMARC aggregate report URIs: only mailto: ones, to an address, are ever delivered to."""
    out: list[YamlProblem] = []
    for i, uri in enumerate(domain.dmarc.rua if domain.dmarc else []):
        try:
            if not uri.startswith("mailto:"):
                raise ValueError
            normalise_email(uri.removeprefix("mailto:").split("!", 1)[0])
        except ValueError:
            out.append(doc.problem((*path, "dmarc", "rua", i), f"{uri!r} is not a mailto: report URI",
                                   "e.g. mailto:dmarc@example.com"))
    return out


def _check_senders(tenant: Tenant, owner: dict[str, str], doc: SourceDoc) -> list[YamlProblem]:
    out: list[YamlProblem] = []
    own = {d.name for d in tenant.domains}
    seen = _Seen()
    for i, sender in enumerate(tenant.senders):
        seen.check(sender.name, doc, ("senders", i, "name"), "sender name", out)
        if len(f"{tenant.name}-{sender.name}") > IAM_USER_NAME_MAX:
            out.append(doc.problem(("senders", i, "name"), f"IAM user name {tenant.name}-{sender.name} is "
                                   f"longer than {IAM_USER_NAME_MAX} characters", "shorten the sender name"))
        out.extend(_unique_items(sender.from_, doc, ("senders", i, "from")))
        for j, address in enumerate(sender.from_):
            domain = address.rpartition("@")[2]
            if domain in own:
                continue
            other = owner.get(domain)
            hint = (f"{domain} belongs to tenant {other!r}" if other else
                    f"add {domain} to this tenant's domains" if own else "this tenant has no domains")
            out.append(doc.problem(("senders", i, "from", j),
                                   f"{address} is not in one of this tenant's domains", hint))
    return out
