"""The Pulumi program's body: one explicit AWS provider in the fleet's SES region, one component per tenant.

``__main__.py`` calls :func:`declare` and exports what it returns; ``mailplane plan`` calls it
under mocks.  The provider's region comes from fleet.yaml, the one source of truth, so a stack's
``aws:region`` config cannot send SES and IAM credentials to different regions (the SMTP
password is derived for the provider's region).
"""

from __future__ import annotations

import functools
from typing import Any

import pulumi
import pulumi_aws as aws

from mailplane.cloud import dns
from mailplane.cloud.tenant import TenantArgs, TenantEmail
from mailplane.model.stack import Fleet


def smtp_endpoint(region: str) -> str:
    """SES's SMTP host in ``region``: a stack output, so Ansible and the sender need not know AWS's naming."""
    return f"email-smtp.{region}.amazonaws.com"


def declare(fleet: Fleet) -> dict[str, Any]:
    """Declare every resource of the stack; return the stack outputs (secrets wrapped as secrets)."""
    settings = fleet.settings
    region = settings.ses.region
    provider = aws.Provider("ses", region=region)
    invoke = pulumi.InvokeOutputOptions(provider=provider)
    account_id = aws.get_caller_identity_output(opts=invoke).account_id
    # Each domain's records go through its DNS provider's publisher, chosen once by the provider's name.
    publishers = functools.partial(dns.publisher_for, fleet)
    zone_ids = dns.zone_ids(fleet, invoke)
    sender_url = settings.sender.public_url if settings.sender else None
    tenants = {
        t.name: TenantEmail(t.name, TenantArgs(t, region, settings.dns.ttl, publishers,
                                               account_id, zone_ids, sender_url, fleet.reputation_policy_for(t)),
                            opts=pulumi.ResourceOptions(providers=[provider]))
        for t in fleet.tenants
    }
    return outputs(fleet, tenants)


def outputs(fleet: Fleet, tenants: dict[str, TenantEmail]) -> dict[str, Any]:
    """What Ansible and the sender service read (see docs/pulumi.md, "Stack outputs")."""
    # The records of domains whose provider left them for someone else, as their publishers said.
    external = [listed for t in fleet.tenants for d in t.domains
                for listed in [tenants[t.name].domains[d.name].external_records] if listed is not None]
    return {
        "region": fleet.settings.ses.region,
        "smtp_endpoint": smtp_endpoint(fleet.settings.ses.region),
        "tenants": {name: {
            "configuration_set": component.configuration_set.configuration_set_name,
            "ses_tenant": component.ses_tenant.tenant_name,
            "topic_arns": [component.topic.arn],
            "senders": {s: {"iam_user": u.user.name, "access_key_id": u.access_key_id}
                        for s, u in component.senders.items()},
        } for name, component in tenants.items()},
        "domains": {d.name: {"tenant": t.name, "dkim_mode": d.dkim.mode,
                             "dkim_selectors": [d.dkim.selector] if d.dkim.selector else
                             tenants[t.name].domains[d.name].identity.dkim_signing_attributes.apply(
                                 lambda a: list(a.tokens or []) if a else [])}
                    for t in fleet.tenants for d in t.domains},
        # The key PowerMTA signs each domain with: the BYODKIM key, or an Easy DKIM domain's own.
        "dkim_private_keys": pulumi.Output.secret({
            d.name: pem for t in fleet.tenants for d in t.domains
            for pem in [tenants[t.name].domains[d.name].powermta_key_pem] if pem is not None}),
        "sender_credentials": pulumi.Output.secret({
            f"{t.name}/{s}": {"access_key_id": u.access_key_id, "secret_access_key": u.secret_access_key,
                              "smtp_password": u.smtp_password}
            for t in fleet.tenants for s, u in tenants[t.name].senders.items()}),
        "external_dns_records": pulumi.Output.all(*external).apply(
            lambda lists: sorted((r for rs in lists for r in rs), key=lambda r: (r["name"], r["type"]))),
    }
