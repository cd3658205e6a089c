"""What ``mailplane dns check`` verifies, as pure logic over a :class:`~mailplane.dns.lookup.Lookup`.

Every expected name and value comes from :mod:`mailplane.cloud.records`, the module the Pulumi
program and the external-DNS listing use too, so the check compares DNS with exactly what was
(or should have been) published.  Per domain: DKIM, SPF at the domain when the fleet publishes
one (one record, SES's include, RFC 7208's limits of 10 DNS-querying terms and 2 void lookups,
counted through nested includes), DMARC (syntax, policy no weaker than the fleet's, report
authorisation of other organisations' ``rua`` domains), the custom MAIL FROM's MX and SPF.  Per
IP: forward-confirmed reverse DNS.

The SPF walk is written here rather than taken from a library: pyspf asks dnspython's
process-wide default resolver (no nameserver or port of its own) and evaluates one client IP,
stopping at the first match; checkdmarc takes a resolver, but keeps a process-wide answer cache
keyed by name only (a second run against another server reads the first one's answers), stops
counting at the third void lookup (so the lookup count is lost) and is synchronous, outside the
bounded, cached look-ups every other check shares.  The walk below is RFC 7208 4.6.4's counting
and nothing more: it never evaluates a client IP.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import ipaddress
import re
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from publicsuffixlist import PublicSuffixList

from mailplane.cloud import records as rec
from mailplane.dns.lookup import Answer, BoundedLookup, CachedLookup, DnsError, Lookup
from mailplane.dns.report import Result, Status
from mailplane.model.stack import Fleet
from mailplane.model.tenant import Domain, Ip, Tenant

SPF_MAX_LOOKUPS = 10
SPF_MAX_VOID_LOOKUPS = 2
SPF_MAX_MX = 10
"""RFC 7208 4.6.4: beyond these a receiver's SPF evaluation is a permerror."""
SPF_WALK_CAP = 100
"""Stop following includes after this many lookups: enough to report "too many", bounded for loops."""
DKIM_MIN_BITS = 2048
POLICY_STRENGTH = {"none": 0, "quarantine": 1, "reject": 2}
DMARC_TAGS = frozenset({"v", "p", "sp", "np", "rua", "ruf", "adkim", "aspf", "pct", "fo", "rf", "ri", "psd", "t"})
"""RFC 7489 6.3 and the tags DMARCbis adds (np, psd, t); receivers ignore others."""


@dataclass(frozen=True)
class StackOutputs:
    """What the checks need from ``pulumi stack output --json``: values only SES or the key generator know."""

    dkim_selectors: dict[str, list[str]] = field(default_factory=dict)
    dkim_private_keys: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: object) -> StackOutputs:
        """Raises ValueError when ``data`` is not the shape the Pulumi program exports."""
        if not isinstance(data, dict):
            raise ValueError("not a JSON object: expected the output of `pulumi stack output --json`")
        domains = data.get("domains", {})
        if not isinstance(domains, dict):
            raise ValueError("'domains' is not an object")
        selectors: dict[str, list[str]] = {}
        for name, info in domains.items():
            value = info.get("dkim_selectors") if isinstance(info, dict) else None
            if value is None:
                continue
            if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
                raise ValueError(f"domains.{name}.dkim_selectors is not a list of text")
            selectors[name] = value
        keys = data.get("dkim_private_keys", {})
        # Without --show-secrets Pulumi prints "[secret]" in place of the map: no keys then.
        private = ({d: pem for d, pem in keys.items() if isinstance(pem, str) and "PRIVATE KEY" in pem}
                   if isinstance(keys, dict) else {})
        return cls(selectors, private)


@dataclass(frozen=True)
class Subject:
    """The domain or IP results are about, with its tenant."""

    tenant: str
    domain: str | None = None
    ip: str | None = None

    def result(self, check: str, name: str, status: Status, message: str) -> Result:
        return Result(self.tenant, self.domain, self.ip, check, name, status, message)


@dataclass(frozen=True)
class Check:
    """One unit of work: ``body`` asks DNS and gives the results named in ``gives`` (check id, DNS name).

    A DNS failure that stops the body becomes an ``error`` result for each of them, so every
    check is reported even when the nameserver is gone.
    """

    subject: Subject
    gives: tuple[tuple[str, str], ...]
    body: Callable[[Lookup], Awaitable[list[Result]]]

    async def run(self, lookup: Lookup) -> list[Result]:
        try:
            return await self.body(lookup)
        except DnsError as err:
            return [self.subject.result(check, name, Status.ERROR, str(err)) for check, name in self.gives]


async def run_checks(checks: list[Check], lookup: Lookup, concurrency: int,
                     done: Callable[[Check, list[Result]], None] | None = None) -> list[Result]:
    """Run every check with at most ``concurrency`` DNS questions in flight; results in the checks' order.

    ``concurrency`` workers take checks in turn (bounding memory for a large fleet) and every
    question goes through one semaphore (bounding the load on the nameserver) and one cache.
    """
    shared = CachedLookup(BoundedLookup(lookup, concurrency))
    results: list[list[Result]] = [[] for _ in checks]
    pending = iter(enumerate(checks))

    async def worker() -> None:
        for index, check in pending:
            results[index] = await check.run(shared)
            if done is not None:
                done(check, results[index])

    await asyncio.gather(*(worker() for _ in range(max(1, min(concurrency, len(checks))))))
    return [r for rs in results for r in rs]


def plan_checks(fleet: Fleet, outputs: StackOutputs | None, tenant: str | None = None) -> list[Check]:
    """Every check of the fleet (or of one tenant), in a stable order: tenants, their domains, their IPs."""
    checks: list[Check] = []
    for t in fleet.tenants:
        if tenant is not None and t.name != tenant:
            continue
        for domain in t.domains:
            checks += domain_checks(fleet, t, domain, outputs)
        for ip in t.ips:
            checks += ip_checks(t, ip)
    return checks


def domain_checks(fleet: Fleet, tenant: Tenant, domain: Domain, outputs: StackOutputs | None) -> list[Check]:
    subject = Subject(tenant.name, domain=domain.name)
    ttl = fleet.settings.dns.ttl
    static = {(r.purpose, r.type): r for r in rec.static_records(tenant, domain, fleet.settings.ses.region, ttl)}
    checks = dkim_checks(subject, domain, outputs, ttl)
    if spf := static.get(("spf", "TXT")):
        checks.append(Check(subject, tuple((c, spf.name) for c in ("spf", "spf-lookups", "spf-void-lookups")),
                            partial(check_spf, subject, spf)))
    if (dmarc := static.get(("dmarc", "TXT"))) and domain.dmarc is not None:
        checks.append(Check(subject, (("dmarc", dmarc.name),), partial(check_dmarc, subject, dmarc)))
        for host in external_report_hosts(domain):
            name = rec.dmarc_report_auth_name(domain.name, host)
            checks.append(Check(subject, (("dmarc-report-auth", name),),
                                partial(check_report_auth, subject, domain.name, host, name)))
    if mx := static.get(("mail-from", "MX")):
        checks.append(Check(subject, (("mail-from-mx", mx.name),), partial(check_mail_from_mx, subject, mx)))
    if txt := static.get(("mail-from", "TXT")):
        checks.append(Check(subject, (("mail-from-spf", txt.name),), partial(check_mail_from_spf, subject, txt)))
    return checks


def ip_checks(tenant: Tenant, ip: Ip) -> list[Check]:
    subject = Subject(tenant.name, ip=ip.address)
    reverse = ipaddress.ip_address(ip.address).reverse_pointer
    return [Check(subject, (("ptr", reverse),), partial(check_ptr, subject, reverse, ip.hostname)),
            Check(subject, (("fcrdns", ip.hostname),), partial(check_forward, subject, ip))]


def _norm(name: str) -> str:
    return name.strip().lower().rstrip(".")


async def _given(result: Result, lookup: Lookup) -> list[Result]:
    return [result]


# --- DKIM -----------------------------------------------------------------------------------------

def dkim_checks(subject: Subject, domain: Domain, outputs: StackOutputs | None, ttl: int) -> list[Check]:
    """Easy DKIM: one check per token CNAME (tokens only SES knows: from the outputs); BYODKIM: the selector's TXT."""
    if domain.dkim.mode == "byo":
        name = rec.byo_dkim_name(domain)
        pem = outputs.dkim_private_keys.get(domain.name) if outputs else None
        return [Check(subject, (("dkim", name),), partial(check_byo_dkim, subject, domain, name, pem, ttl))]
    tokens = outputs.dkim_selectors.get(domain.name) if outputs else None
    if not tokens:
        name = rec.easy_dkim_records(domain.name, ["<token>"], ttl)[0].name
        result = (subject.result("dkim", name, Status.SKIP, "skipped: no stack outputs (--outputs gives the "
                                 "Easy DKIM tokens)") if outputs is None else
                  subject.result("dkim", name, Status.ERROR, "no Easy DKIM tokens for this domain in the stack "
                                 "outputs: not deployed yet, or the outputs of another stack?"))
        return [Check(subject, (("dkim", name),), partial(_given, result))]
    return [Check(subject, (("dkim", r.name),), partial(check_easy_dkim, subject, r))
            for r in rec.easy_dkim_records(domain.name, tokens, ttl)]


async def check_easy_dkim(subject: Subject, record: rec.Record, lookup: Lookup) -> list[Result]:
    answer = await lookup.query(record.name, "CNAME")
    got = [_norm(v) for v in answer.records]
    if got == [_norm(record.value)]:
        return [subject.result("dkim", record.name, Status.OK, f"CNAME → {record.value}")]
    if not got:
        message = f"missing ({answer.why_void}): expected CNAME → {record.value}; SES cannot sign for the domain"
    else:
        message = f"CNAME → {', '.join(got)}; expected {record.value}"
    return [subject.result("dkim", record.name, Status.FAIL, message)]


def parse_dkim(text: str) -> dict[str, str]:
    """The tags of a DKIM key record (RFC 6376 3.6.1); raises ValueError naming what is wrong."""
    tags: dict[str, str] = {}
    for part in text.split(";"):
        if not part.strip():
            continue
        key, eq, value = part.partition("=")
        key = key.strip()
        if not eq or not key:
            raise ValueError(f"{part.strip()!r} is not tag=value")
        if key in tags:
            raise ValueError(f"{key}= appears twice")
        tags[key] = "".join(value.split())  # folding whitespace inside base64 is allowed
    if "v" in tags and (next(iter(tags)) != "v" or tags["v"] != "DKIM1"):
        raise ValueError("v= must come first and be DKIM1")
    if tags.get("k", "rsa") != "rsa":
        raise ValueError(f"k={tags['k']}: the fleet's DKIM keys are RSA")
    if "p" not in tags:
        raise ValueError("no p= tag")
    if not tags["p"]:
        raise ValueError("empty p=: the key is revoked")
    return tags


def public_pem_of(private_pem: str) -> str:
    """The public half of a PEM private key, as PEM (what records.byo_dkim_record takes)."""
    # Only the public half is used, so the costly consistency check of the private key (~90 ms) is skipped.
    key = serialization.load_pem_private_key(private_pem.encode("ascii"), password=None,
                                             unsafe_skip_rsa_key_validation=True)
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")


async def check_byo_dkim(subject: Subject, domain: Domain, name: str, private_pem: str | None, ttl: int,
                         lookup: Lookup) -> list[Result]:
    """With the stack's private key: ``p=`` must be its public key.  Without: an RSA key of at least 2048 bits."""
    result = partial(subject.result, "dkim", name)
    answer = await lookup.query(name, "TXT")
    if not answer.records:
        return [result(Status.FAIL, f"missing ({answer.why_void}): expected the selector's TXT "
                                    "'v=DKIM1; k=rsa; p=...'; SES and PowerMTA signatures cannot be verified")]
    if len(answer.records) > 1:
        return [result(Status.FAIL, f"{len(answer.records)} TXT records at the selector: verifiers may read "
                                    "either; keep one")]
    try:
        tags = parse_dkim(answer.records[0])
    except ValueError as err:
        return [result(Status.FAIL, f"not a DKIM key record: {err}")]
    if private_pem is not None:
        try:
            public_pem = public_pem_of(private_pem)
        except (ValueError, TypeError) as err:
            return [result(Status.ERROR, f"cannot read the domain's private key in the stack outputs: {err}")]
        expected = rec.byo_dkim_record(domain, public_pem, ttl)
        if tags["p"] == rec.dkim_public_key(public_pem):
            return [result(Status.OK, "p= is the public key of the stack's private key")]
        return [result(Status.FAIL, "p= is not the public key of the stack's private key (SES and PowerMTA sign "
                                    f"with that one: signatures fail); expected '{expected.value[:48]}…'")]
    try:
        key = serialization.load_der_public_key(base64.b64decode(tags["p"], validate=True))
    except (binascii.Error, ValueError) as err:
        return [result(Status.FAIL, f"p= is not a base64 DER public key: {err}")]
    if not isinstance(key, rsa.RSAPublicKey):
        return [result(Status.FAIL, f"p= is a {type(key).__name__}, not an RSA key")]
    bits = key.key_size
    declared = getattr(domain.dkim, "key_bits", DKIM_MIN_BITS)
    if bits < min(declared, DKIM_MIN_BITS):
        return [result(Status.FAIL, f"RSA {bits}-bit key: at least {min(declared, DKIM_MIN_BITS)} bits expected")]
    if bits < DKIM_MIN_BITS:
        return [result(Status.WARN, f"RSA {bits}-bit key, as the fleet declares (key_bits); {DKIM_MIN_BITS} "
                                    "recommended")]
    return [result(Status.OK, f"RSA {bits}-bit key (not compared with the stack's: no private key in --outputs)")]


# --- SPF ------------------------------------------------------------------------------------------

MECHANISM = re.compile(r"^([+\-~?]?)([a-z][a-z0-9]*)(?::([^/]*))?(/.*)?$", re.IGNORECASE)
MODIFIER = re.compile(r"^([a-z][a-z0-9_.\-]*)=(.*)$", re.IGNORECASE)
QUERYING = frozenset({"include", "a", "mx", "ptr", "exists"})


def is_spf(text: str) -> bool:
    """RFC 7208 4.5: a record is SPF when it is exactly ``v=spf1`` or starts with ``v=spf1 ``."""
    return text.lower() == "v=spf1" or text.lower().startswith("v=spf1 ")


@dataclass
class SpfWalk:
    """RFC 7208 4.6.4's counts for one published record, following include and redirect.

    Counts what a receiver evaluating every term would (the worst case: no early match).
    ``lookups`` holds (top-level term, term, record's domain) per DNS-querying term.
    """

    lookup: Lookup
    lookups: list[tuple[str, str, str]] = field(default_factory=list)
    voids: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    """Permerrors: syntax, an include without (exactly one) SPF record, a loop, too many MX."""
    unexpanded: list[str] = field(default_factory=list)
    dns_error: str | None = None

    async def run(self, domain: str, record: str) -> None:
        try:
            await self._walk(domain, record, None, (_norm(domain),))
        except DnsError as err:
            self.dns_error = str(err)

    async def _walk(self, domain: str, record: str, top: str | None, chain: tuple[str, ...]) -> None:
        terms = record.split()[1:]
        has_all = any(re.fullmatch(r"[+\-~?]?all", t, re.IGNORECASE) for t in terms)
        for term in terms:
            if len(self.lookups) > SPF_WALK_CAP:
                return
            origin = top or term
            if modifier := MODIFIER.match(term):
                # exp= is only read on a fail and is not counted; unknown modifiers are ignored (RFC 7208 6).
                if modifier[1].lower() == "redirect" and not has_all:
                    self.lookups.append((origin, term, domain))
                    await self._follow(term, modifier[2], domain, origin, chain)
                continue
            match = MECHANISM.match(term)
            if not match or (problem := _mechanism_problem(match)):
                self.errors.append(f"{term!r} in {domain}: {problem if match else 'not an SPF term'}")
                continue
            kind, target = match[2].lower(), match[3] or domain
            if kind not in QUERYING:
                continue
            self.lookups.append((origin, term, domain))
            if "%" in target:
                self.unexpanded.append(term)  # a macro needs the message being checked
            elif kind == "include":
                await self._follow(term, target, domain, origin, chain)
            elif kind == "a":
                answers = [await self.lookup.query(target, t) for t in ("A", "AAAA")]
                if all(a.void for a in answers):
                    self._void(term, domain, answers[0])
            elif kind == "mx":
                answer = await self.lookup.query(target, "MX")
                if answer.void:
                    self._void(term, domain, answer)
                elif len(answer.records) > SPF_MAX_MX:
                    self.errors.append(f"{term} in {domain}: {len(answer.records)} MX records, more than "
                                       f"{SPF_MAX_MX} (RFC 7208 4.6.4)")
            elif kind == "exists":
                answer = await self.lookup.query(target, "A")
                if answer.void:
                    self._void(term, domain, answer)

    async def _follow(self, term: str, target: str, domain: str, origin: str, chain: tuple[str, ...]) -> None:
        if "%" in target:
            self.unexpanded.append(term)
            return
        if _norm(target) in chain:
            self.errors.append(f"loop: {' → '.join((*chain, _norm(target)))}")
            return
        answer = await self.lookup.query(target, "TXT")
        if answer.void:
            self._void(term, domain, answer)
        found = [t for t in answer.records if is_spf(t)]
        if len(found) != 1:
            self.errors.append(f"{term} in {domain}: {len(found) or 'no'} SPF record{'s' if found else ''} at "
                               f"{target} (permerror)")
            return
        await self._walk(target, found[0], origin, (*chain, _norm(target)))

    def _void(self, term: str, domain: str, answer: Answer) -> None:
        self.voids.append(f"{term} in {domain} ({answer.why_void})")


def _mechanism_problem(match: re.Match[str]) -> str:
    kind, arg, cidr = match[2].lower(), match[3], match[4]
    if kind not in {*QUERYING, "all", "ip4", "ip6"}:
        return f"unknown mechanism {kind!r}"
    if kind == "all" and (arg is not None or cidr):
        return "all takes no argument"
    if kind in ("include", "exists") and not arg:
        return f"{kind} needs a domain"
    if kind in ("ip4", "ip6"):
        try:
            network = ipaddress.ip_network(f"{arg}{cidr or ''}", strict=False)
        except ValueError:
            return f"{arg}{cidr or ''} is not an IPv{kind[-1]} network"
        if network.version != int(kind[-1]):
            return f"{arg} is not an IPv{kind[-1]} address"
    return ""


def spf_terms(record: str) -> set[str]:
    """Terms compared as a set, lower case, without the default ``+`` qualifier."""
    return {t.lower().removeprefix("+") for t in record.split()}


def compare_spf(published: str, expected: str) -> tuple[list[str], list[str]]:
    """(problems, differences): an ``include:`` of the fleet's record missing is a problem (that sender
    fails SPF); other differences only warn (the record works, it just is not the fleet's)."""
    have, want = spf_terms(published), spf_terms(expected)
    missing_includes = sorted(t for t in want - have if t.startswith("include:"))
    problems = [f"{t} is missing" for t in missing_includes]
    missing = sorted(want - have - set(missing_includes))
    extra = sorted(have - want)
    parts = ([f"missing {' '.join(missing)}"] if missing else []) + ([f"extra {' '.join(extra)}"] if extra else [])
    differences = [f"differs from the fleet's record: {'; '.join(parts)}"] if parts else []
    return problems, differences


def _spf_records(answer: Answer) -> list[str]:
    return [t for t in answer.records if is_spf(t)]


def _one_spf(answer: Answer, expected: rec.Record) -> tuple[str | None, str]:
    """The single SPF record at the name, or None and why there is not exactly one."""
    found = _spf_records(answer)
    if len(found) == 1:
        return found[0], ""
    if not found:
        why = answer.why_void if answer.void else "no TXT record starting v=spf1"
        return None, f"no SPF record ({why}); expected '{expected.value}'"
    return None, (f"{len(found)} SPF records, exactly one allowed (receivers return permerror, RFC 7208 3.2): "
                  + " | ".join(found))


async def check_spf(subject: Subject, expected: rec.Record, lookup: Lookup) -> list[Result]:
    """The domain's SPF record, and RFC 7208's two limits counted through its includes."""
    name = expected.name
    record, why = _one_spf(await lookup.query(name, "TXT"), expected)
    if record is None:
        skip = "no single SPF record to evaluate"
        return [subject.result("spf", name, Status.FAIL, why),
                subject.result("spf-lookups", name, Status.SKIP, skip),
                subject.result("spf-void-lookups", name, Status.SKIP, skip)]
    walk = SpfWalk(lookup)
    await walk.run(name, record)
    problems, differences = compare_spf(record, expected.value)
    problems += walk.errors
    if problems:
        spf = subject.result("spf", name, Status.FAIL, "; ".join(problems) + f": '{record}'")
    elif differences:
        spf = subject.result("spf", name, Status.WARN, f"{differences[0]} ('{expected.value}')")
    else:
        spf = subject.result("spf", name, Status.OK, record)
    if walk.dns_error is not None:
        why = f"could not follow the record: {walk.dns_error}"
        return [spf, subject.result("spf-lookups", name, Status.ERROR, why),
                subject.result("spf-void-lookups", name, Status.ERROR, why)]
    return [spf, _lookups_result(subject, name, walk), _voids_result(subject, name, walk)]


def _lookups_result(subject: Subject, name: str, walk: SpfWalk) -> Result:
    count = len(walk.lookups)
    by_term = Counter(origin for origin, _, _ in walk.lookups)
    detail = ", ".join(f"{term} ({n})" for term, n in by_term.items()) or "none"
    if walk.unexpanded:
        detail += f"; macros not expanded: {' '.join(walk.unexpanded)}"
    shown = f"more than {SPF_WALK_CAP}" if count > SPF_WALK_CAP else str(count)
    if count > SPF_MAX_LOOKUPS:
        return subject.result("spf-lookups", name, Status.FAIL,
                              f"{shown} DNS-querying terms, over the limit of {SPF_MAX_LOOKUPS} (RFC 7208 4.6.4: "
                              f"receivers return permerror): {detail}")
    return subject.result("spf-lookups", name, Status.OK,
                          f"{count} of at most {SPF_MAX_LOOKUPS} DNS-querying terms: {detail}")


def _voids_result(subject: Subject, name: str, walk: SpfWalk) -> Result:
    count = len(walk.voids)
    detail = f": {', '.join(walk.voids)}" if walk.voids else ""
    if count > SPF_MAX_VOID_LOOKUPS:
        return subject.result("spf-void-lookups", name, Status.FAIL,
                              f"{count} void lookups, over the limit of {SPF_MAX_VOID_LOOKUPS} (RFC 7208 4.6.4: "
                              f"receivers return permerror){detail}")
    return subject.result("spf-void-lookups", name, Status.OK,
                          f"{count} of at most {SPF_MAX_VOID_LOOKUPS} void lookups{detail}")


# --- DMARC ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DmarcRecord:
    tags: dict[str, str]
    errors: list[str]
    warnings: list[str]


def parse_dmarc(text: str) -> DmarcRecord:
    """Tags of a DMARC record (RFC 7489 6.3/6.4), what makes receivers reject it, and what they ignore."""
    parts = [p.strip() for p in text.split(";")]
    if parts and not parts[-1]:
        parts.pop()  # a closing ";" is allowed
    tags: dict[str, str] = {}
    errors: list[str] = []
    for part in parts:
        key, eq, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not eq or not key:
            errors.append(f"{part!r} is not tag=value")
            continue
        lowered = "v" if key == "v" else key.lower()
        if lowered in tags:
            errors.append(f"{lowered}= appears twice")
            continue
        tags[lowered] = value
    if not parts or parts[0].replace(" ", "") != "v=DMARC1":
        errors.append("must start with v=DMARC1")
    if "p" not in tags:
        errors.append("no p= tag")
    for tag in ("p", "sp", "np"):
        if tag in tags and tags[tag].lower() not in POLICY_STRENGTH:
            errors.append(f"{tag}={tags[tag]} is not none, quarantine or reject")
    for tag in ("adkim", "aspf"):
        if tag in tags and tags[tag].lower() not in ("r", "s"):
            errors.append(f"{tag}={tags[tag]} is not r or s")
    if "pct" in tags and not (tags["pct"].isdigit() and int(tags["pct"]) <= 100):
        errors.append(f"pct={tags['pct']} is not a number from 0 to 100")
    for tag in ("rua", "ruf"):
        for uri in filter(None, (u.strip() for u in tags.get(tag, "").split(","))):
            if ":" not in uri:
                errors.append(f"{tag}: {uri!r} is not a URI (mailto:...)")
    unknown = [t for t in tags if t not in DMARC_TAGS]
    warnings = [f"unknown tag{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} (ignored by receivers)"] \
        if unknown else []
    return DmarcRecord(tags, errors, warnings)


def _uris(value: str) -> list[str]:
    return sorted(u.strip().lower() for u in value.split(",") if u.strip())


def _compare_policy(tag: str, have: str, want: str, problems: list[str], notes: list[str]) -> None:
    have, want = have.lower(), want.lower()
    if POLICY_STRENGTH[have] < POLICY_STRENGTH[want]:
        problems.append(f"{tag}={have} is weaker than the fleet's {tag}={want}")
    elif POLICY_STRENGTH[have] > POLICY_STRENGTH[want]:
        notes.append(f"{tag}={have} is stricter than the fleet's {tag}={want} (update the tenant file)")


async def check_dmarc(subject: Subject, expected: rec.Record, lookup: Lookup) -> list[Result]:
    result = partial(subject.result, "dmarc", expected.name)
    answer = await lookup.query(expected.name, "TXT")
    found = [t for t in answer.records if "v=dmarc" in t.lower().replace(" ", "")]
    if not found:
        why = answer.why_void if answer.void else "no TXT record with v=DMARC1"
        return [result(Status.FAIL, f"no DMARC record ({why}); expected '{expected.value}'")]
    if len(found) > 1:
        return [result(Status.FAIL, f"{len(found)} DMARC records: receivers ignore them all (RFC 7489 6.6.3)")]
    record = parse_dmarc(found[0])
    if record.errors:
        return [result(Status.FAIL, f"invalid, receivers ignore it: {'; '.join(record.errors)}: '{found[0]}'")]
    want = parse_dmarc(expected.value).tags
    have = record.tags
    problems: list[str] = []
    notes = list(record.warnings)
    _compare_policy("p", have["p"], want["p"], problems, notes)
    if "sp" in have or "sp" in want:
        _compare_policy("sp", have.get("sp", have["p"]), want.get("sp", want["p"]), problems, notes)
    if have.get("pct", "100") != "100":
        notes.append(f"pct={have['pct']}: the policy covers only {have['pct']}% of failing mail")
    for tag in sorted((set(have) | set(want)) - {"v", "p", "sp", "pct"}):
        if tag in DMARC_TAGS and _uris(have.get(tag, "")) != _uris(want.get(tag, "")):
            notes.append(f"{tag}={have.get(tag, '')!s} differs from the fleet's {tag}={want.get(tag, '')}")
    if problems:
        return [result(Status.FAIL, "; ".join(problems + notes) + f": '{found[0]}'")]
    if notes:
        return [result(Status.WARN, "; ".join(notes) + f": '{found[0]}'")]
    return [result(Status.OK, found[0])]


@functools.cache
def _suffixes() -> PublicSuffixList:
    """Parsed once, on the first external ``rua``: most runs never need it."""
    return PublicSuffixList()


def organizational_domain(name: str) -> str:
    """RFC 7489 3.2: the registrable domain, by the Public Suffix List (``mail1.example.com`` → ``example.com``)."""
    name = _norm(name)
    return _suffixes().privatesuffix(name) or name


def external_report_hosts(domain: Domain) -> list[str]:
    """Domains of the fleet's ``rua`` mailboxes in another organisation: those must authorise the reports."""
    hosts: list[str] = []
    for uri in domain.dmarc.rua if domain.dmarc else []:
        scheme, _, rest = uri.partition(":")
        if scheme.lower() != "mailto":
            continue
        host = _norm(rest.split("!")[0].rpartition("@")[2])
        if host and organizational_domain(host) != organizational_domain(domain.name) and host not in hosts:
            hosts.append(host)
    return hosts


async def check_report_auth(subject: Subject, domain: str, host: str, name: str, lookup: Lookup) -> list[Result]:
    answer = await lookup.query(name, "TXT")
    prefix = rec.DMARC_REPORT_AUTH_VALUE.lower()
    if any(t.lower().replace(" ", "").split(";")[0] == prefix for t in answer.records):
        return [subject.result("dmarc-report-auth", name, Status.OK, f"{host} accepts DMARC reports about {domain}")]
    why = answer.why_void if answer.void else f"no TXT record {rec.DMARC_REPORT_AUTH_VALUE}"
    return [subject.result("dmarc-report-auth", name, Status.FAIL,
                           f"missing ({why}): {host} has not authorised reports about {domain}, so receivers "
                           "send none to it (RFC 7489 7.1)")]


# --- MAIL FROM ------------------------------------------------------------------------------------

def _mx(value: str) -> tuple[int, str]:
    preference, _, host = value.partition(" ")
    return int(preference), _norm(host)


async def check_mail_from_mx(subject: Subject, expected: rec.Record, lookup: Lookup) -> list[Result]:
    """SES receives bounces at the MAIL FROM's MX; without it SES falls back to its own MAIL FROM (no SPF alignment)."""
    result = partial(subject.result, "mail-from-mx", expected.name)
    answer = await lookup.query(expected.name, "MX")
    want = _mx(expected.value)
    got = [_mx(v) for v in answer.records]
    if want in got:
        if len(got) == 1:
            return [result(Status.OK, f"MX {expected.value}")]
        others = ", ".join(f"{p} {h}" for p, h in got if (p, h) != want)
        return [result(Status.WARN, f"MX {expected.value}, and also {others}: bounces may go elsewhere")]
    if any(host == want[1] for _, host in got):
        return [result(Status.WARN, f"MX {', '.join(answer.records)}: the fleet's preference is {want[0]}")]
    shown = f"missing ({answer.why_void})" if not got else f"MX {', '.join(answer.records)}"
    return [result(Status.FAIL, f"{shown}; expected MX {expected.value}: SES falls back to its own MAIL FROM "
                                "and SPF no longer aligns for DMARC")]


async def check_mail_from_spf(subject: Subject, expected: rec.Record, lookup: Lookup) -> list[Result]:
    result = partial(subject.result, "mail-from-spf", expected.name)
    record, why = _one_spf(await lookup.query(expected.name, "TXT"), expected)
    if record is None:
        return [result(Status.FAIL, why)]
    problems, differences = compare_spf(record, expected.value)
    if problems:
        return [result(Status.FAIL, "; ".join(problems) + f": '{record}'")]
    if differences:
        return [result(Status.WARN, f"{differences[0]} ('{expected.value}')")]
    return [result(Status.OK, record)]


# --- IPs ------------------------------------------------------------------------------------------

async def check_ptr(subject: Subject, reverse: str, hostname: str, lookup: Lookup) -> list[Result]:
    """Mailbox providers reject or junk mail from an IP without a PTR naming its host."""
    result = partial(subject.result, "ptr", reverse)
    answer = await lookup.query(reverse, "PTR")
    got = [_norm(n) for n in answer.records]
    if got == [_norm(hostname)]:
        return [result(Status.OK, f"PTR → {hostname}")]
    if not got:
        return [result(Status.FAIL, f"missing ({answer.why_void}): expected PTR → {hostname}")]
    if _norm(hostname) in got:
        return [result(Status.WARN, f"{len(got)} PTR records ({', '.join(got)}): keep only {hostname}")]
    return [result(Status.FAIL, f"PTR → {', '.join(got)}; expected {hostname}")]


async def check_forward(subject: Subject, ip: Ip, lookup: Lookup) -> list[Result]:
    """The PTR's host name must resolve back to the IP (forward-confirmed reverse DNS)."""
    address = ipaddress.ip_address(ip.address)
    rdtype = "AAAA" if address.version == 6 else "A"
    result = partial(subject.result, "fcrdns", ip.hostname)
    answer = await lookup.query(ip.hostname, rdtype)
    got = [ipaddress.ip_address(a) for a in answer.records]
    if address in got:
        return [result(Status.OK, f"{rdtype} → {address}: forward-confirmed")]
    if not got:
        return [result(Status.FAIL, f"no {rdtype} record ({answer.why_void}): expected {address}; reverse DNS "
                                    "is not forward-confirmed")]
    return [result(Status.FAIL, f"{rdtype} → {', '.join(map(str, got))}, not {address}: reverse DNS is not "
                                "forward-confirmed")]
