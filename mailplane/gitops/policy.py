"""Policy checks: the deliverability and warmup rules a stack must meet before it merges.

The loader (``mailplane.model``) rejects input that cannot work at all; a policy check flags
input that works but breaks a rule of the mailbox providers (Gmail, Yahoo and Outlook.com sender
requirements: DMARC, DKIM key size, SPF lookup limit, PTR, one-click unsubscribe) or of
"warmup is law" (no IP without a ramp, no ramp skipped by an edit).  Such rules have legitimate
exceptions, so each finding can be waived, but only where a reviewer sees it: in the YAML of the
domain or IP it concerns, ``waive: {<check id>: <reason>}``.  A waived finding is still reported,
with its reason, so the exception stays visible in every run; it just does not fail.

Pure: a fleet (and for the checks that compare two revisions, the base fleet) and a date in, a
sorted list of located findings out.  ``mailplane validate`` and ``mailplane plan --base`` both
print them; :data:`CHECKS` is the registry the table in docs/reference/policy.md is generated from.
"""

from __future__ import annotations

import datetime
import gc
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from mailplane.model.checks import did_you_mean, is_subdomain
from mailplane.model.problems import YamlPath, YamlProblem
from mailplane.model.records import static_records
from mailplane.model.routes import alignment, route_auth, tenant_routes
from mailplane.model.source import SourceDoc
from mailplane.model.stack import Fleet
from mailplane.model.tenant import Ip, Tenant
from mailplane.warmup.status import plan_day

Severity = Literal["error", "warning"]
Level = Literal["domain", "ip"]

SPF_MAX_LOOKUPS = 10
"""RFC 7208 4.6.4: more DNS-querying terms than this make SPF evaluation a permerror."""
SPF_LOOKUP_MECHANISMS = frozenset({"include", "a", "mx", "ptr", "exists"})
"""Mechanisms that cost a DNS query; ``redirect=`` (a modifier) does too."""
FUTURE_START_DAYS = 14
"""A start further ahead than this is more often a typo (the wrong year or month) than a plan."""


@dataclass(frozen=True)
class PolicyCheck:
    """One policy rule, as docs/reference/policy.md documents it."""

    id: str
    severity: Severity
    level: Level | None
    """Where a waiver for it goes (``waive:`` of a domain or of an IP); None: it cannot be waived."""
    description: str
    fix: str
    needs_base: bool = False
    """Compares the fleet with the base revision's: runs only when ``check_policies`` gets one."""


CHECKS: dict[str, PolicyCheck] = {check.id: check for check in (
    PolicyCheck("dmarc-published", "error", "domain",
                "Every sending domain publishes DMARC, at least `p=none` (Gmail and Yahoo require it of bulk "
                "senders).",
                "Add `dmarc: {policy: none, rua: mailto:...}` to the domain, then tighten the policy."),
    PolicyCheck("dkim-key-2048", "error", "domain",
                "BYODKIM keys are 2048 bits (`dkim.key_bits`); 1024-bit keys are the providers' bare minimum.",
                "Remove `key_bits: 1024` (the default is 2048)."),
    PolicyCheck("spf-lookups", "error", "domain",
                "Each SPF record mailplane publishes for the domain (at the domain and at its MAIL FROM) has at most "
                "10 DNS-querying terms (include, a, mx, ptr, exists, redirect), counted offline at the top level; "
                "`mailplane dns check` counts nested includes against live DNS.",
                "Drop or flatten `spf.include` entries (list the senders' addresses instead)."),
    PolicyCheck("dmarc-aligned", "error", "domain",
                "Every sender From address passes DMARC on every route its mail can take (SES, or PowerMTA through "
                "the stream's IPs): it is DKIM-aligned (a key that route signs the From domain with) or SPF-aligned "
                "(a return path under the From domain whose SPF authorises the route's IPs), under the domain's "
                "`dkim_alignment` and `spf_alignment`. Computed offline from the routes of the model.",
                "Give the domain a `mail_from` (SES) or relax the alignment mode; report a failure on a PowerMTA "
                "route as a bug."),
    PolicyCheck("ptr-in-tenant-domains", "error", "ip",
                "Every IP's PTR hostname equals or lies under one of its own tenant's domains.",
                "Rename `hostname` under one of the tenant's domains (and set the PTR to it)."),
    PolicyCheck("marketing-unsubscribe", "error", "domain",
                "A tenant with the `marketing` stream can offer RFC 8058 one-click unsubscribe: fleet.yaml sets "
                "`sender.public_url`, where the sender service serves the endpoint. Reported on each domain of the "
                "tenant.",
                "Set `sender.public_url` in fleet.yaml; or waive on each domain that sends no marketing mail."),
    PolicyCheck("warmup-plan", "error", "ip",
                "Every IP has a warmup plan: without one it sends at full volume from its first day.",
                "Add `warmup: {plan: ..., started: ...}`; waive for an IP already warm elsewhere."),
    PolicyCheck("warmup-start-future", "warning", "ip",
                f"A warmup starts at most {FUTURE_START_DAYS} days after the day of the check (a later start is "
                "usually the wrong year or month).",
                "Check `warmup.started`; or add the IP closer to its start."),
    PolicyCheck("warmup-start-moved-back", "error", "ip",
                "Compared with the base revision, no warmup start moves earlier than the IP could have started: "
                "an IP already sending keeps its start, and a new or not yet started IP starts today or later. "
                "Either would skip days of its ramp.",
                "Keep the base revision's `warmup.started` (or a later date; today for a new IP).", needs_base=True),
    PolicyCheck("warmup-cap-raised", "warning", "ip",
                "Compared with the base revision, a change of plan (or of the plan's schedule) does not raise the "
                "daily cap of an IP already sending on the day of the check.",
                "Choose a plan whose cap on the IP's current day is no higher, or waive with the reason the IP can "
                "take it.", needs_base=True),
    PolicyCheck("waiver-known", "error", None,
                "Every `waive:` key names a check that can be waived at that level (domain or IP).",
                "Fix the check id, or move the waiver to the domain or IP the check is about."),
    PolicyCheck("waiver-unused", "warning", None,
                "Every waiver still waives a finding: a stale waiver would silently hide the next real one.",
                "Remove the waiver."),
)}


@dataclass(frozen=True)
class Finding:
    """One located policy finding; ``waived`` holds the reason when the YAML waives it."""

    check: str
    severity: Severity
    problem: YamlProblem
    waived: str | None = None

    @property
    def blocking(self) -> bool:
        """An unwaived error: the stack may not merge while one remains."""
        return self.severity == "error" and self.waived is None

    def __str__(self) -> str:
        """``file:line:col: path: message (hint) [severity check]``; a waived one on a short info line."""
        if self.waived is None:
            return f"{self.problem} [{self.severity} {self.check}]"
        p = self.problem
        return f"{p.file}:{p.line}:{p.col}: {p.path}: waived: {self.waived} [info {self.check}]"


def _sort_key(finding: Finding) -> tuple[object, ...]:
    p = finding.problem
    return p.file, p.line, p.col, finding.check, p.path, p.message, p.hint, finding.waived or ""


class _Collector:
    """Turns raw findings into :class:`Finding`, applying the waiver of the domain or IP concerned."""

    def __init__(self) -> None:
        self.findings: list[Finding] = []
        self.used: set[tuple[str, str, int, str]] = set()
        """(tenant, level, index, check id) of every waiver that waived something."""

    def add(self, check_id: str, doc: SourceDoc, path: YamlPath, message: str, hint: str = "",
            *, subject: tuple[Tenant, Level, int] | None = None) -> None:
        check = CHECKS[check_id]
        waived = None
        if subject is not None:
            tenant, level, index = subject
            waive = tenant.domains[index].waive if level == "domain" else tenant.ips[index].waive
            if check.level == level and check_id in waive:
                waived = waive[check_id]
                self.used.add((tenant.name, level, index, check_id))
        self.findings.append(Finding(check_id, check.severity, doc.problem(path, message, hint), waived))


def check_policies(fleet: Fleet, *, today: datetime.date, base: Fleet | None = None) -> list[Finding]:
    """Every policy finding of ``fleet`` on ``today``, sorted by file, position and check id.

    ``base`` is the fleet of the revision a change is compared with (the target branch of a pull
    request); the checks that need one (``needs_base``) run only when it is given.

    The cyclic garbage collector is paused meanwhile, as in ``load_stack``: locating a finding
    composes its file's YAML again, and with a large fleet alive every collection those nodes
    trigger walks all of it (on the 1,000-tenant benchmark stack, 4x the time of the checks).
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _check_policies(fleet, today, base)
    finally:
        if was_enabled:
            gc.enable()


def _check_policies(fleet: Fleet, today: datetime.date, base: Fleet | None) -> list[Finding]:
    out = _Collector()
    base_ips = {ref.ip.address: ref.ip for ref in base.ips()} if base is not None else None
    for tenant in fleet.tenants:
        doc = fleet.sources[tenant.name]
        _check_domains(fleet, tenant, doc, out)
        for j, ip in enumerate(tenant.ips):
            _check_ip(fleet, tenant, j, ip, doc, today, out)
            if base is not None and base_ips is not None:
                _check_ip_change(fleet, base, base_ips.get(ip.address), tenant, j, ip, doc, today, out)
    for tenant in fleet.tenants:
        _check_waivers(tenant, fleet.sources[tenant.name], out, with_base=base is not None)
    return sorted(set(out.findings), key=_sort_key)


def _check_domains(fleet: Fleet, tenant: Tenant, doc: SourceDoc, out: _Collector) -> None:
    marketing = "marketing" in tenant.streams and fleet.settings.sender is None
    if marketing and not tenant.domains:
        out.add("marketing-unsubscribe", doc, ("streams", tenant.streams.index("marketing")),
                f"tenant {tenant.name} sends marketing mail but fleet.yaml has no sender.public_url for the "
                "one-click unsubscribe endpoint (RFC 8058)", "set sender.public_url in fleet.yaml")
    for i, domain in enumerate(tenant.domains):
        path: YamlPath = ("domains", i)
        subject: tuple[Tenant, Level, int] = (tenant, "domain", i)
        if domain.dmarc is None:
            out.add("dmarc-published", doc, path,
                    f"{domain.name} publishes no DMARC record: Gmail and Yahoo require DMARC (p=none is enough) "
                    "of bulk senders",
                    f"add dmarc: {{policy: none, rua: mailto:dmarc@{domain.name}}}, or waive dmarc-published "
                    "on this domain with a reason", subject=subject)
        if domain.dkim.mode == "byo" and domain.dkim.key_bits < 2048:
            out.add("dkim-key-2048", doc, (*path, "dkim", "key_bits"),
                    f"the BYODKIM key of {domain.name} would have {domain.dkim.key_bits} bits: providers accept "
                    "1024 but recommend 2048, and a short key is the first thing a forger breaks",
                    "remove key_bits (default 2048), or waive dkim-key-2048 on this domain with a reason",
                    subject=subject)
        _check_spf(fleet, tenant, i, doc, out)
        _check_alignment(tenant, i, doc, out)
        if marketing:
            out.add("marketing-unsubscribe", doc, (*path, "name"),
                    f"tenant {tenant.name} sends marketing mail, which needs one-click unsubscribe (RFC 8058), but "
                    "fleet.yaml has no sender.public_url for the sender service to serve it at",
                    "set sender.public_url in fleet.yaml, or waive marketing-unsubscribe on this domain if "
                    "it sends no marketing mail", subject=subject)


def _check_alignment(tenant: Tenant, i: int, doc: SourceDoc, out: _Collector) -> None:
    """Each From address of the domain, on each route of its tenant: reported at the address, waived on the domain."""
    domain = tenant.domains[i]
    dmarc = domain.dmarc
    adkim, aspf = (dmarc.dkim_alignment, dmarc.spf_alignment) if dmarc else ("relaxed", "relaxed")
    for s, sender in enumerate(tenant.senders):
        for j, address in enumerate(sender.from_):
            if address.rpartition("@")[2] != domain.name:
                continue
            for route in tenant_routes(tenant):
                verdict = alignment(route_auth(route, domain), adkim=adkim, aspf=aspf)
                if verdict.passes:
                    continue
                via = "SES" if route.transport == "ses" else "PowerMTA (" + ", ".join(route.addresses) + ")"
                out.add("dmarc-aligned", doc, ("senders", s, "from", j),
                        f"mail from {address} on the {route.stream} route, through {via}, fails DMARC: "
                        f"{verdict.why}",
                        f"set mail_from on {domain.name} (a subdomain, for SPF alignment through SES)"
                        if route.transport == "ses" else "this is mailplane's own route: report it as a bug",
                        subject=(tenant, "domain", i))


def spf_lookups(value: str) -> list[str]:
    """The top-level terms of an SPF record that cost a DNS query (RFC 7208 4.6.4), in order.

    Nested includes are not followed: that needs live DNS (``mailplane dns check`` does it).
    """
    terms = []
    for term in value.split()[1:]:
        name = term.lstrip("+-~?").split(":", 1)[0].split("/", 1)[0].lower()
        if name in SPF_LOOKUP_MECHANISMS or term.lower().startswith("redirect="):
            terms.append(term)
    return terms


def _check_spf(fleet: Fleet, tenant: Tenant, i: int, doc: SourceDoc, out: _Collector) -> None:
    """Counts the records the Pulumi program publishes (one computation: ``records.static_records``)."""
    domain = tenant.domains[i]
    settings = fleet.settings
    for record in static_records(tenant, domain, settings.ses.region, settings.dns.ttl):
        if record.type != "TXT" or not record.value.startswith("v=spf1"):
            continue
        lookups = spf_lookups(record.value)
        if len(lookups) <= SPF_MAX_LOOKUPS:
            continue
        at_apex = record.name == domain.name
        path: YamlPath = ("domains", i, "spf", "include") if at_apex else ("domains", i, "mail_from")
        out.add("spf-lookups", doc, path,
                f"the SPF record at {record.name} has {len(lookups)} DNS-querying terms, above the limit of "
                f"{SPF_MAX_LOOKUPS} (RFC 7208 4.6.4): receivers treat it as a permerror and SPF fails; counted "
                "at the top level only, `mailplane dns check` also counts nested includes against live DNS",
                "remove or flatten spf.include entries (list the addresses as ip4:/ip6: at the provider), "
                "or waive spf-lookups on this domain with a reason" if at_apex else
                "the MAIL FROM record is mailplane's own: report this as a bug",
                subject=(tenant, "domain", i))


def _check_ip(fleet: Fleet, tenant: Tenant, j: int, ip: Ip, doc: SourceDoc, today: datetime.date,
              out: _Collector) -> None:
    path: YamlPath = ("ips", j)
    subject: tuple[Tenant, Level, int] = (tenant, "ip", j)
    names = [d.name for d in tenant.domains]
    if not any(is_subdomain(ip.hostname, name, strict=False) for name in names):
        hint = (f"use a name under one of them, e.g. {ip.host}.{names[0]}, and set the PTR to it; or waive "
                "ptr-in-tenant-domains on this IP with a reason" if names else
                "add the domain the name lies in to this tenant's domains")
        out.add("ptr-in-tenant-domains", doc, (*path, "hostname"),
                f"PTR hostname {ip.hostname} of {ip.address} is not in one of tenant {tenant.name}'s domains"
                + (f" ({', '.join(names)})" if names else "") + ": mailbox providers want the PTR name to "
                "reflect the sending domain", hint, subject=subject)
    if ip.warmup is None:
        out.add("warmup-plan", doc, path,
                f"{ip.address} has no warmup plan: it would send at full volume from its first day",
                "add warmup: {plan: ..., started: YYYY-MM-DD}; for an IP already warm elsewhere, waive "
                "warmup-plan on this IP with the reason", subject=subject)
    elif (ip.warmup.started - today).days > FUTURE_START_DAYS:
        ahead = (ip.warmup.started - today).days
        out.add("warmup-start-future", doc, (*path, "warmup", "started"),
                f"the warmup of {ip.address} starts on {ip.warmup.started}, {ahead} days after {today} "
                f"(more than {FUTURE_START_DAYS}): is the year or month right?",
                "correct the date, or add the IP closer to its start", subject=subject)


def _check_ip_change(fleet: Fleet, base: Fleet, before: Ip | None, tenant: Tenant, j: int, ip: Ip,
                     doc: SourceDoc, today: datetime.date, out: _Collector) -> None:
    """Edits that skip part of a ramp: an earlier start, or a plan with a higher cap today."""
    if ip.warmup is None:
        return  # warmup-plan reports it
    if before is not None and before.warmup is None:
        return  # a plan added to an IP that had none (warm) can only lower its cap
    path: YamlPath = ("ips", j, "warmup")
    subject: tuple[Tenant, Level, int] = (tenant, "ip", j)
    started = ip.warmup.started
    plan = fleet.plans[ip.warmup.plan]
    day = plan_day(started, today)
    if before is None or before.warmup is None:
        if started < today:
            out.add("warmup-start-moved-back", doc, (*path, "started"),
                    f"{ip.address} is new but its warmup starts on {started}, before {today}: it would begin on "
                    f"day {day} of {plan.name} at {plan.daily_cap(day)}/day, skipping {day - 1} days of its ramp",
                    f"start it today or later (started: {today}); for an IP moved from elsewhere mid-warmup, "
                    "waive warmup-start-moved-back on this IP with the reason", subject=subject)
        return
    old_started = before.warmup.started
    old_plan = base.plans[before.warmup.plan]
    old_day = plan_day(old_started, today)
    if started < old_started and started < today:
        sending = old_started <= today
        was = (f"already sending (day {old_day} of {old_plan.name} on {today})" if sending
               else f"due to start on {old_started}")
        keep = old_started if sending else max(today, started)
        out.add("warmup-start-moved-back", doc, (*path, "started"),
                f"the warmup start of {ip.address} moved back from {old_started} to {started} while it was {was}: "
                f"it would be on day {day}, skipping {day - max(old_day, 1)} days of its ramp",
                f"keep started: {keep} or later; to ramp faster, change the plan instead", subject=subject)
        return
    if old_started > today:
        return  # not sending yet: a new plan just starts from its own day 1
    old_cap, cap = old_plan.daily_cap(old_day), plan.daily_cap(day)
    if cap > old_cap:
        out.add("warmup-cap-raised", doc, (*path, "plan"),
                f"today's cap of {ip.address} rises from {old_cap:,} to {cap:,}/day mid-warmup "
                f"({old_plan.name} day {old_day} before, {plan.name} day {day} now): its reputation has not "
                "been built for that volume yet",
                f"choose a plan whose cap on day {day} is at most {old_cap:,}, or waive warmup-cap-raised on this "
                "IP with the reason it can take it", subject=subject)


def _waivers(tenant: Tenant) -> Iterator[tuple[Level, int, str]]:
    for i, domain in enumerate(tenant.domains):
        for check_id in domain.waive:
            yield "domain", i, check_id
    for j, ip in enumerate(tenant.ips):
        for check_id in ip.waive:
            yield "ip", j, check_id


def _check_waivers(tenant: Tenant, doc: SourceDoc, out: _Collector, *, with_base: bool) -> None:
    """A waiver must name a check of its level, and must still waive something."""
    for level, index, check_id in _waivers(tenant):
        path: YamlPath = ("domains" if level == "domain" else "ips", index, "waive", check_id)
        check = CHECKS.get(check_id)
        own = sorted(c.id for c in CHECKS.values() if c.level == level)
        if check is None:
            message, hint = f"no policy check {check_id!r} to waive", did_you_mean(check_id, own)
        elif check.level is None:
            message, hint = f"{check_id} cannot be waived", "fix what it reports instead"
        elif check.level != level:
            message = f"{check_id} is about {'IPs' if check.level == 'ip' else 'domains'}, not {level}s"
            hint = f"move the waiver to the waive: of the {check.level} it concerns"
        else:
            if (tenant.name, level, index, check_id) not in out.used and (with_base or not check.needs_base):
                out.findings.append(Finding("waiver-unused", "warning", doc.problem(
                    path, f"the {check_id} waiver waives nothing here",
                    "remove it: a stale waiver would hide the next real finding", at_key=True)))
            continue
        out.findings.append(Finding("waiver-known", "error", doc.problem(path, message, hint, at_key=True)))

