"""One sending domain: its SES identity, DKIM, MAIL FROM and DNS records."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_tls as tls

from mailplane.model import records as rec
from mailplane.model.tenant import Domain, Tenant


@dataclass(frozen=True)
class DomainArgs:
    tenant: Tenant
    domain: Domain
    region: str
    ttl: int
    configuration_set_name: pulumi.Input[str]
    zone_id: pulumi.Input[str] | None
    """Route53 zone id; None for a domain whose records a human publishes."""


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
        if args.zone_id is not None:
            self._route53(name, args, static, dkim_records, child)
            if pmta_record is not None:
                aws.route53.Record(
                    f"{name}-dkim-pmta", zone_id=args.zone_id, name=rec.powermta_dkim_name(domain), type="TXT",
                    ttl=args.ttl, records=[pmta_record.apply(lambda r: r.route53_value)], opts=child)
        self.register_outputs({"identity_arn": self.identity.arn, "records": self.records})

    def _route53(self, name: str, args: DomainArgs, static: list[rec.Record],
                 dkim_records: pulumi.Output[list[rec.Record]], child: pulumi.ResourceOptions) -> None:
        """Exactly the records the domain needs; DKIM ones take their names from SES's answer.

        The number of DKIM records is fixed (three Easy DKIM tokens, or one BYODKIM selector) so
        resources are declared up front, never inside ``apply()``, and show in every preview.
        """
        byo = args.domain.dkim.mode == "byo"
        for i in range(1 if byo else rec.EASY_DKIM_TOKENS):
            dkim: pulumi.Output[rec.Record] = dkim_records.apply(functools.partial(_nth, i))
            name_ = rec.byo_dkim_name(args.domain) if byo else dkim.apply(_record_name)
            aws.route53.Record(
                f"{name}-dkim-{i + 1}", zone_id=args.zone_id, name=name_, type="TXT" if byo else "CNAME",
                ttl=args.ttl, records=[dkim.apply(_route53_value)], opts=child)
        for record in static:
            aws.route53.Record(
                f"{name}-{resource_suffix(record)}", zone_id=args.zone_id, name=record.name,
                type=record.type, ttl=record.ttl, records=record.route53_values, opts=child)


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
