"""How many resources the Pulumi program declares for a tenant, from the model alone: pure, nothing is declared.

``mailplane plan --base`` runs the program only for the tenants a change touches, yet judges "does
this change delete more than a fifth of the stack?" against the whole stack: the tenants it did not
run are counted here.  The count follows :mod:`mailplane.cloud.program`'s declarations rule for
rule (components not counted, as the plan's resource list counts none); a domain's DNS records are
counted by its provider's publisher (:mod:`mailplane.cloud.dns`), the class that declares them.  A
test holds the count to the program on every example stack and a generated one, so the two cannot
drift apart.
"""

from __future__ import annotations

from mailplane.cloud.dns import publisher_for
from mailplane.model import records as rec
from mailplane.model.stack import Fleet
from mailplane.model.tenant import Domain, Tenant

PER_TENANT = 7
"""SES tenant, its reputation policy, configuration set, its association, event topic, topic policy,
event destination."""
PER_SENDER = 3
"""IAM user, its inline policy, its access key."""
STACK = 1
"""The AWS provider."""


def domain_count(fleet: Fleet, tenant: Tenant, domain: Domain) -> int:
    byo = domain.dkim.mode == "byo"
    pmta_key = rec.has_powermta_key(tenant, domain)
    count = 1 + 1  # the identity, its association with the SES tenant
    count += int(byo) + int(bool(domain.mail_from)) + int(pmta_key)
    # The records: as many resources as the domain's DNS publisher declares (none for external DNS).
    return count + publisher_for(fleet, domain).resource_count(tenant, domain, fleet.settings.ses.region,
                                                               fleet.settings.dns.ttl)


def tenant_count(fleet: Fleet, tenant: Tenant) -> int:
    """Resources of ``tenant`` (components aside)."""
    count = PER_TENANT + int(tenant.ses.dedicated_ip_pool is not None) + int(fleet.settings.sender is not None)
    count += sum(domain_count(fleet, tenant, d) for d in tenant.domains)
    return count + PER_SENDER * len(tenant.senders)


def stack_count(fleet: Fleet) -> int:
    """Resources of the whole stack (components aside): what a full ``mailplane plan`` lists."""
    return STACK + sum(tenant_count(fleet, t) for t in fleet.tenants)
