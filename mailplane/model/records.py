"""DNS records a sending domain needs, as plain values: one place computes every name and value.

Route53 resources (:mod:`mailplane.cloud`), the list printed for external DNS, ``mailplane dns check``,
the policy checks and the review diff are all built from these, so they cannot disagree; pure
computation from the model, so none of them needs Pulumi to know a record.  Values that only SES
knows (Easy DKIM tokens) or only the key generator knows (a BYODKIM public key) are passed in as
strings by the caller once they are resolved.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization

from mailplane.model.names import dkim_record_name, powermta_selector, return_path_base
from mailplane.model.routes import needs_powermta_key, powermta_return_paths, tenant_routes
from mailplane.model.tenant import Domain, Tenant

TXT_CHUNK = 255
"""A DNS TXT character-string holds at most 255 octets (RFC 1035); longer values are split."""
MAIL_FROM_SPF = "v=spf1 include:amazonses.com ~all"
EASY_DKIM_TOKENS = 3
EASY_DKIM_HOST = "dkim.amazonses.com"
"""CNAME target domain of Easy DKIM tokens.  A few newer regions use ``dkim.<region>.amazonses.com``;
that list is not confirmed here, so every region of the example stacks uses this one."""


@dataclass(frozen=True)
class Record:
    """One record set; ``value`` is its first (usually only) value, ``extra`` the others (an MX to several hosts)."""

    name: str
    type: str
    ttl: int
    value: str
    purpose: str
    extra: tuple[str, ...] = ()

    @property
    def values(self) -> tuple[str, ...]:
        return (self.value, *self.extra)

    @property
    def strings(self) -> list[str]:
        """The character-strings of a TXT value, each at most 255 characters."""
        return split_txt(self.value) if self.type == "TXT" else [self.value]

    @property
    def route53_value(self) -> str:
        """Route53 takes a long TXT value as chunks joined by ``""`` (it adds the outer quotes)."""
        return '""'.join(self.strings) if self.type == "TXT" else self.value

    @property
    def route53_values(self) -> list[str]:
        return [self.route53_value, *self.extra]

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"name": self.name, "type": self.type, "ttl": self.ttl, "value": self.value,
                                  "purpose": self.purpose}
        if self.extra:
            out["values"] = list(self.values)
        if self.type == "TXT":
            out["strings"] = self.strings
        return out


def split_txt(value: str) -> list[str]:
    return [value[i:i + TXT_CHUNK] for i in range(0, len(value), TXT_CHUNK)] or [""]


def easy_dkim_records(domain: str, tokens: list[str], ttl: int) -> list[Record]:
    return [Record(dkim_record_name(token, domain), "CNAME", ttl, f"{token}.{EASY_DKIM_HOST}", "dkim")
            for token in tokens]


def dkim_p_from_pem(public_key_pem: str) -> str:
    """Base64 of the DER SubjectPublicKeyInfo, as a DKIM ``p=`` tag carries it (RFC 6376 3.6.1)."""
    key = serialization.load_pem_public_key(public_key_pem.encode("ascii"))
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode("ascii")


def pem_body(pem: str) -> str:
    """A PEM key without its header, footer and line breaks: the form SES takes for BYODKIM."""
    return "".join(line.strip() for line in pem.strip().splitlines() if not line.startswith("-----"))


def byo_dkim_name(domain: Domain) -> str:
    """Name of a BYODKIM domain's TXT record: known offline, unlike its value (the public key)."""
    assert domain.dkim.selector is not None  # the loader requires it of a BYODKIM domain
    return dkim_record_name(domain.dkim.selector, domain.name)


def byo_dkim_record(domain: Domain, public_key_pem: str, ttl: int) -> Record:
    return Record(byo_dkim_name(domain), "TXT", ttl, dkim_key_value(public_key_pem), "dkim")


def dkim_key_value(public_key_pem: str) -> str:
    return f"v=DKIM1; k=rsa; p={dkim_p_from_pem(public_key_pem)}"


def has_powermta_key(tenant: Tenant, domain: Domain) -> bool:
    """The Easy DKIM domains of a tenant with a PowerMTA route get a key of their own for PowerMTA."""
    return needs_powermta_key(domain) and any(r.transport == "pmta" for r in tenant_routes(tenant))


def powermta_dkim_name(domain: Domain) -> str:
    """Name of the TXT record of the key PowerMTA signs an Easy DKIM domain with."""
    return dkim_record_name(powermta_selector(domain), domain.name)


def powermta_dkim_record(domain: Domain, public_key_pem: str, ttl: int) -> Record:
    return Record(powermta_dkim_name(domain), "TXT", ttl, dkim_key_value(public_key_pem), "dkim-powermta")


def dmarc_value(domain: Domain) -> str | None:
    if domain.dmarc is None:
        return None
    tags = ["v=DMARC1", f"p={domain.dmarc.policy}"]
    if domain.dmarc.subdomain_policy:
        tags.append(f"sp={domain.dmarc.subdomain_policy}")
    if domain.dmarc.dkim_alignment == "strict":
        tags.append("adkim=s")
    if domain.dmarc.spf_alignment == "strict":
        tags.append("aspf=s")
    if domain.dmarc.rua:
        tags.append("rua=" + ",".join(domain.dmarc.rua))
    return "; ".join(tags)


DMARC_REPORT_AUTH_VALUE = "v=DMARC1"
"""What a report receiver publishes to accept DMARC reports about another domain (RFC 7489 7.1)."""


def dmarc_report_auth_name(domain: str, destination_host: str) -> str:
    """Where ``destination_host`` (a ``rua`` mailbox's domain) authorises reports about ``domain``.

    Not a record mailplane publishes: the receiving domain's owner does, and receivers drop the
    reports without it when the two domains belong to different organisations.
    """
    return f"{domain}._report._dmarc.{destination_host}"


def apex_spf_value(tenant: Tenant, domain: Domain) -> str | None:
    """SPF at the domain: SES, the tenant's own dedicated IPs (PowerMTA), and extra includes."""
    if domain.spf is None:
        return None
    terms = ["v=spf1", "include:amazonses.com"]
    terms += spf_ip_terms([ip.address for ip in tenant.ips])
    terms += [f"include:{name}" for name in domain.spf.include]
    terms.append(domain.spf.all)
    return " ".join(terms)


def spf_ip_terms(addresses: tuple[str, ...] | list[str]) -> list[str]:
    return [f"ip{6 if ':' in address else 4}:{address}" for address in addresses]


def return_path_records(tenant: Tenant, domain: Domain, ttl: int) -> list[Record]:
    """Per PowerMTA route: the return path's MX (the route's IPs by their PTR names, where PowerMTA
    takes the asynchronous bounces) and its SPF (exactly the route's IPs, ``-all``); and once, the MX
    of the feedback-loop address's domain (``return_path`` itself)."""
    records = []
    routes = powermta_return_paths(tenant, domain)
    if routes:  # the feedback-loop address fbl@<return_path>: its MX names every PowerMTA IP of the tenant
        hosts = sorted({ip.hostname for route, _ in routes for ip in route.ips})
        records.append(Record(return_path_base(domain), "MX", ttl, f"10 {hosts[0]}", "feedback-loop",
                              tuple(f"10 {h}" for h in hosts[1:])))
    for route, name in routes:
        hosts = sorted({ip.hostname for ip in route.ips})
        records.append(Record(name, "MX", ttl, f"10 {hosts[0]}", "return-path",
                              tuple(f"10 {h}" for h in hosts[1:])))
        records.append(Record(name, "TXT", ttl, " ".join(["v=spf1", *spf_ip_terms(route.addresses), "-all"]),
                              "return-path"))
    return records


def static_records(tenant: Tenant, domain: Domain, region: str, ttl: int) -> list[Record]:
    """Every record of a domain that does not depend on a value SES or a key generator returns."""
    records = []
    if domain.mail_from:
        records.append(Record(domain.mail_from, "MX", ttl, f"10 feedback-smtp.{region}.amazonses.com", "mail-from"))
        records.append(Record(domain.mail_from, "TXT", ttl, MAIL_FROM_SPF, "mail-from"))
    dmarc = dmarc_value(domain)
    if dmarc:
        records.append(Record(f"_dmarc.{domain.name}", "TXT", ttl, dmarc, "dmarc"))
    spf = apex_spf_value(tenant, domain)
    if spf:
        records.append(Record(domain.name, "TXT", ttl, spf, "spf"))
    records.extend(return_path_records(tenant, domain, ttl))
    return records

