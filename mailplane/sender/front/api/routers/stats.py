"""``GET /v1/stats/{tenant}?days=N``: the numbers behind the tenant guard, per day and route, for people.

The tenant's own key reads its own; an operator's admin key reads any tenant's at
``GET /v1/admin/stats/{tenant}`` (``mailplane admin stats``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from mailplane.model.tenant import Tenant
from mailplane.sender.db.outcomes import by_day
from mailplane.sender.front.api.deps import Authenticated, ServiceDep
from mailplane.sender.front.api.errors import ApiError, fails
from mailplane.sender.front.api.routers.admin import UNAUTHORIZED, Operator
from mailplane.sender.service import Service

router = APIRouter(tags=["quotas"])
admin_router = APIRouter(tags=["admin"])

Days = Annotated[int, Query(ge=1, le=90, description="Days back, today included.")]


class DayRouteOut(BaseModel):
    day: str = Field(description="UTC day, YYYY-MM-DD.")
    route: str = Field(description="`ses`, the PowerMTA IP the mail left from, or `-` for mail kept back before it "
                       "took a route (suppressed).")
    sent: int = Field(description="Handed to SES or PowerMTA.")
    delivered: int = Field(description="Accepted by the receiver (PowerMTA accounting; SES Delivery events, when the "
                           "tenant's `ses.events` include `delivery`).")
    bounced: int = Field(description="Hard bounces (SES events, PowerMTA accounting), counted when they arrived.")
    complained: int = Field(description="Reported as spam (SES events, PowerMTA's feedback-loop records).")
    deferred: int = Field(description="Temporary failures the receiver answered (PowerMTA accounting; SES "
                          "DeliveryDelay events, with `delivery-delay` in `ses.events`).")
    suppressed: int = Field(description="Kept back: the recipient was on the suppression list by send time.")
    bounce_rate: float | None = Field(description="bounced / sent, what the tenant guard judges; null with nothing "
                                      "sent.")
    complaint_rate: float | None = Field(description="complained / sent, what the tenant guard judges.")


class Stats(BaseModel):
    tenant: str
    days: int
    routes: list[DayRouteOut]
    guard: dict[str, float | int] = Field(description="The thresholds the tenant guard judges these by.")


def tenant_stats(service: Service, tenant: Tenant, days: int) -> Stats:
    today_hour = int(service.clock() // 3600)
    first_hour = (today_hour // 24 - (days - 1)) * 24
    rows = by_day(service.store.outcomes.hours(tenant.name, first_hour))
    guard = service.fleet.guard_for(tenant)
    return Stats(tenant=tenant.name, days=days, guard=guard.model_dump(), routes=[
        DayRouteOut(day=r.day, route=r.route, **r.counts, bounce_rate=r.rate("bounced"),
                    complaint_rate=r.rate("complained")) for r in rows])


@router.get("/v1/stats/{tenant}", response_model=Stats,
            responses=fails({401: "missing or invalid API key", 404: "not this key's tenant"}))
def stats(who: Authenticated, tenant: str, service: ServiceDep, days: Days = 7) -> Stats:
    """Per UTC day and route: sent, delivered, bounced, complained, deferred, suppressed, and the rates the
    tenant guard judges."""
    if tenant != who.tenant.name:
        raise ApiError(404, "no such tenant for this key")
    return tenant_stats(service, who.tenant, days)


@admin_router.get("/v1/admin/stats/{tenant}", response_model=Stats,
                  responses=fails({**UNAUTHORIZED, 404: "no such tenant"}))
def admin_stats(who: Operator, tenant: str, service: ServiceDep, days: Days = 7) -> Stats:
    """Any tenant's numbers, for an operator (the same as ``/v1/stats/{tenant}``)."""
    found = service.tenant(tenant)
    if found is None:
        raise ApiError(404, "no such tenant")
    return tenant_stats(service, found, days)
