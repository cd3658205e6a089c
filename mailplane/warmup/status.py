"""Where each IP and tenant stands in warmup on a given date: the numbers every gate reads.

Pure functions of the fleet and a date.  ``held_days`` lets a caller that tracks bounce and
complaint rates (the sender service) freeze an IP's plan: a held day does not advance it.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Literal

from mailplane.model.stack import Fleet, IpRef
from mailplane.model.tenant import Ip, Tenant
from mailplane.model.warmup_plans import WarmupPlan

State = Literal["scheduled", "warming", "warm", "unplanned"]


@dataclass(frozen=True)
class IpStatus:
    address: str
    tenant: str
    host: str
    plan: str | None
    started: datetime.date | None
    day: int
    """Day of the plan, 1 on the start date; 0 before it; 0 for an IP without a plan."""
    daily_cap: int | None
    """None: no warmup cap (an IP declared warm); other limits still apply."""
    hourly_cap: int | None
    state: State


def plan_day(started: datetime.date, on: datetime.date, held_days: int = 0) -> int:
    return max((on - started).days + 1 - held_days, 0)


def ip_status(tenant: Tenant, ip: Ip, plan: WarmupPlan | None, on: datetime.date,
              held_days: int = 0) -> IpStatus:
    if ip.warmup is None or plan is None:
        return IpStatus(ip.address, tenant.name, ip.host, None, None, 0, None, None, "unplanned")
    day = plan_day(ip.warmup.started, on, held_days)
    state: State = "scheduled" if day < 1 else "warm" if day >= plan.length else "warming"
    return IpStatus(ip.address, tenant.name, ip.host, plan.name, ip.warmup.started, day,
                    plan.daily_cap(day), plan.hourly_cap(day), state)


def fleet_ip_status(fleet: Fleet, on: datetime.date, tenant: str | None = None) -> list[IpStatus]:
    refs: list[IpRef] = [r for r in fleet.ips() if tenant is None or r.tenant.name == tenant]
    return [ip_status(r.tenant, r.ip, fleet.plan_for(r.ip), on) for r in refs]


@dataclass(frozen=True)
class TenantCapacity:
    tenant: str
    date: datetime.date
    ip_daily: int | None
    """Sum of the IPs' daily caps; None when an IP has no warmup cap."""
    daily: int | None
    """What the tenant may send over its IPs that day: ``ip_daily`` within its own daily quota."""
    hourly: int | None


def _total(values: list[int | None]) -> int | None:
    return None if any(v is None for v in values) else sum(v for v in values if v is not None)


def tenant_capacity(fleet: Fleet, tenant: Tenant, on: datetime.date) -> TenantCapacity:
    statuses = [ip_status(tenant, ip, fleet.plan_for(ip), on) for ip in tenant.ips]
    ip_daily = _total([s.daily_cap for s in statuses])
    hourly = _total([s.hourly_cap for s in statuses])
    quota = tenant.daily_quota
    daily = ip_daily if quota is None else quota if ip_daily is None else min(ip_daily, quota)
    if daily is not None and hourly is not None:
        hourly = min(hourly, daily)
    return TenantCapacity(tenant.name, on, ip_daily, daily, hourly)


def forecast(fleet: Fleet, tenant: Tenant, start: datetime.date, days: int) -> list[TenantCapacity]:
    """Capacity for ``days`` consecutive days from ``start``: what a tenant can plan a launch on."""
    return [tenant_capacity(fleet, tenant, start + datetime.timedelta(days=i)) for i in range(days)]
