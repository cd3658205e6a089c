"""One tenant: its configuration set, event topic, optional SES IP pool, domains and senders."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from mailplane.cloud.dns import DnsPublisher
from mailplane.cloud.domain import DomainArgs, DomainIdentity
from mailplane.cloud.policies import ses_publish_policy, to_json
from mailplane.cloud.reputation import TenantReputationPolicy
from mailplane.cloud.sender import SenderArgs, SenderUser
from mailplane.model.names import WEBHOOK_PATH, topic_name
from mailplane.model.tenant import Domain, Tenant


@dataclass(frozen=True)
class TenantArgs:
    tenant: Tenant
    region: str
    ttl: int
    dns_publisher: Callable[[Domain], DnsPublisher]
    """The publisher of a domain's DNS provider (:func:`mailplane.cloud.dns.publisher_for`)."""
    account_id: pulumi.Output[str]
    zone_ids: Mapping[str, pulumi.Output[str]]
    """The stack's hosted zones' ids by zone name (:func:`mailplane.cloud.dns.zone_ids`)."""
    sender_url: str | None
    reputation_policy: str
    """SES's managed reputation policy for the tenant (``none``, ``standard``, ``strict``)."""


class TenantEmail(pulumi.ComponentResource):
    """``mailplane:cloud:Tenant``: everything SES needs to send for one tenant."""

    def __init__(self, name: str, args: TenantArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mailplane:cloud:Tenant", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tenant = args.tenant
        # The SES tenant: its own reputation, so SES (or an operator) can pause this tenant alone
        # instead of the whole account.  Every resource a send names must be associated with it.
        self.ses_tenant = aws.sesv2.Tenant(name, tenant_name=tenant.ses_tenant,
                                           tags={"mailplane:tenant": tenant.name}, opts=child)
        TenantReputationPolicy(f"{name}-reputation", tenant_arn=self.ses_tenant.tenant_arn, region=args.region,
                               policy=args.reputation_policy, opts=child)
        pool = tenant.ses.dedicated_ip_pool
        delivery: dict[str, Any] = {"tls_policy": "REQUIRE"}
        depends: list[pulumi.Resource] = []
        if pool is not None:
            ip_pool = aws.sesv2.DedicatedIpPool(f"{name}-pool", pool_name=pool.name,
                                                scaling_mode=pool.scaling_mode.upper(), opts=child)
            delivery["sending_pool_name"] = ip_pool.pool_name
            depends.append(ip_pool)
        self.configuration_set = aws.sesv2.ConfigurationSet(
            name, configuration_set_name=tenant.configuration_set,
            delivery_options=aws.sesv2.ConfigurationSetDeliveryOptionsArgs(**delivery),
            reputation_options=aws.sesv2.ConfigurationSetReputationOptionsArgs(reputation_metrics_enabled=True),
            sending_options=aws.sesv2.ConfigurationSetSendingOptionsArgs(sending_enabled=True),
            suppression_options=aws.sesv2.ConfigurationSetSuppressionOptionsArgs(
                suppressed_reasons=["BOUNCE", "COMPLAINT"]),
            tags={"mailplane:tenant": tenant.name}, opts=pulumi.ResourceOptions(parent=self, depends_on=depends))
        # SignatureVersion 2 (SHA256withRSA), never SHA-1: the sender's verifier accepts only version 2.
        self.topic = aws.sns.Topic(f"{name}-events", name=topic_name(tenant.name), signature_version=2,
                                   tags={"mailplane:tenant": tenant.name}, opts=child)
        topic_policy = aws.sns.TopicPolicy(
            f"{name}-events", arn=self.topic.arn,
            policy=pulumi.Output.all(self.topic.arn, args.account_id, self.configuration_set.arn).apply(
                lambda v: to_json(ses_publish_policy(v[0], v[1], v[2]))), opts=child)
        aws.sesv2.ConfigurationSetEventDestination(
            f"{name}-events", configuration_set_name=self.configuration_set.configuration_set_name,
            event_destination_name="sns",
            event_destination=aws.sesv2.ConfigurationSetEventDestinationEventDestinationArgs(
                enabled=True, matching_event_types=sorted(e.upper() for e in tenant.ses.events),
                sns_destination=aws.sesv2.ConfigurationSetEventDestinationEventDestinationSnsDestinationArgs(
                    topic_arn=self.topic.arn)),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[topic_policy]))
        self._associate(f"{name}-configuration-set", self.configuration_set.arn, child)
        if args.sender_url:
            aws.sns.TopicSubscription(f"{name}-webhook", topic=self.topic.arn, protocol="https",
                                      endpoint=args.sender_url + WEBHOOK_PATH, opts=child)

        self.domains: dict[str, DomainIdentity] = {}
        # A domain's component is not the tenant's child: its URN (and so its identity's, key's and
        # records') names no tenant, and a domain moved to another tenant is updated in place rather
        # than deleted and created again.  The alias is the URN it had as the tenant's child, so a
        # stack deployed before keeps its resources too.
        inherited = opts.providers if opts else None
        providers = list(inherited.values()) if isinstance(inherited, Mapping) else list(inherited or [])
        domain_opts = pulumi.ResourceOptions(providers=providers, aliases=[pulumi.Alias(parent=self)])
        for domain in tenant.domains:
            self.domains[domain.name] = DomainIdentity(domain.name, DomainArgs(
                tenant, domain, args.region, args.ttl, self.configuration_set.configuration_set_name,
                args.dns_publisher(domain), args.zone_ids), opts=domain_opts)
            self._associate(f"{name}-{domain.name}", self.domains[domain.name].identity.arn, child)
        self.senders: dict[str, SenderUser] = {}
        for sender in tenant.senders:
            domains = sorted({address.rpartition("@")[2] for address in sender.from_})
            self.senders[sender.name] = SenderUser(f"{tenant.name}-{sender.name}", SenderArgs(
                tenant, sender, [self.domains[d].identity.arn for d in domains], self.configuration_set.arn),
                opts=child)
        self.register_outputs({"configuration_set": self.configuration_set.configuration_set_name,
                               "topic_arn": self.topic.arn, "ses_tenant": self.ses_tenant.tenant_name})

    def _associate(self, name: str, resource_arn: pulumi.Input[str], opts: pulumi.ResourceOptions) -> None:
        """Associate an identity or the configuration set with the SES tenant: a send naming the tenant
        and an unassociated resource is refused.  Named after the tenant's output, so it is created
        after the tenant and deleted before it."""
        aws.sesv2.TenantResourceAssociation(name, tenant_name=self.ses_tenant.tenant_name,
                                            resource_arn=resource_arn, opts=opts)
