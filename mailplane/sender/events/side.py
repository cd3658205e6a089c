"""The sender's event side: SES events over SNS, PowerMTA accounting, IP holds, the tenant guard and alerts.

Two sources tell the service how its mail fared: **SES**, through each tenant's SNS topic
(:mod:`mailplane.sender.events.webhook`), and **PowerMTA**, through its accounting files
(:mod:`mailplane.sender.events.accounting_files`), polled by :meth:`Events.run_forever`.  From what
they count come the IP holds (:mod:`mailplane.sender.events.holds`) and the tenant guard's pauses
(:mod:`mailplane.sender.events.guard`), each with its alerts.  :class:`Events` wires these parts
for the service and runs the loop; each part does one job.
"""

from __future__ import annotations

import datetime
import logging
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

from mailplane.sender.core.gates import IpOverride
from mailplane.sender.events.accounting_files import AccountingFiles
from mailplane.sender.events.alerts import Post, post_json, send_alert
from mailplane.sender.events.guard import GuardPause, guard_tenants
from mailplane.sender.events.holds import IpHolds
from mailplane.sender.events.parts import EventParts
from mailplane.sender.events.webhook import Get, SnsWebhook

log = logging.getLogger(__name__)


class Events:
    """The event side of one service instance (built by :meth:`Service.attach_events`)."""

    def __init__(self, parts: EventParts, *, fetcher: Callable[[str], bytes] | None = None,
                 post: Post | None = None, get: Get | None = None) -> None:
        self.store = parts.store
        self.fleet = parts.fleet
        self.config = parts.config
        self.metrics = parts.metrics
        self.clock = parts.clock
        self.stack_name = parts.stack_name
        self._post = post or post_json
        self.webhook = SnsWebhook(parts, fetcher=fetcher, get=get)
        self.files = AccountingFiles(parts)
        self.holds = IpHolds(parts, self._post)
        self._ingest_lock = threading.Lock()

    def today(self) -> datetime.date:
        return datetime.datetime.fromtimestamp(self.clock(), datetime.UTC).date()

    def handle_sns(self, body: bytes, message_type: str | None) -> tuple[int, dict[str, Any]]:
        """Act on one SNS POST (:meth:`SnsWebhook.handle_sns`); returns (HTTP status, JSON body)."""
        return self.webhook.handle_sns(body, message_type)

    def ingest_accounting(self) -> dict[str, int]:
        """Read what every accounting file gained, count it, suppress, then judge and alert.

        Returns summary counts (files, events, suppressed, problems, ignored, skipped, alerts).
        One ingest at a time per process; instances sharing a database are kept apart by the
        cursor check of :class:`~mailplane.sender.events.accounting_files.AccountingFiles`.
        """
        with self._ingest_lock:
            summary: Counter[str] = Counter()
            paths = self.files.paths()
            cursors = self.files.cursors_for(paths)
            for path in paths:
                result = self.files.ingest(path, cursors[path])
                summary["files"] += 1
                summary["events"] += result.events
                summary["problems"] += result.problems
                summary["ignored"] += result.ignored
                summary["skipped"] += int(result.skipped)
                for tenant, reason in result.suppressed or []:
                    self.metrics.suppressed.labels(tenant, reason).inc()
                    summary["suppressed"] += 1
            snapshot = self.holds.reload()
            summary["alerts"] = len(self.holds.new_alerts(snapshot.stats))
            self.holds.deliver_alerts()
            return {key: summary[key] for key in
                    ("files", "events", "suppressed", "problems", "ignored", "skipped", "alerts")}

    def held_days(self, tenant: str, ip: str, day: datetime.date) -> int:
        """:meth:`IpHolds.held_days <mailplane.sender.events.holds.IpHolds.held_days>`."""
        return self.holds.held_days(tenant, ip, day)

    def override(self, tenant: str, ip: str, day: datetime.date) -> IpOverride | None:
        """The pacer's hook (through ``Service.override``): a held plan, or None."""
        return self.holds.override(tenant, ip, day)

    # -- the loop ------------------------------------------------------------------------

    def run_forever(self, stop: threading.Event, interval: float = 30.0) -> None:
        """Ingest every ``interval`` seconds until ``stop`` is set; an error is logged, not fatal,
        so a bad moment (database restarting, file unreadable) does not end event ingestion."""
        while not stop.is_set():
            try:
                summary = self.ingest_accounting()
                if summary["events"] or summary["alerts"]:
                    log.info("accounting ingest: %s", summary)
            except Exception:
                log.exception("accounting ingest failed; trying again in %.0f s", interval)
            try:
                self.guard()
            except Exception:
                log.exception("tenant guard failed; trying again in %.0f s", interval)
            stop.wait(interval)

    # -- the tenant guard ----------------------------------------------------------------

    def guard(self) -> list[GuardPause]:
        """Pause each tenant whose bounce or complaint rate went over its thresholds (see ``guard``)."""
        return guard_tenants(self.fleet, self.store, alert=self._guard_alert)

    def _guard_alert(self, pause: GuardPause) -> None:
        self.metrics.guard_pauses.labels(pause.tenant).inc()
        send_alert(self._post, self.config.alert_webhook_url, {
            "kind": "tenant-paused", "stack": self.stack_name, "tenant": pause.tenant, "reason": pause.reason,
            "pause_id": pause.row.id, "text": f"mailplane: {pause.tenant} paused by the tenant guard: "
            f"{pause.reason}; queued mail waits until an operator resumes it"})
