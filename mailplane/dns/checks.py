"""What ``mailplane dns check`` verifies, as pure logic over a :class:`~mailplane.dns.lookup.Lookup`.

Every expected name and value comes from :mod:`mailplane.model.records` and every route from
:mod:`mailplane.model.routes`, the modules the Pulumi program, the PowerMTA renderer and the
external-DNS listing use too, so the check compares DNS with exactly what was (or should have
been) published and what is sent.  Per domain:

- DKIM: Easy DKIM's token CNAMEs; the BYODKIM key and, for an Easy DKIM domain with a PowerMTA
  route, PowerMTA's own key, each compared as a key (SubjectPublicKeyInfo or PKCS#1 alike) with
  the stack's private key, and its tags (``h=`` with sha256, ``s=`` with email, ``k=rsa``,
  ``t=y``, revoked);
- SPF at the domain when the fleet publishes one: one record, well formed (RFC 7208's ABNF),
  within RFC 7208's limits of 10 DNS-querying terms and 2 void lookups counted through nested
  includes, the same policy as the fleet's (compared as what passes: a record written with
  ``redirect=`` is equal; ``+all``, ``?all`` or a missing tenant IP fails), and *evaluated*: each
  of the tenant's IPs must pass for ``postmaster@<domain>``;
- DMARC: syntax, policy and alignment modes against the fleet's, and the report authorisation of
  every ``rua``/``ruf`` domain of another organisation that the published record names -- also
  where the tenant file declares no DMARC and the record is kept elsewhere;
- SES's custom MAIL FROM: its MX and SPF (``include:amazonses.com``: SES's addresses are not ours
  to evaluate);
- per PowerMTA route, the return path ``<stream>.rp.<domain>``: its MX (every route IP's host, or
  asynchronous bounces are lost) and its SPF, evaluated for each route IP as above.

Per IP: forward-confirmed reverse DNS.

SPF is evaluated by pyspf (:mod:`mailplane.dns.spfeval`), the RFC 7208 implementation receivers
use, with its DNS questions going through the run's lookup.  It answers for one client IP and
stops at the first match, so the properties of a record for *every* client -- its syntax, the
worst case of its lookups, what it authorises -- are the walk's in :mod:`mailplane.dns.spfwalk`,
which counts and compares and never evaluates; the RFC 7208 test suite is its oracle in the tests.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import ipaddress
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from publicsuffixlist import PublicSuffixList

from mailplane.dns.lookup import Answer, BoundedLookup, CachedLookup, DnsError, Lookup
from mailplane.dns.report import Result, Status, printable
from mailplane.dns.spfeval import evaluate
from mailplane.dns.spfwalk import (
    SPF_MAX_LOOKUPS,
    SPF_MAX_MX,
    SPF_MAX_VOID_LOOKUPS,
    SPF_WALK_CAP,
    SpfWalk,
    audit_spf,
    compare_policy,
    is_spf,
    spf_records,
)
from mailplane.model import records as rec
from mailplane.model.routes import Route, powermta_return_paths
from mailplane.model.stack import Fleet
from mailplane.model.tenant import Domain, Ip, Tenant

__all__ = ["SPF_MAX_LOOKUPS", "SPF_MAX_MX", "SPF_MAX_VOID_LOOKUPS", "SPF_WALK_CAP", "Check", "SpfWalk",
           "StackOutputs", "Subject", "external_report_hosts", "is_spf", "plan_checks", "public_pem_of",
           "run_checks"]

DKIM_MIN_BITS = 2048
POLICY_STRENGTH = {"none": 0, "quarantine": 1, "reject": 2}
DMARC_TAGS = frozenset({"v", "p", "sp", "np", "rua", "ruf", "adkim", "aspf", "pct", "fo", "rf", "ri", "psd", "t"})
"""RFC 7489 6.3 and the tags DMARCbis adds (np, psd, t); receivers ignore others."""
ALIGNMENT = {"relaxed": "r", "strict": "s"}
POSTMASTER = "postmaster"
"""Local part of the sender the SPF evaluations use: any local part gives the same result without macros."""


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
        return Result(self.tenant, self.domain, self.ip, check, name, status, printable(message))


@dataclass(frozen=True)
class Check:
    """One unit of work: ``body`` asks DNS and gives the results named in ``gives`` (check id, DNS name).

    A DNS failure that stops the body becomes an ``error`` result for each of them, so every
    check is reported even when the nameserver is gone; so does anything else that goes wrong
    (a record no rule foresaw): a result, never a traceback.  A body may give more results than
    ``gives`` names (the report authorisations of the domains a published DMARC record names).
    """

    subject: Subject
    gives: tuple[tuple[str, str], ...]
    body: Callable[[Lookup], Awaitable[list[Result]]]

    async def run(self, lookup: Lookup) -> list[Result]:
        try:
            return await self.body(lookup)
        except DnsError as err:
            return [self.subject.result(check, name, Status.ERROR, str(err)) for check, name in self.gives]
        except Exception as err:  # reported, with what it was, as this check's error
            return [self.subject.result(check, name, Status.ERROR, f"internal error: {type(err).__name__}: {err}")
                    for check, name in self.gives]


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
    static = {(r.purpose, r.type): r for r in rec.static_records(tenant, domain, fleet.settings.ses.region, ttl)
              if r.purpose != "return-path"}
    checks = dkim_checks(subject, tenant, domain, outputs, ttl)
    if spf := static.get(("spf", "TXT")):
        checks.append(Check(subject, tuple((c, spf.name) for c in ("spf", "spf-lookups", "spf-void-lookups")),
                            partial(check_spf, subject, spf)))
        checks += [Check(subject, (("spf-eval", spf.name),), partial(check_spf_eval, subject, "spf-eval", spf.name, ip))
                   for ip in tenant.ips]
    if (dmarc := static.get(("dmarc", "TXT"))) and domain.dmarc is not None:
        declared = external_report_hosts(domain)
        checks.append(Check(subject, (("dmarc", dmarc.name),), partial(check_dmarc, subject, domain, dmarc, declared)))
        for host in declared:
            name = rec.dmarc_report_auth_name(domain.name, host)
            checks.append(Check(subject, (("dmarc-report-auth", name),),
                                partial(check_report_auth, subject, domain.name, host, name)))
    elif domain.dmarc is None:
        name = f"_dmarc.{domain.name}"
        checks.append(Check(subject, (("dmarc", name),), partial(check_undeclared_dmarc, subject, domain.name, name)))
    if mx := static.get(("mail-from", "MX")):
        checks.append(Check(subject, (("mail-from-mx", mx.name),), partial(check_mail_from_mx, subject, mx)))
    if txt := static.get(("mail-from", "TXT")):
        checks.append(Check(subject, (("mail-from-spf", txt.name),),
                            partial(check_spf_record, subject, "mail-from-spf", txt)))
    checks += return_path_checks(subject, tenant, domain, ttl)
    return checks


def return_path_checks(subject: Subject, tenant: Tenant, domain: Domain, ttl: int) -> list[Check]:
    """Per PowerMTA route: the return path's MX and SPF record, and the SPF evaluation of each route IP."""
    records = {(r.name, r.type): r for r in rec.return_path_records(tenant, domain, ttl)}
    checks = []
    for route, name in powermta_return_paths(tenant, domain):
        mx, txt = records[(name, "MX")], records[(name, "TXT")]
        checks.append(Check(subject, (("return-path-mx", name),), partial(check_return_path_mx, subject, route, mx)))
        checks.append(Check(subject, (("return-path-spf", name),),
                            partial(check_spf_record, subject, "return-path-spf", txt)))
        checks += [Check(subject, (("return-path-spf-eval", name),),
                         partial(check_spf_eval, subject, "return-path-spf-eval", name, ip)) for ip in route.ips]
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

def dkim_checks(subject: Subject, tenant: Tenant, domain: Domain, outputs: StackOutputs | None,
                ttl: int) -> list[Check]:
    """Easy DKIM: one check per token CNAME (tokens only SES knows: from the outputs), and PowerMTA's own key
    when the tenant has a PowerMTA route; BYODKIM: the selector's TXT (one key for SES and PowerMTA)."""
    pem = outputs.dkim_private_keys.get(domain.name) if outputs else None
    if domain.dkim.mode == "byo":
        name = rec.byo_dkim_name(domain)
        bits = getattr(domain.dkim, "key_bits", DKIM_MIN_BITS)
        return [Check(subject, (("dkim", name),), partial(check_dkim_key, subject, "dkim", name, pem, bits,
                                                              "SES and PowerMTA sign"))]
    checks = []
    tokens = outputs.dkim_selectors.get(domain.name) if outputs else None
    if not tokens:
        name = rec.easy_dkim_records(domain.name, ["<token>"], ttl)[0].name
        result = (subject.result("dkim", name, Status.SKIP, "skipped: no stack outputs (--outputs gives the "
                                 "Easy DKIM tokens)") if outputs is None else
                  subject.result("dkim", name, Status.ERROR, "no Easy DKIM tokens for this domain in the stack "
                                 "outputs: not deployed yet, or the outputs of another stack?"))
        checks.append(Check(subject, (("dkim", name),), partial(_given, result)))
    else:
        checks += [Check(subject, (("dkim", r.name),), partial(check_easy_dkim, subject, r))
                   for r in rec.easy_dkim_records(domain.name, tokens, ttl)]
    if rec.has_powermta_key(tenant, domain):
        name = rec.powermta_dkim_name(domain)
        checks.append(Check(subject, (("dkim-powermta", name),),
                            partial(check_dkim_key, subject, "dkim-powermta", name, pem, DKIM_MIN_BITS,
                                    "PowerMTA signs")))
    return checks


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
    """The tags of a DKIM key record (RFC 6376 3.6.1); raises ValueError naming what makes it unusable.

    An empty ``p=`` (a revoked key) parses: :func:`dkim_tag_problems` reports it.
    """
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
    if "p" not in tags:
        raise ValueError("no p= tag")
    return tags


def _colon_list(value: str) -> list[str]:
    return [v.strip().lower() for v in value.split(":") if v.strip()]


def dkim_tag_problems(tags: dict[str, str]) -> tuple[list[str], list[str]]:
    """(problems, warnings) of a key record's tags: what makes verifiers reject signatures, what weakens them."""
    problems: list[str] = []
    if not tags["p"]:
        problems.append("empty p=: the key is revoked (RFC 6376 3.6.1), every signature with it fails")
    if tags.get("k", "rsa").lower() != "rsa":
        problems.append(f"k={tags['k']}: the fleet signs with RSA keys (k=rsa)")
    if "h" in tags and "sha256" not in _colon_list(tags["h"]):
        problems.append(f"h={tags['h']}: the key allows no sha256, and rsa-sha1 signatures are not accepted "
                        "(RFC 8301); SES and PowerMTA sign rsa-sha256")
    if "s" in tags and not {"email", "*"} & set(_colon_list(tags["s"])):
        problems.append(f"s={tags['s']}: the key is not for email (s= must include email or *, RFC 6376 3.6.1)")
    warnings = []
    if "y" in _colon_list(tags.get("t", "")):
        warnings.append("t=y: the domain is testing DKIM, verifiers may treat its signatures as unsigned")
    return problems, warnings


def public_pem_of(private_pem: str) -> str:
    """The public half of a PEM private key, as PEM (what records.byo_dkim_record takes)."""
    # Only the public half is used, so the costly consistency check of the private key (~90 ms) is skipped.
    key = serialization.load_pem_private_key(private_pem.encode("ascii"), password=None,
                                             unsafe_skip_rsa_key_validation=True)
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")


def rsa_key_from_dkim_p(p: str) -> rsa.RSAPublicKey:
    """The RSA key of a ``p=`` tag: base64 of a SubjectPublicKeyInfo or of a PKCS#1 RSAPublicKey (verifiers,
    dkimpy among them, accept both); raises ValueError saying why it is not one."""
    try:
        der = base64.b64decode(p, validate=True)
    except (binascii.Error, ValueError) as err:
        raise ValueError(f"p= is not base64: {err}") from None
    try:
        key = serialization.load_der_public_key(der)
    except (ValueError, TypeError) as err:
        raise ValueError(f"p= is not a DER public key (SubjectPublicKeyInfo or RSAPublicKey): {err}") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError(f"p= is a {type(key).__name__}, not an RSA key")
    return key


async def check_dkim_key(subject: Subject, check: str, name: str, private_pem: str | None, declared_bits: int,
                         signer: str, lookup: Lookup) -> list[Result]:
    """A selector's key record.  With the stack's private key: ``p=`` must be its public key (as a key, in either
    DER form).  Without: an RSA key of at least 2048 bits (or the ``key_bits`` the fleet declares)."""
    result = partial(subject.result, check, name)
    answer = await lookup.query(name, "TXT")
    if not answer.records:
        return [result(Status.FAIL, f"missing ({answer.why_void}): expected the selector's TXT "
                                    f"'v=DKIM1; k=rsa; p=...'; {signer} with it: signatures cannot be verified")]
    if len(answer.records) > 1:
        return [result(Status.FAIL, f"{len(answer.records)} TXT records at the selector: verifiers may read "
                                    "either; keep one")]
    try:
        tags = parse_dkim(answer.records[0])
    except ValueError as err:
        return [result(Status.FAIL, f"not a DKIM key record: {err}")]
    problems, warnings = dkim_tag_problems(tags)
    if problems:
        return [result(Status.FAIL, "; ".join(problems))]
    try:
        key = rsa_key_from_dkim_p(tags["p"])
    except ValueError as err:
        return [result(Status.FAIL, str(err))]
    if private_pem is not None:
        try:
            expected = serialization.load_pem_public_key(public_pem_of(private_pem).encode("ascii"))
        except (ValueError, TypeError) as err:
            return [result(Status.ERROR, f"cannot read the domain's private key in the stack outputs: {err}")]
        if key.public_numbers() != expected.public_numbers():  # type: ignore[union-attr]
            value = rec.dkim_key_value(public_pem_of(private_pem))
            return [result(Status.FAIL, f"p= is not the public key of the stack's private key ({signer} with that "
                                        f"one: signatures fail); expected '{value[:48]}…'")]
        verdict = "p= is the public key of the stack's private key"
    else:
        bits = key.key_size
        if bits < min(declared_bits, DKIM_MIN_BITS):
            return [result(Status.FAIL, f"RSA {bits}-bit key: at least {min(declared_bits, DKIM_MIN_BITS)} bits "
                                        "expected")]
        if bits < DKIM_MIN_BITS:
            warnings.insert(0, f"RSA {bits}-bit key, as the fleet declares (key_bits); {DKIM_MIN_BITS} recommended")
        verdict = f"RSA {bits}-bit key (not compared with the stack's: no private key in --outputs)"
    if warnings:
        return [result(Status.WARN, "; ".join(warnings))]
    return [result(Status.OK, verdict)]


# --- SPF ------------------------------------------------------------------------------------------

def _one_spf(answer: Answer, expected: rec.Record) -> tuple[str | None, str]:
    """The single SPF record at the name, or None and why there is not exactly one."""
    found = spf_records(answer)
    if len(found) == 1:
        return found[0], ""
    if not found:
        why = answer.why_void if answer.void else "no TXT record starting v=spf1"
        return None, f"no SPF record ({why}); expected '{expected.value}'"
    return None, (f"{len(found)} SPF records, exactly one allowed (receivers return permerror, RFC 7208 3.2): "
                  + " | ".join(found))


def _record_result(subject: Subject, check: str, expected: rec.Record, record: str, walk: SpfWalk,
                   problems: list[str]) -> Result:
    """The verdict on a published SPF record: the fleet's policy, or what is wrong or only different."""
    policy_problems, differences = compare_policy(walk.policy, expected.value)
    problems = policy_problems + problems
    name = expected.name
    if problems:
        return subject.result(check, name, Status.FAIL, "; ".join(problems) + f": '{record}'")
    if differences:
        return subject.result(check, name, Status.WARN, f"differs from the fleet's record: {'; '.join(differences)}: "
                                                        f"'{record}' (the fleet's: '{expected.value}')")
    same = " ".join(record.split()).lower() == expected.value.lower()
    return subject.result(check, name, Status.OK, record if same else f"{record} (the fleet's policy, written "
                                                                     f"otherwise: '{expected.value}')")


async def check_spf(subject: Subject, expected: rec.Record, lookup: Lookup) -> list[Result]:
    """The domain's SPF record, and RFC 7208's two limits counted through its includes."""
    name = expected.name
    audit = await audit_spf(lookup, name)
    record, why = _one_spf(audit.answer, expected)
    if record is None or audit.walk is None:
        skip = "no single SPF record to evaluate"
        return [subject.result("spf", name, Status.FAIL, why),
                subject.result("spf-lookups", name, Status.SKIP, skip),
                subject.result("spf-void-lookups", name, Status.SKIP, skip)]
    walk = audit.walk
    if walk.dns_error is not None:
        why = f"could not follow the record: {walk.dns_error}"
        return [subject.result(c, name, Status.ERROR, why) for c in ("spf", "spf-lookups", "spf-void-lookups")]
    return [_record_result(subject, "spf", expected, record, walk, walk.errors),
            _lookups_result(subject, name, walk), _voids_result(subject, name, walk)]


async def check_spf_record(subject: Subject, check: str, expected: rec.Record, lookup: Lookup) -> list[Result]:
    """An SPF record mailplane publishes besides the domain's (a return path's, the MAIL FROM's): one record,
    the fleet's policy, well formed and within RFC 7208's limits, in one result."""
    audit = await audit_spf(lookup, expected.name)
    record, why = _one_spf(audit.answer, expected)
    if record is None or audit.walk is None:
        return [subject.result(check, expected.name, Status.FAIL, why)]
    walk = audit.walk
    if walk.dns_error is not None:
        return [subject.result(check, expected.name, Status.ERROR, f"could not follow the record: {walk.dns_error}")]
    return [_record_result(subject, check, expected, record, walk, walk.permerrors())]


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
                              f"{count} void lookups{walk.void_clients}, over the limit of {SPF_MAX_VOID_LOOKUPS} "
                              f"(RFC 7208 4.6.4: receivers return permerror){detail}")
    return subject.result("spf-void-lookups", name, Status.OK,
                          f"{count} of at most {SPF_MAX_VOID_LOOKUPS} void lookups{walk.void_clients}{detail}")


SPF_CONSEQUENCE = {
    "fail": "receivers may reject its mail, and SPF cannot align for DMARC",
    "softfail": "receivers may junk its mail, and SPF cannot align for DMARC",
    "neutral": "SPF cannot align for DMARC",
    "none": "SPF cannot align for DMARC",
    "permerror": "the record is broken for every receiver: SPF cannot align for DMARC",
}


async def check_spf_eval(subject: Subject, check: str, domain: str, ip: Ip, lookup: Lookup) -> list[Result]:
    """pyspf's ``check_host()`` for ``ip`` sending as ``postmaster@<domain>``, with the IP's host as HELO: pass."""
    sender = f"{POSTMASTER}@{domain}"
    verdict = await evaluate(lookup, ip.address, sender, ip.hostname)
    result = partial(subject.result, check, domain)
    who = f"{ip.address} ({ip.hostname}) sending as {sender}"
    if verdict.dns_error is not None:
        return [result(Status.ERROR, f"{who}: could not evaluate SPF: {verdict.dns_error}")]
    if verdict.result == "pass":
        return [result(Status.OK, f"{who}: pass ({verdict.explanation})")]
    if verdict.result == "error":
        return [result(Status.ERROR, f"{who}: {verdict.explanation}")]
    consequence = SPF_CONSEQUENCE.get(verdict.result, "SPF does not pass")
    return [result(Status.FAIL, f"{who}: SPF {verdict.result}, not pass ({verdict.explanation}): {consequence}")]


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
    tags, errors = _dmarc_tags(parts)
    if not parts or parts[0].replace(" ", "") != "v=DMARC1":
        errors.append("must start with v=DMARC1")
    errors.extend(_dmarc_value_errors(tags))
    unknown = [t for t in tags if t not in DMARC_TAGS]
    warnings = [f"unknown tag{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} (ignored by receivers)"] \
        if unknown else []
    return DmarcRecord(tags, errors, warnings)


def _dmarc_tags(parts: list[str]) -> tuple[dict[str, str], list[str]]:
    """The record's tag=value pairs, names lower-cased (but ``v``, which must be exact), and the parts that are
    not one, or repeat a tag: receivers ignore a record with either."""
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
    return tags, errors


def _dmarc_value_errors(tags: dict[str, str]) -> list[str]:
    """The values receivers cannot use: a policy they do not know (or none), an alignment mode, a percentage,
    a report address that is no URI."""
    errors: list[str] = []
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
    return errors


def _uris(value: str) -> list[str]:
    return sorted(u.strip().lower() for u in value.split(",") if u.strip())


def _compare_policy(tag: str, have: str, want: str, problems: list[str], notes: list[str]) -> None:
    have, want = have.lower(), want.lower()
    if POLICY_STRENGTH[have] < POLICY_STRENGTH[want]:
        problems.append(f"{tag}={have} is weaker than the fleet's {tag}={want}")
    elif POLICY_STRENGTH[have] > POLICY_STRENGTH[want]:
        notes.append(f"{tag}={have} is stricter than the fleet's {tag}={want} (update the tenant file)")


def _alignment(tag: str, have: dict[str, str], declared: str, problems: list[str], notes: list[str]) -> None:
    """adkim/aspf: the published mode must be the fleet's; stricter only warns (mail the fleet expects to
    align in relaxed mode may not), weaker fails (the fleet counts on strict alignment)."""
    want = ALIGNMENT[declared]
    published = have.get(tag, "r").lower()
    if published == want:
        return
    if want == "s":
        problems.append(f"{tag}={published} (relaxed{'' if tag in have else ', the default'}) where the fleet "
                        f"declares strict ({tag}=s)")
    else:
        notes.append(f"{tag}=s is stricter than the fleet's relaxed alignment (update the tenant file)")


async def check_dmarc(subject: Subject, domain: Domain, expected: rec.Record, declared_hosts: list[str],
                      lookup: Lookup) -> list[Result]:
    """The domain's DMARC record against the fleet's, then the report authorisation of each other organisation's
    domain the published ``rua``/``ruf`` names that the fleet does not (those have checks of their own)."""
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
    assert domain.dmarc is not None
    _alignment("adkim", have, domain.dmarc.dkim_alignment, problems, notes)
    _alignment("aspf", have, domain.dmarc.spf_alignment, problems, notes)
    if have.get("pct", "100") != "100":
        notes.append(f"pct={have['pct']}: the policy covers only {have['pct']}% of failing mail")
    for tag in sorted((set(have) | set(want)) - {"v", "p", "sp", "pct", "adkim", "aspf"}):
        if tag in DMARC_TAGS and _uris(have.get(tag, "")) != _uris(want.get(tag, "")):
            notes.append(f"{tag}={have.get(tag, '')!s} differs from the fleet's {tag}={want.get(tag, '')}")
    if problems:
        results = [result(Status.FAIL, "; ".join(problems + notes) + f": '{found[0]}'")]
    elif notes:
        results = [result(Status.WARN, "; ".join(notes) + f": '{found[0]}'")]
    else:
        results = [result(Status.OK, found[0])]
    return results + await published_report_auth(subject, domain.name, have, declared_hosts, lookup)


async def check_undeclared_dmarc(subject: Subject, domain: str, name: str, lookup: Lookup) -> list[Result]:
    """A domain whose tenant file declares no DMARC (``dmarc-published`` waived: the record is kept elsewhere).

    Nothing to compare with, but what is published still sends receivers' reports somewhere: each
    other organisation's mailbox it names must have authorised them, or the reports are lost.
    """
    answer = await lookup.query(name, "TXT")
    found = [t for t in answer.records if "v=dmarc" in t.lower().replace(" ", "")]
    if len(found) != 1:
        what = "no DMARC record" if not found else f"{len(found)} DMARC records, which receivers ignore"
        return [subject.result("dmarc", name, Status.SKIP, f"not declared in the tenant file; {what} published")]
    record = parse_dmarc(found[0])
    if record.errors:
        return [subject.result("dmarc", name, Status.SKIP, "not declared in the tenant file; the published record "
                                                           f"is invalid, receivers ignore it: '{found[0]}'")]
    results = [subject.result("dmarc", name, Status.SKIP, f"not declared in the tenant file; published: '{found[0]}'")]
    return results + await published_report_auth(subject, domain, record.tags, [], lookup)


async def published_report_auth(subject: Subject, domain: str, tags: dict[str, str], declared_hosts: list[str],
                                lookup: Lookup) -> list[Result]:
    """The report authorisation of each other organisation's mailbox a published record's ``rua``/``ruf`` names,
    but for ``declared_hosts`` (the tenant file's, which have checks of their own)."""
    results: list[Result] = []
    uris = [u for tag in ("rua", "ruf") for u in tags.get(tag, "").split(",")]
    for host in report_hosts(uris, domain):
        if host not in declared_hosts:
            name = rec.dmarc_report_auth_name(domain, host)
            try:
                results += await check_report_auth(subject, domain, host, name, lookup)
            except DnsError as err:
                results.append(subject.result("dmarc-report-auth", name, Status.ERROR, str(err)))
    return results


@functools.cache
def _suffixes() -> PublicSuffixList:
    """Parsed once, on the first external ``rua``: most runs never need it."""
    return PublicSuffixList()


def organizational_domain(name: str) -> str:
    """RFC 7489 3.2: the registrable domain, by the Public Suffix List (``mail1.example.com`` → ``example.com``)."""
    name = _norm(name)
    return _suffixes().privatesuffix(name) or name


def report_hosts(uris: list[str], domain: str) -> list[str]:
    """Domains of ``mailto:`` report URIs in another organisation than ``domain``: those must authorise the reports."""
    hosts: list[str] = []
    for uri in uris:
        scheme, _, rest = uri.strip().partition(":")
        if scheme.lower() != "mailto":
            continue
        host = _norm(rest.split("!")[0].rpartition("@")[2])
        if host and organizational_domain(host) != organizational_domain(domain) and host not in hosts:
            hosts.append(host)
    return hosts


def external_report_hosts(domain: Domain) -> list[str]:
    """Domains of the fleet's ``rua`` mailboxes in another organisation: those must authorise the reports."""
    return report_hosts(list(domain.dmarc.rua) if domain.dmarc else [], domain.name)


def _authorises(answer: Answer) -> bool:
    prefix = rec.DMARC_REPORT_AUTH_VALUE.lower()
    return any(t.lower().replace(" ", "").split(";")[0] == prefix for t in answer.records)


async def check_report_auth(subject: Subject, domain: str, host: str, name: str, lookup: Lookup) -> list[Result]:
    """``<domain>._report._dmarc.<host>`` must say v=DMARC1 (RFC 7489 7.1).

    A ``*._report._dmarc.<host>`` wildcard is accepted as receivers see it: DNS answers the name
    asked from the wildcard (and does not where that name exists with no TXT record, so neither
    does this check, which asks what receivers ask).
    """
    answer = await lookup.query(name, "TXT")
    if _authorises(answer):
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


# --- return paths ---------------------------------------------------------------------------------

async def check_return_path_mx(subject: Subject, route: Route, expected: rec.Record, lookup: Lookup) -> list[Result]:
    """PowerMTA takes the asynchronous bounces of its return paths at the route IPs' hosts: every one at
    preference 10.  One missing loses the bounces sent there; others only warn."""
    result = partial(subject.result, "return-path-mx", expected.name)
    answer = await lookup.query(expected.name, "MX")
    want = {_mx(v) for v in expected.values}
    got = {_mx(v) for v in answer.records}
    missing = sorted(want - got)
    if missing:
        shown = f"missing ({answer.why_void})" if not got else f"MX {', '.join(answer.records)}"
        hosts = ", ".join(f"{p} {h}" for p, h in missing)
        return [result(Status.FAIL, f"{shown}; expected MX {hosts} (the {route.stream} route's hosts): asynchronous "
                                    "bounces to this return path are lost")]
    extra = sorted(got - want)
    if extra:
        others = ", ".join(f"{p} {h}" for p, h in extra)
        return [result(Status.WARN, f"MX {', '.join(expected.values)}, and also {others}: bounces may go to a host "
                                    "that is not PowerMTA's")]
    return [result(Status.OK, f"MX {', '.join(expected.values)}")]


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
