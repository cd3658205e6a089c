"""``stacks/<stack>/tenants/<name>.yaml``: one file per tenant, owned by that tenant."""

from __future__ import annotations

import datetime
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, StrictStr

from mailplane.model.base import Model
from mailplane.model.fleet import DnsProvider, ReputationPolicy, TenantGuard
from mailplane.model.types import DnsLabel, DomainName, EmailAddress, IPAddress, Slug

Stream = Literal["transactional", "marketing"]
EventType = Literal["send", "reject", "bounce", "complaint", "delivery", "open", "click",
                    "rendering_failure", "delivery_delay", "subscription"]
Reason = Annotated[StrictStr, Field(min_length=10, description="Why the check does not apply here.")]


def _one_or_many(value: object) -> object:
    return [value] if isinstance(value, str) else value


class Dkim(Model):
    mode: Literal["easy", "byo"] = Field(
        description="`easy`: SES generates the keys (three CNAMEs). `byo`: mailplane creates a "
        "key of `key_bits` bits, SES and PowerMTA both sign with it (one TXT at the selector).")
    selector: DnsLabel | None = Field(None, description="DKIM selector; required for `byo` only.")
    key_bits: Literal[1024, 2048] = Field(
        2048, description="RSA size of the `byo` key (Easy DKIM keys are always 2048 bits); 1024 fails the "
        "`dkim-key-2048` policy check unless waived.")
    powermta_selector: DnsLabel | None = Field(
        None, description="`easy` only: selector of the key PowerMTA signs the domain's mail with (SES "
        "keeps Easy DKIM keys to itself, so the PowerMTA routes get a 2048-bit key of their own); "
        "default `pmta1`. A `byo` domain signs with `selector` on every route.")


Alignment = Literal["relaxed", "strict"]


class Dmarc(Model):
    policy: Literal["none", "quarantine", "reject"] = Field(description="The `p=` tag.")
    rua: Annotated[list[StrictStr], BeforeValidator(_one_or_many, json_schema_input_type=str | list[str])] = Field(
        default_factory=list, description="Aggregate report URIs (`mailto:...`), one or a list.")
    subdomain_policy: Literal["none", "quarantine", "reject"] | None = Field(None, description="The `sp=` tag.")
    dkim_alignment: Alignment = Field(
        "relaxed", description="The `adkim=` tag: `strict` needs the DKIM `d=` to equal the From domain.")
    spf_alignment: Alignment = Field(
        "relaxed", description="The `aspf=` tag: `strict` needs the return path domain to equal the From "
        "domain, so SPF never aligns (every return path is a subdomain) and DKIM carries DMARC alone.")


class DomainDns(Model):
    provider: DnsProvider | None = Field(None, description="Default: the fleet's `dns.default_provider`.")
    zone: DomainName | None = Field(None, description="Route53 hosted zone (the domain or a parent); "
                                    "required with `route53`.")


class Spf(Model):
    """An SPF record at the domain itself (the MAIL FROM domain always gets its own)."""

    include: list[DomainName] = Field(default_factory=list, description="Extra `include:` domains.")
    all: Literal["~all", "-all"] = Field("~all", description="Qualifier of the closing `all`.")


class Domain(Model):
    name: DomainName = Field(description="Sending domain; Unicode names are stored as A-labels.")
    dkim: Dkim
    mail_from: DomainName | None = Field(
        None, description="Custom MAIL FROM of mail sent through SES, a subdomain of `name` (MX to SES's "
        "feedback host, SPF `include:amazonses.com`); without it SES uses its own, which DMARC does not align.")
    return_path: DomainName | None = Field(
        None, description="Parent of the return path domains of mail sent through PowerMTA, a subdomain of "
        "`name` (default `rp.<name>`): each stream the tenant sends through PowerMTA gets "
        "`<stream>.<return_path>`, whose SPF lists exactly that stream's IPs and whose MX takes the bounces.")
    dmarc: Dmarc | None = Field(None, description="DMARC record to publish at `_dmarc.<name>`.")
    spf: Spf | None = Field(None, description="Publish SPF at the domain itself.")
    dns: DomainDns = DomainDns()
    waive: dict[StrictStr, Reason] = Field(
        default_factory=dict, description="Policy checks waived for this domain: check id -> reason.")


class IpWarmup(Model):
    plan: Slug = Field(description="A plan of `warmup_plans` in fleet.yaml, or a built-in preset.")
    started: datetime.date = Field(description="Day 1 of the plan (unquoted YYYY-MM-DD).")


class Ip(Model):
    address: IPAddress = Field(description="Dedicated sending address (IPv4 or IPv6).")
    hostname: DomainName = Field(description="PTR name; it must resolve back to `address`.")
    host: Slug = Field(description="MTA host (a key of `mta_hosts`) this IP is bound to.")
    warmup: IpWarmup | None = Field(None, description="Warmup plan; omit only for an IP already warm.")
    streams: list[Stream] | None = Field(None, description="Streams this IP carries (default: all the tenant's).")
    waive: dict[StrictStr, Reason] = Field(
        default_factory=dict, description="Policy checks waived for this IP: check id -> reason.")


class DedicatedIpPool(Model):
    name: Slug
    scaling_mode: Literal["standard", "managed"] = "standard"


class TenantSes(Model):
    configuration_set: Slug | None = Field(None, description="Default: the tenant's name.")
    tenant: Slug | None = Field(None, description="Name of the tenant in SES (its reputation, its pause); "
                                "default: the tenant's name.  Unique in the SES account and region.")
    reputation_policy: ReputationPolicy | None = Field(
        None, description="SES reputation policy of this tenant; default: fleet.yaml's `ses.reputation_policy`.")
    events: list[EventType] = Field(
        default_factory=lambda: list[EventType](["bounce", "complaint", "reject"]),
        description="SES event types published to the tenant's SNS topics.")
    dedicated_ip_pool: DedicatedIpPool | None = Field(None, description="An SES dedicated IP pool.")
    share: int = Field(1, ge=1, le=1000, description="This tenant's weight in the SES account's daily quota, which "
                       "the tenants sending through SES share: its fair share is quota x share / the sum of their "
                       "shares. A share another tenant leaves unused is lent, more of it as the UTC day goes on. "
                       "Also its weight in the sender's queue: its turns against other tenants' in each stream.")


class Sender(Model):
    name: Slug = Field(description="Becomes an IAM send-only user and a sender API key.")
    from_: list[EmailAddress] = Field(
        alias="from", min_length=1,
        description="Allowed From addresses, in the tenant's domains; `*@domain` allows any.")


class Tenant(Model):
    """The whole of one tenant file."""

    name: Slug = Field(description="Tenant name; must equal the file name without `.yaml`.")
    display_name: StrictStr | None = None
    streams: list[Stream] = Field(default_factory=lambda: list[Stream](["transactional"]),
                                  description="Kinds of mail the tenant sends.")
    daily_quota: int | None = Field(None, gt=0, description="Tenant cap per day across all its IPs and SES.")
    quota_burst_seconds: int = Field(
        3600, ge=1, le=86400, description="With `daily_quota`: its marketing mail is spent as a steady rate, "
        "one send every 86400 / daily_quota seconds, with this many seconds' worth at once after a quiet spell "
        "(an hour's: 1/24 of the day). Transactional mail is never held by it (it spends the rate too, so "
        "marketing yields). 86400: the whole day's quota may go at once.")
    guard: TenantGuard | None = Field(None, description="The rates at which this tenant's sending pauses; default: "
                                      "fleet.yaml's `guard`.")
    domains: list[Domain] = Field(default_factory=list)
    ips: list[Ip] = Field(default_factory=list)
    ses: TenantSes = TenantSes()
    senders: list[Sender] = Field(default_factory=list)

    @property
    def configuration_set(self) -> str:
        return self.ses.configuration_set or self.name

    @property
    def ses_tenant(self) -> str:
        """The SES tenant every send of this tenant through SES names (``TenantName``)."""
        return self.ses.tenant or self.name
