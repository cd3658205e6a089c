"""Per IP and day reputation: thresholds from the fleet's plans, holds, alerts, frozen caps."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import pytest

from mailplane.model.fleet import HoldThresholds
from mailplane.model.names import vmta_name
from mailplane.model.stack import Fleet
from mailplane.sender.core.accounting import VmtaIndex, parse_text
from mailplane.sender.core.reputation import (
    MIN_VOLUME,
    Alert,
    DailyStats,
    RateName,
    alert_payload,
    held_days,
    is_held,
    judge,
    judge_all,
    tally,
    thresholds_for,
)
from mailplane.warmup.status import ip_status

ROOT = Path(__file__).resolve().parents[3]
D = datetime.date


def _ip(fleet: Fleet, plan: str) -> tuple[str, str]:
    """(tenant, address) of the first IP of the fleet on ``plan``."""
    for ref in fleet.ips():
        if ref.ip.warmup is not None and ref.ip.warmup.plan == plan:
            return ref.tenant.name, ref.ip.address
    raise AssertionError(f"no IP on {plan}")


def test_thresholds_come_from_each_ips_plan(fleet: Fleet) -> None:
    own = fleet.settings.warmup_plans
    for plan in ("standard-45d", "cautious-3w"):
        _, address = _ip(fleet, plan)
        assert own[plan].hold_when is not None
        assert thresholds_for(fleet, address) == own[plan].hold_when
    _, preset_ip = _ip(fleet, "sparkpost-30d")
    assert thresholds_for(fleet, preset_ip) == fleet.plans["sparkpost-30d"].hold_when
    assert thresholds_for(fleet, "2001:0db8:0100:0000:0000:0000:0000:0031") == fleet.plans["pmta-6w"].hold_when
    assert thresholds_for(fleet, "10.9.9.9") == HoldThresholds()  # not a planned IP: the defaults


def test_below_minimum_volume_never_holds(fleet: Fleet) -> None:
    tenant, address = _ip(fleet, "cautious-3w")
    thresholds = thresholds_for(fleet, address)
    few = DailyStats(address, tenant, D(2026, 11, 12), delivered=1, hard_bounces=1, complaints=2)
    assert judge(few, thresholds) == []
    edge = DailyStats(address, tenant, D(2026, 11, 12), delivered=MIN_VOLUME // 2, hard_bounces=MIN_VOLUME // 2 - 1,
                      complaints=MIN_VOLUME - 1, deferrals=0)
    assert edge.sent == MIN_VOLUME - 1 and not is_held(edge, thresholds)
    edge.delivered += 1  # the 100th message: now it is judged, and very bad
    assert {a.rate for a in judge(edge, thresholds)} == {"bounce_rate", "complaint_rate"}


def _stats(rate: RateName, count: int, volume: int) -> DailyStats:
    stats = DailyStats("192.0.2.41", "initech", D(2026, 11, 18))
    if rate == "bounce_rate":
        stats.hard_bounces, stats.delivered = count, volume - count
    elif rate == "complaint_rate":
        stats.complaints, stats.delivered = count, volume
    else:
        stats.deferrals, stats.delivered = count, volume - count
    return stats


@pytest.mark.parametrize(("rate", "volume"), [("bounce_rate", 1000), ("complaint_rate", 2500),
                                              ("deferral_rate", 1000)])
def test_each_rate_holds_strictly_above_its_threshold(fleet: Fleet, rate: RateName, volume: int) -> None:
    thresholds = fleet.plans["cautious-3w"].hold_when  # 0.03, 0.0008, 0.15
    at = round(getattr(thresholds, rate) * volume)     # exactly at the threshold: 30, 2, 150
    assert judge(_stats(rate, at, volume), thresholds) == []
    (alert,) = judge(_stats(rate, at + 1, volume), thresholds)
    assert alert == Alert("192.0.2.41", "initech", D(2026, 11, 18), rate, (at + 1) / volume,
                          getattr(thresholds, rate), at + 1, volume)


def test_soft_bounces_do_not_count_as_bounces_but_as_sent() -> None:
    stats = DailyStats("192.0.2.41", "initech", D(2026, 11, 18), delivered=100, soft_bounces=900)
    assert stats.sent == 1000 and stats.rate("bounce_rate") == 0.0
    assert not is_held(stats, HoldThresholds())


def test_accounting_file_to_hold_and_alert(fleet: Fleet) -> None:
    """End to end: a day's accounting rows of two IPs, counted per IP and day, one IP held."""
    tenant, bad = _ip(fleet, "cautious-3w")
    good_tenant, good = _ip(fleet, "standard-45d")
    rows = ["type,timeLogged,rcpt,vmta,dsnStatus,bounceCat"]
    for n in range(200):
        ip, who = (bad, tenant) if n % 2 else (good, good_tenant)
        # every tenth message to the bad IP bounces hard: 10 of 100 = 10 % > 3 %
        kind, status, cat = ("b", "5.1.1", "bad-mailbox") if n % 20 == 1 else ("d", "2.0.0", "")
        rows.append(f"{kind},2026-11-18 09:{n // 60:02d}:{n % 60:02d}+0000,r{n}@example.org,"
                    f"{vmta_name(who, ip)},{status},{cat}")
    rows.append(f"t,2026-11-19 00:00:01+0000,late@example.org,{vmta_name(tenant, bad)},4.2.1,")  # next day
    batch = parse_text("\n".join(rows), VmtaIndex.from_fleet(fleet))
    assert batch.problems == []
    book = tally(batch.events)
    assert sorted((ip, day.isoformat()) for ip, day in book) == sorted(
        [(bad, "2026-11-18"), (good, "2026-11-18"), (bad, "2026-11-19")])
    bad_day = book[(bad, D(2026, 11, 18))]
    assert (bad_day.sent, bad_day.delivered, bad_day.hard_bounces) == (100, 90, 10)
    (alert,) = judge(bad_day, thresholds_for(fleet, bad))
    assert (alert.ip, alert.tenant, alert.rate, alert.value, alert.threshold) == (bad, tenant, "bounce_rate", 0.1, 0.03)
    assert judge(book[(good, D(2026, 11, 18))], thresholds_for(fleet, good)) == []
    assert judge_all(fleet, book.values()) == [alert]

    # a later ingest adds to the same days (rows[4] is one more delivery on the bad IP); stats survive storage
    again = parse_text("\n".join([rows[0], rows[4]]), VmtaIndex.from_fleet(fleet)).events
    tally(again, into=book)
    assert book[(bad, D(2026, 11, 18))].delivered == 91
    assert {k: DailyStats.from_dict(json.loads(json.dumps(v.to_dict()))) for k, v in book.items()} == book

    payload = alert_payload([alert], fleet.stack)
    decoded = json.loads(json.dumps(payload))
    assert decoded["event"] == "ip_hold" and decoded["stack"] == "prod"
    assert decoded["alerts"] == [{"ip": bad, "tenant": tenant, "day": "2026-11-18", "rate": "bounce_rate",
                                  "value": 0.1, "threshold": 0.03, "count": 10, "volume": 100}]
    assert decoded["text"] == f"[mailplane prod] initech {bad} held on 2026-11-18: bounce rate 10.00% (10/100) " \
                              "above 3.00%"


def test_held_days_freeze_the_cap_where_the_hold_began(fleet: Fleet) -> None:
    tenant_name, address = _ip(fleet, "cautious-3w")
    tenant = fleet.tenant(tenant_name)
    ip = next(i for i in tenant.ips if i.address == address)
    assert ip.warmup is not None
    plan = fleet.plans[ip.warmup.plan]
    thresholds = plan.hold_when
    started = ip.warmup.started

    def day(n: int) -> D:
        return started + datetime.timedelta(days=n - 1)

    bad = {"delivered": 900, "hard_bounces": 100}            # 10 % > 3 %
    clean = {"delivered": 1000}
    stored = [
        DailyStats(address, tenant_name, started - datetime.timedelta(days=1), **bad),  # before the plan
        DailyStats(address, tenant_name, day(3), hard_bounces=40),                        # below MIN_VOLUME
        DailyStats(address, tenant_name, day(7), **bad),    # the hold begins on plan day 7
        DailyStats(address, tenant_name, day(8), **bad),    # still bad
        DailyStats(address, tenant_name, day(9), **clean),  # recovered
    ]

    def status(on: D) -> tuple[int, int | None]:
        s = ip_status(tenant, ip, plan, on, held_days(stored, thresholds, started, on))
        return s.day, s.daily_cap

    begin = status(day(7))
    assert begin == (7, plan.daily_cap(7))
    assert plan.daily_cap(8) > plan.daily_cap(7)                     # without the hold it would have grown
    assert held_days(stored, thresholds, started, day(7)) == 0       # the day itself is not over
    assert status(day(8)) == begin                                   # held once: same cap
    assert status(day(9)) == begin                                   # held twice: same cap
    assert held_days(stored, thresholds, started, day(10)) == 2
    assert status(day(10)) == (8, plan.daily_cap(8))                 # advances again, from where it stopped
    assert held_days(stored, thresholds, started, day(30)) == 2
