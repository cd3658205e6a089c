"""Where a domain's DNS records go: one publisher per DNS provider, behind one interface.

Each domain names its DNS provider (``dns.provider``, else the fleet's ``dns.default_provider``),
and three parts of the program need to know something different about it: which hosted zones the
stack looks up, how many resources the domain's records take (:mod:`mailplane.cloud.inventory`
counts them without running Pulumi), and whether the records are declared as resources or left in
the stack output ``external_dns_records`` for a human to publish.  As in octoDNS, where every
provider sits behind one interface, those answers live together in one class per provider, chosen
once from :data:`PUBLISHERS` by the name the model gives.  The callers compare no provider names,
so a provider's rules cannot drift apart between them, and another provider is one class and one
registry entry.

The records themselves come from :mod:`mailplane.model.records`, which the DNS check and the review
share; a publisher only decides where they go.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Protocol

import pulumi
import pulumi_aws as aws

from mailplane.model import records as rec
from mailplane.model.stack import Fleet
from mailplane.model.tenant import Domain, Tenant

ListedRecords = pulumi.Output[list[dict[str, object]]]
"""Records as the stack outputs list them (:meth:`mailplane.model.records.Record.as_dict`)."""


@dataclass(frozen=True)
class DomainRecords:
    """Every record one domain needs, as the program holds them while declaring the domain.

    The static records are known from the model; the DKIM ones only once SES (Easy DKIM tokens) or
    the generated key (BYODKIM, PowerMTA's key) answers, so they stay outputs.
    """

    domain: Domain
    ttl: int
    static: list[rec.Record]
    dkim: pulumi.Output[list[rec.Record]]
    """One BYODKIM TXT record, or the Easy DKIM CNAMEs (:data:`mailplane.model.records.EASY_DKIM_TOKENS`)."""
    powermta: pulumi.Output[rec.Record] | None
    """The TXT record of the key PowerMTA signs with, when the domain has one of its own."""
    listed: ListedRecords
    """All of the above as one list: the domain component's ``records`` output."""


class DnsPublisher(Protocol):
    """What the program asks of a DNS provider; one implementation per provider name in :data:`PUBLISHERS`."""

    def zones(self, domains: Iterable[Domain], opts: pulumi.InvokeOutputOptions) -> dict[str, pulumi.Output[str]]:
        """Look up the hosted zones the provider keeps ``domains``' records in: their ids by zone name.

        Called once per stack, before any domain is declared, so a zone shared by many domains is
        looked up once.
        """
        ...

    def resource_count(self, tenant: Tenant, domain: Domain, region: str, ttl: int) -> int:
        """How many resources :meth:`publish` declares for ``domain``, known from the model alone."""
        ...

    def publish(self, name: str, records: DomainRecords, zone_ids: Mapping[str, pulumi.Input[str]],
                opts: pulumi.ResourceOptions) -> ListedRecords | None:
        """Publish the domain's records, declaring resources with ``opts`` under names starting ``name``.

        Returns the records the stack leaves for someone else to publish (they go to the stack
        output ``external_dns_records``), or None when the provider published them itself.
        """
        ...


class Route53Publisher:
    """Route53: one ``aws.route53.Record`` per record, in the domain's hosted zone, declared up front.

    The number of DKIM records is fixed (three Easy DKIM tokens, or one BYODKIM selector), so every
    record is a resource declared outside ``apply()`` and shows in every preview, though the DKIM
    ones take their names and values from SES's answer or the generated key.
    """

    def zones(self, domains: Iterable[Domain], opts: pulumi.InvokeOutputOptions) -> dict[str, pulumi.Output[str]]:
        # Sorted: the look-ups are made in the same order on every run.
        return {zone: aws.route53.get_zone_output(name=zone, private_zone=False, opts=opts).zone_id
                for zone in sorted({d.dns.zone for d in domains if d.dns.zone})}

    def resource_count(self, tenant: Tenant, domain: Domain, region: str, ttl: int) -> int:
        if not domain.dns.zone:
            return 0  # see publish()
        dkim = 1 if domain.dkim.mode == "byo" else rec.EASY_DKIM_TOKENS
        return dkim + len(rec.static_records(tenant, domain, region, ttl)) + int(rec.has_powermta_key(tenant, domain))

    def publish(self, name: str, records: DomainRecords, zone_ids: Mapping[str, pulumi.Input[str]],
                opts: pulumi.ResourceOptions) -> ListedRecords | None:
        domain, ttl = records.domain, records.ttl
        if not domain.dns.zone:
            # The model refuses a Route53 domain without its zone (mailplane.model.checks); there is
            # no zone to declare records in, and the records are not anyone else's to publish.
            return None
        zone_id = zone_ids[domain.dns.zone]
        byo = domain.dkim.mode == "byo"
        for i in range(1 if byo else rec.EASY_DKIM_TOKENS):
            dkim: pulumi.Output[rec.Record] = records.dkim.apply(functools.partial(_nth, i))
            record_name = rec.byo_dkim_name(domain) if byo else dkim.apply(_record_name)
            aws.route53.Record(
                f"{name}-dkim-{i + 1}", zone_id=zone_id, name=record_name, type="TXT" if byo else "CNAME",
                ttl=ttl, records=[dkim.apply(_route53_value)], opts=opts)
        for record in records.static:
            aws.route53.Record(
                f"{name}-{resource_suffix(record)}", zone_id=zone_id, name=record.name,
                type=record.type, ttl=record.ttl, records=record.route53_values, opts=opts)
        if records.powermta is not None:
            aws.route53.Record(
                f"{name}-dkim-pmta", zone_id=zone_id, name=rec.powermta_dkim_name(domain), type="TXT",
                ttl=ttl, records=[records.powermta.apply(_route53_value)], opts=opts)
        return None


class ExternalPublisher:
    """A DNS outside the stack (the customer's, another team's): nothing is declared; every record
    is listed in ``external_dns_records`` for a human to publish, and ``mailplane dns check`` tells
    when they have."""

    def zones(self, domains: Iterable[Domain], opts: pulumi.InvokeOutputOptions) -> dict[str, pulumi.Output[str]]:
        return {}

    def resource_count(self, tenant: Tenant, domain: Domain, region: str, ttl: int) -> int:
        return 0

    def publish(self, name: str, records: DomainRecords, zone_ids: Mapping[str, pulumi.Input[str]],
                opts: pulumi.ResourceOptions) -> ListedRecords | None:
        return records.listed


PUBLISHERS: Mapping[str, DnsPublisher] = MappingProxyType({
    "route53": Route53Publisher(),
    "external": ExternalPublisher(),
})
"""The publisher of each provider name the model accepts (:data:`mailplane.model.fleet.DnsProvider`)."""


class UnknownDnsProvider(LookupError):
    """A provider name no publisher is registered for: the program stops before declaring anything
    rather than leave a domain's records unpublished without a word."""

    def __init__(self, provider: str, domain: str | None = None) -> None:
        self.provider = provider
        where = f"domain {domain}: " if domain else ""
        super().__init__(f"{where}unknown DNS provider {provider!r}; mailplane publishes DNS records "
                         f"through: {', '.join(sorted(PUBLISHERS))}")


def publisher(provider: str, *, domain: str | None = None) -> DnsPublisher:
    """The publisher registered for ``provider``; ``domain`` only names the domain in the error."""
    try:
        return PUBLISHERS[provider]
    except KeyError:
        raise UnknownDnsProvider(provider, domain) from None


def publisher_for(fleet: Fleet, domain: Domain) -> DnsPublisher:
    """The publisher of ``domain``'s provider in ``fleet`` (its own, else the fleet's default)."""
    return publisher(fleet.dns_provider(domain), domain=domain.name)


def zone_ids(fleet: Fleet, opts: pulumi.InvokeOutputOptions) -> dict[str, pulumi.Output[str]]:
    """Every hosted zone the stack's domains publish in, by name: each publisher looks up its own domains'.

    An unknown provider fails here, before any resource is declared.
    """
    by_publisher: dict[DnsPublisher, list[Domain]] = {}
    for tenant in fleet.tenants:
        for domain in tenant.domains:
            by_publisher.setdefault(publisher_for(fleet, domain), []).append(domain)
    return {zone: zone_id for found, domains in by_publisher.items()
            for zone, zone_id in found.zones(domains, opts).items()}


def resource_suffix(record: rec.Record) -> str:
    """``<purpose>-<type>``; a return path's records also name its stream (the first label), one per route."""
    if record.purpose == "return-path":
        return f"{record.name.split('.', 1)[0]}-return-path-{record.type.lower()}"
    return f"{record.purpose}-{record.type.lower()}"


def _nth(i: int, records: list[rec.Record]) -> rec.Record:
    return records[i]


def _record_name(record: rec.Record) -> str:
    return record.name


def _route53_value(record: rec.Record) -> str:
    return record.route53_value
