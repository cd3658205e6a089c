"""The quota report of ``GET /v1/quotas/{tenant}``: what a tenant may still send today, and why.

Pure: the caller passes the day's counters (the shared rows every worker increments) and each
IP's held days and override, so the numbers here are the ones the pacer enforces: caps from the
warmup plan on the IP's *held* plan day (a held day does not advance the ramp), replaced or
zeroed by an override the reputation side imposes.  Remaining values never go below 0: a
counter can pass a cap that was lowered during the day (a new hold), which is not a debt.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from mailplane.model.addresses import ip_key
from mailplane.model.stack import Fleet
from mailplane.model.tenant import Ip, Tenant
from mailplane.sender.core.gates import SHARE_KIND, IpOverride, Pace, Pause, SesLimits, apply_override, quota_pace_key
from mailplane.sender.core.limits import Limits
from mailplane.warmup.status import ip_status

if TYPE_CHECKING:
    from mailplane.sender.core.pauses import InForce

Counter = Callable[[str, str], int]
"""(kind, key) -> today's count: kinds ``ip`` (address), ``tenant`` (name), ``ses`` (region)."""


class PaceState(BaseModel):
    """A cap spent as a steady rate (a GCRA bucket, ``gates.Pace``): an IP's hourly ceiling, a tenant's quota."""

    interval_seconds: float = Field(description="One send every this many seconds: 3600 / an IP's hourly ceiling, "
                                    "86400 / a tenant's daily quota.")
    burst: int = Field(description="Sends that may go at once after a quiet spell (the plan's `burst_seconds`' "
                       "worth; the tenant's `quota_burst_seconds`').")
    next_send_at: datetime.datetime = Field(description="The earliest the IP's next send may go (now, when it has "
                                            "a send in hand).")
    in_hand: int = Field(description="Sends the IP may make at once now, within the burst (the hourly and daily "
                         "counts still cap them).")


class IpQuota(BaseModel):
    address: str
    host: str
    streams: list[str] | None = Field(description="Streams the IP carries; null: all the tenant's.")
    plan: str | None = Field(description="Warmup plan; null: no warmup cap (an IP declared warm).")
    plan_day: int = Field(description="Day of the plan (1 on the start date, 0 before), after held days.")
    state: str = Field(description="scheduled, warming, warm or unplanned.")
    held_days: int = Field(description="Days the ramp was held for bad bounce, complaint or deferral rates.")
    paused: bool = Field(description="The IP sends nothing now: an operator's pause, or the reputation side's.")
    paused_because: str | None = Field(None, description="Why, for an operator's or the guard's pause.")
    not_deployed: str | None = Field(None, description="Why PowerMTA on the IP's host cannot take its mail now "
                                     "(its VMTA is not in the config running there): the mail waits; null: it can.")
    daily_cap: int | None = Field(description="Messages the IP may send today; null: no warmup cap.")
    hourly_cap: int | None
    sent: int
    remaining: int | None = Field(description="daily_cap - sent, at least 0; null: no warmup cap.")
    hour_sent: int = Field(0, description="Sent in this clock hour (UTC).")
    hour_remaining: int | None = Field(None, description="hourly_cap - hour_sent, at least 0; null: no warmup cap.")
    pace: PaceState | None = Field(None, description="The steady rate the hourly ceiling is spent at; null: none "
                                "(no warmup cap, or a cap of 0).")


class TenantQuota(BaseModel):
    daily_quota: int | None = Field(description="The tenant's own cap across IPs and SES; null: none.")
    sent: int
    remaining: int | None
    pace: PaceState | None = Field(None, description="The steady rate its marketing mail spends the quota at; "
                                   "null: no quota.")


class SesQuota(BaseModel):
    region: str
    daily_quota: int = Field(description="The account's limit, shared by every tenant sending through SES: the "
                             "lower of fleet.yaml's and what SES reports.")
    sent: int
    remaining: int
    max_send_rate: float = Field(description="Messages per second, for the whole account (the lower of the two).")
    warnings: list[str] = Field(default_factory=list, description="Where fleet.yaml and the SES account disagree, "
                                "or the account is in the sandbox or disabled.")
    share: int | None = Field(None, description="This tenant's weight among the tenants sending through SES "
                              "(`ses.share`); null: it sends nothing through SES.")
    fair_share: float | None = Field(None, description="Its fair share of the daily quota: quota x share / the "
                                     "sum of the SES tenants' shares.")
    tenant_sent: int | None = Field(None, description="What it sent through SES today.")
    kept_for_others: int | None = Field(None, description="Sends of what remains kept now for the other SES "
                                        "tenants' unused shares (less as the UTC day goes on): beyond its fair "
                                        "share the tenant may use only what is not kept.")


class QuotaReport(BaseModel):
    tenant: str
    day: datetime.date = Field(description="The UTC day the counters are for.")
    quota: TenantQuota
    ips: list[IpQuota]
    ses: SesQuota
    pauses: list[str] = Field(default_factory=list, description="Every pause or drain in force on the tenant, its "
                              "streams, its IPs or its recipients' domains, saying why and by whom.")


def _pace_state(pace: Pace | None, tat: float, now: float | None) -> PaceState | None:
    if pace is None or now is None:
        return None
    return PaceState(interval_seconds=pace.interval, burst=pace.burst, in_hand=pace.in_hand(tat, now),
                     next_send_at=datetime.datetime.fromtimestamp(max(now, pace.ready(tat)), datetime.UTC))


def _left(cap: int | None, sent: int) -> int | None:
    return None if cap is None else max(cap - sent, 0)


def _ip_quota(fleet: Fleet, tenant: Tenant, ip: Ip, day: datetime.date, counter: Counter, *, held: int,
              override: IpOverride | None, pause: Pause | None, not_deployed: str | None, hour_sent: int,
              tat: float, now: float | None) -> IpQuota:
    """One IP's line: the caps of its plan on its held day, as an override leaves them, against what it sent;
    its pace is the hourly ceiling spent as a steady rate, as the pacer spends it."""
    status = ip_status(tenant, ip, fleet.plan_for(ip), day, held)
    paused = bool(override and override.paused) or pause is not None
    daily, hourly = apply_override(status.daily_cap, status.hourly_cap, override)
    sent = counter("ip", ip.address)
    plan = fleet.plan_for(ip)
    pace = Pace.of(hourly, plan.burst_seconds) if plan is not None else None
    return IpQuota(address=ip.address, host=ip.host, streams=ip.streams, plan=status.plan,
                   plan_day=status.day, state=status.state, held_days=held, paused=paused,
                   paused_because=pause.reason if pause else None, not_deployed=not_deployed,
                   daily_cap=daily, hourly_cap=hourly, sent=sent, remaining=_left(daily, sent),
                   hour_sent=hour_sent, hour_remaining=_left(hourly, hour_sent), pace=_pace_state(pace, tat, now))


def _ses_quota(fleet: Fleet, tenant: Tenant, counter: Counter, ses_limits: Limits | None,
               ses_shares: SesLimits | None) -> SesQuota:
    """The account's quota, shared by every tenant; the tenant's fair share of it only when it sends by SES."""
    ses = fleet.settings.ses
    limits = ses_limits or Limits(ses.daily_quota, ses.max_send_rate)
    ses_sent = counter("ses", ses.region)
    share = None
    if ses_shares is not None and tenant.name in ses_shares.shares:
        used = {(SHARE_KIND, name): counter(SHARE_KIND, name) for name in ses_shares.shares}
        share = {"share": ses_shares.shares[tenant.name], "fair_share": ses_shares.fair_share(tenant.name),
                 "tenant_sent": used[(SHARE_KIND, tenant.name)],
                 "kept_for_others": ses_shares.kept_for_others(tenant.name, used)}
    return SesQuota(region=ses.region, daily_quota=limits.daily_quota, sent=ses_sent,
                    remaining=max(limits.daily_quota - ses_sent, 0), max_send_rate=limits.max_send_rate,
                    warnings=list(limits.warnings), **(share or {}))


def quota_report(fleet: Fleet, tenant: Tenant, day: datetime.date, counter: Counter, *,
                 held_days: Mapping[str, int] | None = None,
                 overrides: Mapping[str, IpOverride] | None = None,
                 in_force: InForce | None = None, ses_limits: Limits | None = None,
                 not_deployed: Mapping[str, str] | None = None, ses_shares: SesLimits | None = None,
                 hour_counter: Callable[[str], int] | None = None, paces: Mapping[str, float] | None = None,
                 now: float | None = None) -> QuotaReport:
    """The report for ``tenant`` on ``day``; ``held_days``, ``overrides`` and ``not_deployed`` (why an IP's VMTA
    cannot take mail) are keyed by IP address; ``in_force``: the pauses and drains in force; ``hour_counter``:
    an IP's count this clock hour; ``paces``: each pace's state (IPs by address, the tenant's quota pace by
    :func:`~mailplane.sender.core.gates.quota_pace_key`), read at ``now``."""
    held_days = held_days or {}
    overrides = overrides or {}
    paces = paces or {}
    ips = [_ip_quota(fleet, tenant, ip, day, counter, held=held_days.get(ip.address, 0),
                     override=overrides.get(ip.address), pause=in_force.ip(ip_key(ip.address)) if in_force else None,
                     not_deployed=(not_deployed or {}).get(ip.address),
                     hour_sent=hour_counter(ip.address) if hour_counter else 0,
                     tat=paces.get(ip.address, 0.0), now=now)
           for ip in tenant.ips]
    tenant_sent = counter("tenant", tenant.name)
    return QuotaReport(
        tenant=tenant.name, day=day,
        quota=TenantQuota(daily_quota=tenant.daily_quota, sent=tenant_sent,
                          remaining=_left(tenant.daily_quota, tenant_sent),
                          pace=_pace_state(Pace.daily(tenant.daily_quota, tenant.quota_burst_seconds),
                                           paces.get(quota_pace_key(tenant.name), 0.0), now)),
        ips=ips,
        ses=_ses_quota(fleet, tenant, counter, ses_limits, ses_shares),
        pauses=in_force.about(tenant.name) if in_force else [])
