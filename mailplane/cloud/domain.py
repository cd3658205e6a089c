"""One sending domain: its SES identity, DKIM, MAIL FROM and DNS records.

The component gathers the domain's records; where they go (Route53 resources, or a list for a
human) is its DNS provider's publisher's business (:mod:`mailplane.cloud.dns`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_tls as tls

from mailplane.cloud.dns import DnsPublisher, DomainRecords, ListedRecords
from mailplane.model import records as rec
from mailplane.model.tenant import Domain, Tenant


@dataclass(frozen=True)
class DomainArgs:
    tenant: Tenant
    domain: Domain
    region: str
    ttl: int
    configuration_set_name: pulumi.Input[str]
    publisher: DnsPublisher
    """The domain's DNS provider's publisher (:func:`mailplane.cloud.dns.publisher_for`)."""
    zone_ids: Mapping[str, pulumi.Input[str]]
    """The stack's hosted zones' ids by zone name, looked up once (:func:`mailplane.cloud.dns.zone_ids`)."""


class DomainIdentity(pulumi.ComponentResource):
    """``mailplane:cloud:Domain``: children are named after the domain, which is unique in a stack."""

    def __init__(self, name: str, args: DomainArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        # The tenant is a property of the component, not its parent (see ``TenantEmail``): the
        # offline plan attributes the domain's resources to it.
        super().__init__("mailplane:cloud:Domain", name, {"tenant": args.tenant.name}, opts)
        child = pulumi.ResourceOptions(parent=self)
        # What cannot come back once deleted: the identity (its verification, its Easy DKIM tokens
        # published in DNS, its sending history) and the DKIM keys (they exist in Pulumi's state
        # only).  ``protect`` makes pulumi up refuse to delete or replace them until an operator
        # runs ``pulumi state unprotect`` (see docs/review.md, "Plans that refuse to destroy").
        kept = pulumi.ResourceOptions(parent=self, protect=True)
        domain = args.domain
        self.private_key_pem: pulumi.Output[str] | None = None
        if domain.dkim.mode == "byo":
            key = tls.PrivateKey(f"{name}-dkim", algorithm="RSA", rsa_bits=domain.dkim.key_bits, opts=kept)
            self.private_key_pem = pulumi.Output.secret(key.private_key_pem)
            dkim = aws.sesv2.EmailIdentityDkimSigningAttributesArgs(
                domain_signing_private_key=pulumi.Output.secret(key.private_key_pem.apply(rec.pem_body)),
                domain_signing_selector=domain.dkim.selector)
        else:
            dkim = aws.sesv2.EmailIdentityDkimSigningAttributesArgs(next_signing_key_length="RSA_2048_BIT")
        self.identity = aws.sesv2.EmailIdentity(
            name, email_identity=domain.name, configuration_set_name=args.configuration_set_name,
            dkim_signing_attributes=dkim, tags={"mailplane:tenant": args.tenant.name}, opts=kept)
        if domain.mail_from:
            aws.sesv2.EmailIdentityMailFromAttributes(
                f"{name}-mail-from", email_identity=self.identity.email_identity, mail_from_domain=domain.mail_from,
                behavior_on_mx_failure="USE_DEFAULT_VALUE", opts=child)

        self.powermta_key_pem: pulumi.Output[str] | None = self.private_key_pem
        """The key PowerMTA signs the domain's mail with: the BYODKIM key, or an Easy DKIM domain's own."""
        pmta_record: pulumi.Output[rec.Record] | None = None
        if rec.has_powermta_key(args.tenant, domain):
            # SES keeps Easy DKIM keys to itself: PowerMTA's routes sign with a key of their own.
            pmta_key = tls.PrivateKey(f"{name}-dkim-pmta", algorithm="RSA", rsa_bits=2048, opts=kept)
            self.powermta_key_pem = pulumi.Output.secret(pmta_key.private_key_pem)
            pmta_record = pmta_key.public_key_pem.apply(lambda pem: rec.powermta_dkim_record(domain, pem, args.ttl))

        static = rec.static_records(args.tenant, domain, args.region, args.ttl)
        if domain.dkim.mode == "byo":
            dkim_records = key.public_key_pem.apply(lambda pem: [rec.byo_dkim_record(domain, pem, args.ttl)])
        else:
            tokens = self.identity.dkim_signing_attributes.apply(lambda a: list(a.tokens or []) if a else [])
            dkim_records = tokens.apply(lambda t: rec.easy_dkim_records(domain.name, t, args.ttl))
        dynamic = (pulumi.Output.all(dkim_records, pmta_record).apply(lambda v: [*v[0], v[1]])
                   if pmta_record is not None else dkim_records)
        self.records: pulumi.Output[list[dict[str, object]]] = dynamic.apply(
            lambda found: [r.as_dict() for r in [*found, *static]])
        self.external_records: ListedRecords | None = args.publisher.publish(
            name, DomainRecords(domain, args.ttl, static, dkim_records, pmta_record, self.records), args.zone_ids,
            child)
        """The records left for a DNS outside the stack (the stack output ``external_dns_records``);
        None when the domain's provider published them."""
        self.register_outputs({"identity_arn": self.identity.arn, "records": self.records})
