"""IP holds: which days of an IP's warmup were held for bad rates, answered from memory, and their alerts.

An IP whose day went badly is *held* (:mod:`mailplane.sender.core.reputation`): its warmup plan does
not advance the next day.  The pacer asks :meth:`IpHolds.override` inside every send reservation, so
that answer comes from memory, refreshed after each ingest.  Alerts are at least once: an IP-day is
marked alerted and its alert queued in the same transaction (so a restart does not alert again);
the queue is POSTed and emptied, and a failed POST leaves it for the next ingest.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mailplane.model.addresses import ip_key
from mailplane.sender.core.gates import IpOverride
from mailplane.sender.core.reputation import (
    COUNTS,
    Alert,
    DailyStats,
    alert_payload,
    held_days,
    judge_all,
    thresholds_by_ip,
)
from mailplane.sender.events.alerts import ALERT_TIMEOUT, Post
from mailplane.sender.events.parts import EventParts

if TYPE_CHECKING:
    from mailplane.model.tenant import Ip

log = logging.getLogger(__name__)

ALERTED_PREFIX = "alerted:"
"""``service_state`` key marking an IP-day already alerted: this, the IP, ``/`` and the day."""
HOLD_REFRESH = 60.0
"""Seconds the hold answers are trusted without reading the stats again: another instance may
have ingested meanwhile (this instance's own ingests refresh at once)."""
ALERT_LOOKBACK = 7
"""Days before today still worth an alert: older held days count for holds, but a first ingest
of old files should not page anyone about last month."""


@dataclass
class _Snapshot:
    """The stored IP-day stats as read at ``loaded_at``, and the hold answers computed from them."""

    stats: dict[str, list[DailyStats]]
    loaded_at: float
    holds: dict[tuple[str, datetime.date], int] = field(default_factory=dict)


class IpHolds:
    """The held days of every IP, from the stored IP-day stats, and the alerts of newly held days."""

    def __init__(self, parts: EventParts, post: Post) -> None:
        self.store = parts.store
        self.fleet = parts.fleet
        self.config = parts.config
        self.clock = parts.clock
        self.stack_name = parts.stack_name
        self._post = post
        self._thresholds = thresholds_by_ip(self.fleet)
        self._ips: dict[str, Ip] = {ip_key(r.ip.address): r.ip for r in self.fleet.ips()}
        self._snapshot: _Snapshot | None = None

    def today(self) -> datetime.date:
        return datetime.datetime.fromtimestamp(self.clock(), datetime.UTC).date()

    def held_days(self, tenant: str, ip: str, day: datetime.date) -> int:
        """Days of the IP's warmup, before ``day``, that were held; 0 for an IP without a plan.

        Answered from memory (the stats are read once per ingest, or after :data:`HOLD_REFRESH`
        seconds), since the pacer asks inside every reservation.  The IP's address identifies it
        in the fleet; ``tenant`` is part of the pacer's hook and not needed here.
        """
        address = ip_key(ip)
        snapshot = self._fresh_snapshot()
        key = (address, day)
        cached = snapshot.holds.get(key)
        if cached is None:
            cached = snapshot.holds[key] = self._count_held(address, day, snapshot.stats.get(address, []))
        return cached

    def override(self, tenant: str, ip: str, day: datetime.date) -> IpOverride | None:
        """The pacer's hook (through ``Service.override``): a held plan, or None."""
        n = self.held_days(tenant, ip, day)
        return IpOverride(held_days=n) if n > 0 else None

    def _count_held(self, address: str, day: datetime.date, days: list[DailyStats]) -> int:
        ip = self._ips.get(address)
        thresholds = self._thresholds.get(address)
        if ip is None or ip.warmup is None or thresholds is None:
            return 0
        return held_days(days, thresholds, ip.warmup.started, day)

    def _fresh_snapshot(self) -> _Snapshot:
        snapshot = self._snapshot
        if snapshot is None or self.clock() - snapshot.loaded_at > HOLD_REFRESH:
            return self.reload()
        return snapshot

    def reload(self) -> _Snapshot:
        """Read every IP-day row again; the hold answers start afresh with the new snapshot."""
        by_ip: dict[str, list[DailyStats]] = {}
        for row in self.store.ledger.ip_stats():
            stats = DailyStats(row["ip"], row["tenant"], row["day"], **{name: int(row[name]) for name in COUNTS})
            by_ip.setdefault(ip_key(row["ip"]), []).append(stats)
        snapshot = _Snapshot(by_ip, self.clock())
        self._snapshot = snapshot  # one assignment: readers see the old snapshot or the new, never a mix
        return snapshot

    def new_alerts(self, stats: Mapping[str, list[DailyStats]]) -> list[Alert]:
        """Judge the recent stored days; mark the newly held IP-days and queue their alerts."""
        since = self.today() - datetime.timedelta(days=ALERT_LOOKBACK)
        recent = [s for days in stats.values() for s in days if s.day >= since]
        alerts = judge_all(self.fleet, recent)
        if not alerts:
            return []
        marked = [(f"{ALERTED_PREFIX}{ip_key(a.ip)}/{a.day.isoformat()}", a.to_dict()) for a in alerts]
        fresh = [alerts[i] for i in self.store.ledger.queue_alerts(marked)]
        for alert in fresh:
            log.warning("IP hold: %s", alert.message())
        return fresh

    def deliver_alerts(self) -> None:
        """POST the queued alerts (all in one body); empty the queue once delivered."""
        pending = self.store.ledger.pending_alerts()
        if not pending:
            return
        url = self.config.alert_webhook_url
        if url is not None:
            alerts = [_alert_from_dict(a) for a in pending]
            try:
                self._post(url, alert_payload(alerts, self.stack_name), ALERT_TIMEOUT)
            except Exception as exc:  # the webhook is down: the queue stays, the next ingest tries again
                log.error("alert webhook failed (%d alerts kept for the next ingest): %s", len(pending), exc)
                return
        self.store.ledger.drop_pending(len(pending))


def _alert_from_dict(data: Mapping[str, Any]) -> Alert:
    return Alert(str(data["ip"]), str(data["tenant"]), datetime.date.fromisoformat(str(data["day"])),
                 data["rate"], float(data["value"]), float(data["threshold"]), int(data["count"]),
                 int(data["volume"]))
