"""Per IP and day reputation: counts, rates, hold decisions and alerts.  Pure: no I/O, no clock.

An IP whose day went badly (hard bounces, complaints or deferrals above its plan's ``hold_when``)
is *held*: the next day its plan does not advance, so its cap stays where it was
(:func:`held_days` feeds ``held_days`` of :func:`mailplane.warmup.status.ip_status`).  Ramping a
cold IP while mailbox providers are already pushing back is how IPs get blocklisted; holding the
ramp (not the mail) is what SparkPost's automated warmup does with a stage that was not met.

Days are UTC dates of the events' times.  A complaint counts on the day it arrives, not the day
its message was sent: feedback comes hours or days later, and charging it to the send day would
change days already judged (and caps already granted).
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

from mailplane.model.addresses import ip_key
from mailplane.model.fleet import HoldThresholds
from mailplane.model.stack import Fleet
from mailplane.sender.core.accounting import AccountingEvent

RateName = Literal["bounce_rate", "complaint_rate", "deferral_rate"]

MIN_VOLUME = 100
"""Messages an IP must have sent in a day (attempts, for the deferral rate) before its rates are
judged: one bounce out of 3 messages is 33 % but says nothing yet, and a new IP must not freeze
on day 1 for it.  A plan starting below this (50 on day 1) is first judged on a day reaching it."""


@dataclass
class DailyStats:
    """One IP's counts on one day; ``sent`` is every message with a final outcome there."""

    ip: str
    tenant: str
    day: datetime.date
    delivered: int = 0
    hard_bounces: int = 0
    soft_bounces: int = 0
    complaints: int = 0
    deferrals: int = 0

    @property
    def sent(self) -> int:
        return self.delivered + self.hard_bounces + self.soft_bounces

    @property
    def attempts(self) -> int:
        """Delivery attempts: final outcomes plus deferrals (one message may be deferred often)."""
        return self.sent + self.deferrals

    def add(self, event: AccountingEvent) -> None:
        if event.kind == "delivered":
            self.delivered += 1
        elif event.kind == "bounce":
            if event.permanent:
                self.hard_bounces += 1
            else:
                self.soft_bounces += 1
        elif event.kind == "complaint":
            self.complaints += 1
        else:
            self.deferrals += 1

    def counts(self, rate: RateName) -> tuple[int, int]:
        """(numerator, denominator) of a rate."""
        if rate == "bounce_rate":
            return self.hard_bounces, self.sent
        if rate == "complaint_rate":
            return self.complaints, self.sent
        return self.deferrals, self.attempts

    def rate(self, rate: RateName) -> float:
        count, volume = self.counts(rate)
        return count / volume if volume else 0.0

    def to_dict(self) -> dict[str, object]:
        """For storage; ``sent`` is derived and not stored."""
        return {"ip": self.ip, "tenant": self.tenant, "day": self.day.isoformat(),
                **{name: getattr(self, name) for name in COUNTS}}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> DailyStats:
        counts = {name: int(str(data.get(name, 0))) for name in COUNTS}
        return cls(str(data["ip"]), str(data["tenant"]), datetime.date.fromisoformat(str(data["day"])), **counts)


COUNTS = ("delivered", "hard_bounces", "soft_bounces", "complaints", "deferrals")


RATES: tuple[RateName, ...] = ("bounce_rate", "complaint_rate", "deferral_rate")


@dataclass(frozen=True)
class Alert:
    """One rate of one IP's day above its threshold: the IP is held."""

    ip: str
    tenant: str
    day: datetime.date
    rate: RateName
    value: float
    threshold: float
    count: int
    volume: int

    def message(self) -> str:
        return (f"{self.tenant} {self.ip} held on {self.day.isoformat()}: {self.rate.replace('_', ' ')} "
                f"{self.value:.2%} ({self.count}/{self.volume}) above {self.threshold:.2%}")

    def to_dict(self) -> dict[str, object]:
        return {"ip": self.ip, "tenant": self.tenant, "day": self.day.isoformat(), "rate": self.rate,
                "value": self.value, "threshold": self.threshold, "count": self.count, "volume": self.volume}


def _above(count: int, volume: int, threshold: float) -> bool:
    """Strictly above, compared exactly: 4 of 100 against 0.04 is at, not above, the threshold.
    ``repr`` gives back the decimal written in fleet.yaml, so float rounding cannot move the line."""
    return Fraction(count, volume) > Fraction(repr(threshold))


def judge(stats: DailyStats, thresholds: HoldThresholds, min_volume: int = MIN_VOLUME) -> list[Alert]:
    """The rates of ``stats`` strictly above ``thresholds``; none below ``min_volume``."""
    alerts: list[Alert] = []
    for rate in RATES:
        count, volume = stats.counts(rate)
        threshold = getattr(thresholds, rate)
        if volume >= min_volume and _above(count, volume, threshold):
            alerts.append(Alert(stats.ip, stats.tenant, stats.day, rate, count / volume, threshold, count, volume))
    return alerts


def is_held(stats: DailyStats, thresholds: HoldThresholds, min_volume: int = MIN_VOLUME) -> bool:
    return bool(judge(stats, thresholds, min_volume))


def thresholds_by_ip(fleet: Fleet) -> dict[str, HoldThresholds]:
    """Every planned IP of the fleet (canonical address) to its plan's hold thresholds."""
    result: dict[str, HoldThresholds] = {}
    for ref in fleet.ips():
        plan = fleet.plan_for(ref.ip)
        if plan is not None:
            result[ip_key(ref.ip.address)] = plan.hold_when
    return result


def thresholds_for(fleet: Fleet, ip: str) -> HoldThresholds:
    """The hold thresholds of the IP's plan.  An IP without a plan (declared warm) is judged by
    the defaults: there is no ramp to hold, but its alerts still matter."""
    return thresholds_by_ip(fleet).get(ip_key(ip), HoldThresholds())


def judge_all(fleet: Fleet, days: Iterable[DailyStats], min_volume: int = MIN_VOLUME) -> list[Alert]:
    """Alerts of many IP-days, each judged by its own IP's plan (what the service runs after an ingest)."""
    by_ip = thresholds_by_ip(fleet)
    return [alert for stats in days
            for alert in judge(stats, by_ip.get(ip_key(stats.ip), HoldThresholds()), min_volume)]


Book = dict[tuple[str, datetime.date], DailyStats]


def tally(events: Iterable[AccountingEvent], into: Book | None = None) -> Book:
    """Counts per (IP, day) of accounting events, added to ``into`` (updated in place) if given:
    each ingest of new rows adds to the days already counted."""
    book: Book = {} if into is None else into
    for event in events:
        key = (event.ip, event.day)
        stats = book.get(key)
        if stats is None:
            stats = book[key] = DailyStats(event.ip, event.tenant, event.day)
        stats.add(event)
    return book


def held_days(days: Iterable[DailyStats], thresholds: HoldThresholds, started: datetime.date,
              on: datetime.date, min_volume: int = MIN_VOLUME) -> int:
    """Days of one IP's stored stats, from ``started`` up to the day before ``on``, that were held.

    A hold decided on day D stops the plan from advancing on D+1, hence ``on`` itself is not
    counted (its day is not over).  Pass the result to ``ip_status(..., held_days=...)``.
    """
    return sum(1 for stats in days
               if started <= stats.day < on and is_held(stats, thresholds, min_volume))


def alert_payload(alerts: Iterable[Alert], stack: str) -> dict[str, object]:
    """JSON body POSTed to the alert webhook.  ``text`` is what chat webhooks (Slack, Mattermost)
    display; ``alerts`` keeps the fields for anything that parses them."""
    items = list(alerts)
    lines = [f"[mailplane {stack}] {a.message()}" for a in items]
    return {"event": "ip_hold", "stack": stack, "text": "\n".join(lines), "alerts": [a.to_dict() for a in items]}
