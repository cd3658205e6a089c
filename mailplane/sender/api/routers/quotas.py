"""``GET /v1/quotas/{tenant}``: today's caps, counts and what remains, for the key's own tenant."""

from __future__ import annotations

from fastapi import APIRouter

from mailplane.sender.api.deps import Authenticated, ServiceDep
from mailplane.sender.api.errors import ApiError, fails
from mailplane.sender.quotas import QuotaReport, quota_report

router = APIRouter(tags=["quotas"])


@router.get("/v1/quotas/{tenant}", response_model=QuotaReport,
            responses=fails({401: "missing or invalid API key", 404: "not this key's tenant"}))
def quotas(who: Authenticated, tenant: str, service: ServiceDep) -> QuotaReport:
    """Today's caps, counts and what remains, per IP, for the tenant and for the SES account."""
    if tenant != who.tenant.name:
        raise ApiError(404, "no such tenant for this key")
    day = service.today()
    events = service.events
    held: dict[str, int] = {}
    overrides = {}
    for ip in who.tenant.ips:
        if events is not None:
            held[ip.address] = int(events.held_days(tenant, ip.address, day))
        override = service.override(tenant, ip.address, day)
        if override is not None:
            overrides[ip.address] = override
    return quota_report(service.fleet, who.tenant, day, lambda kind, key: service.store.counter(kind, key, day),
                        held_days=held, overrides=overrides, in_force=service.store.pauses.in_force(),
                        ses_limits=service.pacer.limits(),
                        not_deployed={ip: why for t, ip, _, _, why in service.undeployed() if t == tenant},
                        ses_shares=service.pacer.ses_limits())
