"""The sender's event side: SES events over SNS, PowerMTA accounting, IP holds and their alerts.

Two sources tell the service how its mail fared:

* **SES**, through each tenant's SNS topic, posted to ``POST /v1/webhooks/ses``
  (:meth:`Events.handle_sns`): permanent bounces and complaints put the address on the tenant's
  suppression list at once.
* **PowerMTA**, through its accounting CSV files, polled by :meth:`Events.run_forever`
  (:meth:`Events.ingest_accounting`): every row counts towards its IP's day (the reputation
  rates) and hard bounces and complaints suppress as well.

An IP whose day went badly is *held* (:mod:`mailplane.sender.core.reputation`): its warmup plan does
not advance the next day.  The pacer asks :meth:`Events.override` inside every send reservation,
so that answer comes from memory, refreshed after each ingest.

Decisions worth knowing:

* Any refused SNS message gets 403 and the same body, whatever the reason: the reason (unknown
  topic, bad signature, ...) is logged, never told to a caller who may be probing.
* An *authentic* notification whose Message is not an SES event is acknowledged (200, warning
  logged): SNS retries any other status for hours, and the same bytes will never parse.  A
  failure of ours (the database) is not caught: the app answers 500 and SNS retries, which is
  what is wanted there.
* The topic's tenant wins: the topic is what the signature authenticates, the event's own
  configuration set is only logged when it disagrees.
* Accounting rows are counted exactly once: the counts, the suppressions and the file's cursor
  are written in one transaction, after checking (under lock) that the cursor is still the one
  the rows were read from, so a crash or a second instance ingesting the same files cannot
  count a row twice or lose one.
* Alerts are at least once: an IP-day is marked alerted and its alert queued in the same
  transaction (so a restart does not alert again); the queue is POSTed and emptied, and a failed
  POST leaves it for the next ingest.
"""

from __future__ import annotations

import datetime
import glob
import hashlib
import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mailplane.model.addresses import ip_key
from mailplane.sender.core.accounting import AccountingEvent, Batch, Cursor, VmtaIndex, read_file
from mailplane.sender.core.gates import IpOverride
from mailplane.sender.core.messages import canonical_address
from mailplane.sender.core.reputation import (
    COUNTS,
    Alert,
    DailyStats,
    alert_payload,
    held_days,
    judge_all,
    tally,
    thresholds_by_ip,
)
from mailplane.sender.db.outcomes import SES_ROUTE
from mailplane.sender.events.alerts import ALERT_TIMEOUT, Post, post_json, send_alert
from mailplane.sender.events.guard import GuardPause, guard_tenants
from mailplane.sender.events.ses_events import EventKind, SesEvent, SesEventError, parse_ses_events
from mailplane.sender.events.sns import (
    NOTIFICATION,
    SUBSCRIPTION_CONFIRMATION,
    UNSUBSCRIBE_CONFIRMATION,
    SnsRejected,
    SnsVerifier,
    VerifiedMessage,
    fleet_topics,
    urllib_fetcher,
)

if TYPE_CHECKING:
    from mailplane.model.stack import Fleet
    from mailplane.model.tenant import Ip
    from mailplane.sender.config import SenderConfig
    from mailplane.sender.db.store import Store
    from mailplane.sender.metrics import Metrics

log = logging.getLogger(__name__)

CURSOR_PREFIX = "accounting:"
"""``service_state`` key of a file's cursor: this and the path as globbed."""
ALERTED_PREFIX = "alerted:"
"""``service_state`` key marking an IP-day already alerted: this, the IP, ``/`` and the day."""

SOURCE_SES = "ses-event"
CONFIRM_TIMEOUT = 5.0
"""Seconds to GET a SubscribeURL: SNS waits for our answer, so this must stay short."""
HOLD_REFRESH = 60.0
"""Seconds the hold answers are trusted without reading the stats again: another instance may
have ingested meanwhile (this instance's own ingests refresh at once)."""
ALERT_LOOKBACK = 7
"""Days before today still worth an alert: older held days count for holds, but a first ingest
of old files should not page anyone about last month."""
HEAD_BYTES = 4096
"""Bytes at the start of a file fingerprinted with its cursor (a header and a few rows)."""
MAX_LOGGED_PROBLEMS = 20
"""Row problems logged per file and ingest; the rest are only counted (a broken file would
otherwise flood the log every poll)."""

Get = Callable[[str], Any]
"""GET a URL, raising on failure (confirming an SNS subscription)."""


@dataclass
class _FileResult:
    """What one file's ingest wrote (after its transaction committed)."""

    events: int = 0
    suppressed: list[tuple[str, str]] | None = None  # (tenant, reason) of each new suppression
    problems: int = 0
    ignored: int = 0
    skipped: bool = False  # another ingest moved the cursor first: nothing written


@dataclass
class _Snapshot:
    """The stored IP-day stats as read at ``loaded_at``, and the hold answers computed from them."""

    stats: dict[str, list[DailyStats]]
    loaded_at: float
    holds: dict[tuple[str, datetime.date], int] = field(default_factory=dict)


@dataclass(frozen=True)
class EventParts:
    """What the event side is built from: the instance's fleet, config, store, metrics and clock.

    Handed over when :meth:`Service.attach_events` builds it; the event side never reaches back into
    the service (the service asks it for holds through :meth:`Events.override`).
    """

    fleet: Fleet
    config: SenderConfig
    store: Store
    metrics: Metrics
    clock: Callable[[], float]
    stack_name: str


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
        aws = parts.config.aws
        clock = parts.clock
        self.verifier = SnsVerifier(
            allowed_topics=fleet_topics(self.fleet.tenants, region=self.fleet.settings.ses.region,
                                        account_id=aws.account_id, partition=aws.partition),
            fetcher=fetcher, insecure_skip_signature=parts.config.insecure_skip_sns_signature,
            on_fetch=parts.metrics.sns_certificate_fetches.inc,
            clock=lambda: datetime.datetime.fromtimestamp(clock(), datetime.UTC))
        if parts.config.insecure_skip_sns_signature:
            log.warning("insecure_skip_sns_signature is on: SNS messages are accepted WITHOUT checking their "
                        "signature (for tests against moto; never in production)")
        self._post = post or post_json
        self._get = get or urllib_fetcher(CONFIRM_TIMEOUT)
        self.index = VmtaIndex.from_fleet(self.fleet)
        self._thresholds = thresholds_by_ip(self.fleet)
        self._ips: dict[str, Ip] = {ip_key(r.ip.address): r.ip for r in self.fleet.ips()}
        self._config_sets = {t.name: t.configuration_set for t in self.fleet.tenants}
        self._ingest_lock = threading.Lock()
        self._snapshot: _Snapshot | None = None

    def today(self) -> datetime.date:
        return datetime.datetime.fromtimestamp(self.clock(), datetime.UTC).date()

    # -- SNS ---------------------------------------------------------------------------

    def handle_sns(self, body: bytes, message_type: str | None) -> tuple[int, dict[str, Any]]:
        """Act on one SNS POST; returns (HTTP status, JSON body) for the route to send back."""
        try:
            message = self.verifier.verify(body, message_type_header=message_type)
        except SnsRejected as exc:
            log.warning("SNS message refused (%s): %s", exc.reason.value, exc.detail or "-")
            self.metrics.sns_rejected.labels(exc.reason.value).inc()
            return 403, {"error": "forbidden"}
        if message.type == SUBSCRIPTION_CONFIRMATION:
            return self._confirm(message)
        if message.type == UNSUBSCRIBE_CONFIRMATION:
            log.warning("SNS unsubscribed this endpoint from %s (%s): its SES events stop arriving",
                        message.topic_arn, message.tenant)
            return 200, {"status": "unsubscribed"}
        if message.type == NOTIFICATION:
            return self._notification(message)
        return 400, {"error": "unknown message type"}  # the verifier knows no other type: unreachable

    def _confirm(self, message: VerifiedMessage) -> tuple[int, dict[str, Any]]:
        """GET the SubscribeURL (already pinned to the topic's SNS endpoint by the verifier)."""
        url = message.subscribe_url
        if url is None:
            return 403, {"error": "forbidden"}
        try:
            self._get(url)
        except Exception as exc:  # network, TLS, HTTP status: SNS sends the confirmation again
            log.error("confirming the subscription to %s failed: %s", message.topic_arn, exc)
            return 502, {"error": "confirmation failed"}
        log.info("confirmed the SNS subscription to %s (%s)", message.topic_arn, message.tenant)
        return 200, {"status": "confirmed"}

    def _notification(self, message: VerifiedMessage) -> tuple[int, dict[str, Any]]:
        try:
            events = parse_ses_events(message.message)
        except SesEventError as exc:
            # Authentic but not an SES event: acknowledged, since SNS would retry the same bytes for hours.
            log.warning("SNS message %s on %s is not an SES event (%s): acknowledged and ignored",
                        message.message_id, message.topic_arn, exc)
            return 200, {"status": "ignored"}
        suppressed = 0
        counted = {"bounced": 0, "complained": 0, "delivered": 0, "deferred": 0}
        for event in events:
            self._check_config_set(message, event)
            if event.suppress and self._suppress(message.tenant, event.recipient, _ses_reason(event), SOURCE_SES):
                suppressed += 1
                counted["bounced" if event.kind is EventKind.BOUNCE else "complained"] += 1
            elif event.kind is EventKind.DELIVERY:  # for people's overview only: SNS may deliver it twice
                counted["delivered"] += 1
            elif event.kind is EventKind.DELIVERY_DELAY:
                counted["deferred"] += 1
        # What the tenant guard judges; counted with the suppression it caused, so SNS delivering a
        # message twice (it delivers at least once) counts it once.
        self.store.outcomes.record(message.tenant, SES_ROUTE, counted)
        return 200, {"status": "ok", "events": len(events), "suppressed": suppressed}

    def _check_config_set(self, message: VerifiedMessage, event: SesEvent) -> None:
        expected = self._config_sets.get(message.tenant)
        if event.configuration_set is not None and event.configuration_set != expected:
            log.warning("SES event on %s names configuration set %r, not %r: counted for %s (the topic's tenant)",
                        message.topic_arn, event.configuration_set, expected, message.tenant)

    def _suppress(self, tenant: str, address: str, reason: str, source: str) -> bool:
        new = self.store.suppress(tenant, address, reason, source)
        if new:
            self.metrics.suppressed.labels(tenant, reason).inc()
        return new

    # -- PowerMTA accounting -----------------------------------------------------------

    def accounting_paths(self) -> list[Path]:
        """Files matching the configured globs, each once, in a stable order."""
        found = {Path(p) for pattern in self.config.accounting_files for p in glob.glob(pattern)}
        return sorted(p for p in found if p.is_file())

    def ingest_accounting(self) -> dict[str, int]:
        """Read what every accounting file gained, count it, suppress, then judge and alert.

        Returns summary counts (files, events, suppressed, problems, ignored, skipped, alerts).
        One ingest at a time per process; instances sharing a database are kept apart by the
        cursor check in :meth:`_commit`.
        """
        with self._ingest_lock:
            summary: Counter[str] = Counter()
            paths = self.accounting_paths()
            cursors = self._cursors_for(paths)
            for path in paths:
                result = self._ingest_file(path, cursors[path])
                summary["files"] += 1
                summary["events"] += result.events
                summary["problems"] += result.problems
                summary["ignored"] += result.ignored
                summary["skipped"] += int(result.skipped)
                for tenant, reason in result.suppressed or []:
                    self.metrics.suppressed.labels(tenant, reason).inc()
                    summary["suppressed"] += 1
            snapshot = self._reload_stats()
            summary["alerts"] = len(self._new_alerts(snapshot.stats))
            self._deliver_alerts()
            return {key: summary[key] for key in
                    ("files", "events", "suppressed", "problems", "ignored", "skipped", "alerts")}

    def _cursors_for(self, paths: Iterable[Path]) -> dict[Path, Cursor]:
        """Each file's cursor: its own if it still describes the file at that path; else the
        cursor of a path it was renamed away from (rotation: same device and inode, same first
        bytes), the most advanced if several; else none (read from the start).

        The first bytes matter because an inode freed by deleting an old file is soon given to
        a new one: device and inode alone would make a new file continue an old file's offset.
        """
        stored = self._stored_cursors()
        out: dict[Path, Cursor] = {}
        for path in paths:
            identity = _identity(path)
            own = stored.get(str(path))
            if own is not None and own[0].identity == identity and _same_head(path, own[1]):
                out[path] = own[0]
                continue
            moved = [cursor for name, (cursor, value) in stored.items()
                     if name != str(path) and cursor.identity == identity and _same_head(path, value)]
            out[path] = max(moved, key=lambda c: c.offset) if identity is not None and moved else Cursor()
        return out

    def _stored_cursors(self) -> dict[str, tuple[Cursor, dict[str, Any]]]:
        """Path to (cursor, stored value) of every file read so far."""
        stored = self.store.ledger.values_under(CURSOR_PREFIX)
        return {path: (Cursor.from_dict(value), value) for path, value in stored.items()
                if isinstance(value, dict) and value}

    def _ingest_file(self, path: Path, cursor: Cursor) -> _FileResult:
        key = CURSOR_PREFIX + str(path)
        expected = self.store.ledger.cursor(key)  # read before the file: a commit by anyone after this fails the check
        batch = read_file(path, self.index, cursor)
        for problem in batch.problems[:MAX_LOGGED_PROBLEMS]:
            log.warning("accounting: %s", problem)
        if len(batch.problems) > MAX_LOGGED_PROBLEMS:
            log.warning("accounting: %s: %d more problems", path, len(batch.problems) - MAX_LOGGED_PROBLEMS)
        result = _FileResult(events=len(batch.events), problems=len(batch.problems), ignored=batch.ignored)
        value = _cursor_value(path, batch.cursor)
        if value == expected:
            return result  # nothing new, and the cursor is stored where it belongs
        committed = self._commit(key, expected, value, batch, str(path))
        if committed is None:
            log.info("accounting: %s was ingested by someone else meanwhile; read again next time", path)
            return _FileResult(skipped=True)
        result.suppressed = committed
        return result

    def _commit(self, key: str, expected: Any, value: dict[str, Any], batch: Batch,
                source: str) -> list[tuple[str, str]] | None:
        """Counts, suppressions and the new cursor in one transaction (:meth:`Ledger.commit_ingest`); None
        (nothing written) when the stored cursor is no longer ``expected``: another ingest got there first."""
        stats = [{"ip": s.ip, "day": s.day, "tenant": s.tenant, **{name: getattr(s, name) for name in COUNTS}}
                 for s in tally(batch.events).values()]
        to_suppress = sorted({(e.tenant, canonical_address(e.recipient), reason)
                              for e, reason in _suppressible(batch.events)})
        return self.store.ledger.commit_ingest(key, expected, value, stats, to_suppress, source)

    # -- holds -------------------------------------------------------------------------

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
            return self._reload_stats()
        return snapshot

    def _reload_stats(self) -> _Snapshot:
        """Read every IP-day row again; the hold answers start afresh with the new snapshot."""
        by_ip: dict[str, list[DailyStats]] = {}
        for row in self.store.ledger.ip_stats():
            stats = DailyStats(row["ip"], row["tenant"], row["day"], **{name: int(row[name]) for name in COUNTS})
            by_ip.setdefault(ip_key(row["ip"]), []).append(stats)
        snapshot = _Snapshot(by_ip, self.clock())
        self._snapshot = snapshot  # one assignment: readers see the old snapshot or the new, never a mix
        return snapshot

    # -- alerts ------------------------------------------------------------------------

    def _new_alerts(self, stats: Mapping[str, list[DailyStats]]) -> list[Alert]:
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

    def _deliver_alerts(self) -> None:
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


# -- helpers ---------------------------------------------------------------------------------


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


def _head(path: Path, length: int) -> str | None:
    """SHA-256 of the first ``length`` bytes of the file, None if it has fewer or cannot be read."""
    try:
        with path.open("rb") as f:
            data = f.read(length)
    except OSError:
        return None
    return hashlib.sha256(data).hexdigest() if len(data) == length else None


def _cursor_value(path: Path, cursor: Cursor) -> dict[str, Any]:
    """What is stored for a file: its cursor and a fingerprint of its first bytes (see ``_cursors_for``)."""
    length = min(cursor.offset, HEAD_BYTES)
    return {**cursor.to_dict(), "head_bytes": length, "head": _head(path, length) if length else None}


def _same_head(path: Path, value: Mapping[str, Any]) -> bool:
    length = value.get("head_bytes")
    if not isinstance(length, int) or length <= 0:
        return True  # nothing read yet: nothing to compare
    return _head(path, length) == value.get("head")


def _ses_reason(event: SesEvent) -> str:
    return "complaint" if event.kind is EventKind.COMPLAINT else "hard_bounce"


def _suppressible(events: Iterable[AccountingEvent]) -> Iterable[tuple[AccountingEvent, str]]:
    """Hard bounces and complaints of an accounting batch, with the suppression reason."""
    for event in events:
        if event.kind == "bounce" and event.permanent:
            yield event, "hard_bounce"
        elif event.kind == "complaint":
            yield event, "complaint"


def _alert_from_dict(data: Mapping[str, Any]) -> Alert:
    return Alert(str(data["ip"]), str(data["tenant"]), datetime.date.fromisoformat(str(data["day"])),
                 data["rate"], float(data["value"]), float(data["threshold"]), int(data["count"]),
                 int(data["volume"]))
