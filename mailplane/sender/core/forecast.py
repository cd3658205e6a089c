"""Can N messages of a stream go today, and by when: the quota API's answer to a campaign being planned.

Pure, over the quota report (:mod:`mailplane.sender.core.quotas`, the numbers the gates enforce) and the
moment asked: the stream's route, what its IPs (or the SES account) have left today, and the
steady rate they spend it at (:class:`~mailplane.sender.core.gates.Pace`: each IP's hourly ceiling, a
burst's worth at once; the SES account's send rate; for marketing, the tenant's quota pace).  The
answer is for the tenant's mail alone: mail already queued goes first, transactional mail before
marketing mail, and other tenants share the SES rate, so "by" is the earliest the last of them could
leave.
"""

from __future__ import annotations

import datetime
import math
from dataclasses import dataclass

from pydantic import BaseModel, Field

from mailplane.model.routes import Route, tenant_routes
from mailplane.model.stack import Fleet
from mailplane.model.tenant import Tenant
from mailplane.model.warmup_plans import DEFAULT_BURST_SECONDS
from mailplane.sender.core.gates import PRIORITY, Pace
from mailplane.sender.core.quotas import QuotaReport, SesQuota


class Forecast(BaseModel):
    stream: str
    messages: int = Field(description="How many were asked about.")
    route: str = Field(description="`ses`, or `pmta` (the stream's IPs).")
    today: int = Field(description="How many of them can still go today (UTC), within every cap that applies.")
    all_today: bool
    by: datetime.datetime | None = Field(description="When the last of those that can go today could leave at the "
                                         "route's steady rate, if nothing else were queued; null: none can.")
    limited_by: str | None = Field(None, description="What keeps some of them for another day, if anything.")


@dataclass(frozen=True)
class _Capacity:
    """How many messages can go today, at what steady rate after a burst of how many, and what bounds them."""

    count: int
    rate: float
    burst: int
    limited: str


def _ses_capacity(ses: SesQuota, seconds_left: float) -> _Capacity:
    """By SES: the account's quota less what is kept for the other tenants' shares, at the account's send rate."""
    left = ses.remaining - (ses.kept_for_others or 0)
    rate = ses.max_send_rate
    burst = 1
    limited = "the SES account's daily quota" + (" (and the other tenants' shares)" if ses.kept_for_others else "")
    return _Capacity(min(left, int(rate * seconds_left) + burst), rate, burst, limited)


def _pmta_capacity(fleet: Fleet, tenant: Tenant, report: QuotaReport, route: Route, messages: int,
                   seconds_left: float) -> _Capacity:
    """By PowerMTA: what each IP of the stream that may send has left, at its pace, summed; an IP without a
    warmup cap takes every message at once."""
    addresses = set(route.addresses)
    ips = [ip for ip in report.ips if ip.address in addresses and not ip.paused and ip.not_deployed is None]
    capacity, rate, burst = 0, 0.0, 0
    for ip in ips:
        plan = fleet.plan_for(next(i for i in tenant.ips if i.address == ip.address))
        pace = Pace.of(ip.hourly_cap, plan.burst_seconds if plan else DEFAULT_BURST_SECONDS)
        if ip.remaining is None or pace is None:  # an IP declared warm: no cap of mailplane's
            capacity, rate = messages, math.inf
            break
        capacity += min(ip.remaining, int(seconds_left / pace.interval) + pace.burst)
        rate += 1.0 / pace.interval
        burst += pace.burst
    limited = ("its IPs' warmup caps and hourly ceilings for the rest of the day" if ips else
               "every IP of the stream is paused or its VMTA not deployed")
    return _Capacity(capacity, rate, burst, limited)


def _within_tenant_caps(report: QuotaReport, stream: str, seconds_left: float, route: _Capacity) -> _Capacity:
    """The tenant's own daily quota bounds every route; its quota pace also bounds the count and the rate of any
    mail but transactional."""
    capacity, rate, burst, limited = route.count, route.rate, route.burst, route.limited
    quota_left = report.quota.remaining
    if quota_left is not None and quota_left < capacity:
        capacity, limited = quota_left, f"the tenant's daily quota ({report.quota.daily_quota})"
    quota_pace = report.quota.pace
    if quota_pace is not None and PRIORITY.get(stream, len(PRIORITY)) > 0:  # transactional mail is not held by it
        paced = quota_pace.in_hand + int(seconds_left / quota_pace.interval_seconds)
        if paced < capacity:
            capacity = paced
            limited = f"the tenant's quota pace (one send every {quota_pace.interval_seconds:.0f} s)"
        if 1.0 / quota_pace.interval_seconds < rate:
            rate, burst = 1.0 / quota_pace.interval_seconds, quota_pace.in_hand
    return _Capacity(capacity, rate, burst, limited)


def _last_leaves(today: int, capacity: _Capacity, now: datetime.datetime,
                 end: datetime.datetime) -> datetime.datetime | None:
    """When the last of ``today`` messages could leave: a burst at once, the rest at the steady rate."""
    if not today:
        return None
    rate = capacity.rate
    wait = 0.0 if rate == math.inf else max(0, today - capacity.burst) / rate if rate else 0.0
    return min(now + datetime.timedelta(seconds=math.ceil(wait)), end)


def forecast(fleet: Fleet, tenant: Tenant, report: QuotaReport, stream: str, messages: int,
             now: datetime.datetime) -> Forecast:
    """The answer for ``messages`` of ``stream`` asked at ``now`` (UTC) against ``report`` (today's)."""
    route = next((r for r in tenant_routes(tenant) if r.stream == stream), None)
    if route is None:
        raise ValueError(f"{tenant.name} sends no {stream!r} stream (streams: {', '.join(tenant.streams)})")
    end = datetime.datetime.combine(report.day + datetime.timedelta(days=1), datetime.time(), datetime.UTC)
    seconds_left = max((end - now).total_seconds(), 0.0)
    if route.transport == "ses":
        by_route = _ses_capacity(report.ses, seconds_left)
    else:
        by_route = _pmta_capacity(fleet, tenant, report, route, messages, seconds_left)
    capacity = _within_tenant_caps(report, stream, seconds_left, by_route)
    today = max(0, min(messages, capacity.count))
    return Forecast(stream=stream, messages=messages, route=route.transport, today=today,
                    all_today=today == messages, by=_last_leaves(today, capacity, now, end),
                    limited_by=None if today == messages else capacity.limited)


class QuotaAnswer(QuotaReport):
    """The quota report, with the forecast when the caller asked about a number of messages."""

    forecast: Forecast | None = Field(None, description="With `?stream=...&messages=N`: can N messages of that "
                                      "stream go today, and by when.")
