"""``GET /v1/stats/{tenant}?days=N``: the numbers behind the tenant guard, per day and route, for people."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from mailplane.sender.api.deps import Authenticated, ServiceDep
from mailplane.sender.api.errors import ApiError, fails
from mailplane.sender.outcomes import by_day

router = APIRouter(tags=["quotas"])


class DayRouteOut(BaseModel):
    day: str = Field(description="UTC day, YYYY-MM-DD.")
    route: str = Field(description="`ses`, or the PowerMTA IP the mail left from.")
    sent: int
    bounced: int = Field(description="Hard bounces (SES events, PowerMTA accounting), counted when they arrived.")
    complained: int
    bounce_rate: float | None = Field(description="bounced / sent; null with nothing sent.")
    complaint_rate: float | None


class Stats(BaseModel):
    tenant: str
    days: int
    routes: list[DayRouteOut]
    guard: dict[str, float | int] = Field(description="The thresholds the tenant guard judges these by.")


@router.get("/v1/stats/{tenant}", response_model=Stats,
            responses=fails({401: "missing or invalid API key", 404: "not this key's tenant"}))
def stats(who: Authenticated, tenant: str, service: ServiceDep,
          days: Annotated[int, Query(ge=1, le=90, description="Days back, today included.")] = 7) -> Stats:
    """Per UTC day and route: sent, bounced, complained, and the rates the tenant guard judges."""
    if tenant != who.tenant.name:
        raise ApiError(404, "no such tenant for this key")
    today_hour = int(service.clock() // 3600)
    first_hour = (today_hour // 24 - (days - 1)) * 24
    rows = by_day(service.store.outcomes.hours(tenant, first_hour))
    guard = service.fleet.guard_for(who.tenant)
    return Stats(tenant=tenant, days=days, guard=guard.model_dump(), routes=[
        DayRouteOut(day=r.day, route=r.route, sent=r.sent, bounced=r.bounced, complained=r.complained,
                    bounce_rate=r.bounced / r.sent if r.sent else None,
                    complaint_rate=r.complained / r.sent if r.sent else None) for r in rows])
