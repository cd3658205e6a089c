"""The event side's bookkeeping in SQL: accounting cursors, IP-day outcomes, alert markers and queue.

:mod:`mailplane.sender.events.side` decides what to count, suppress and alert; this repository
(with the outcomes and suppressions it writes through) is where it is written, with the
transactional rules that make it exact:

* an accounting file's counts, suppressions and new cursor go in one transaction, after checking
  under lock that the stored cursor is still the one the rows were read from
  (:meth:`Ledger.commit_ingest`), so a crash or a second instance cannot count a row twice;
* an IP-day is marked alerted and its alert queued in one transaction (:meth:`Ledger.queue_alerts`),
  so a restart does not alert again; the queue is emptied only of what was delivered.

Rows are touched in one order everywhere (stats sorted by IP and day, then suppressions sorted),
so two ingests never deadlock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, select

from mailplane.sender.db.database import Database
from mailplane.sender.db.outcomes import Outcomes
from mailplane.sender.db.schema import ip_day_stats, service_state, upsert
from mailplane.sender.db.suppressions import Suppressions

PENDING_ALERTS = "alerts:pending"
"""``service_state`` key of the alerts decided but not yet delivered to the webhook."""


class Ledger:
    """Cursors, per-IP day outcomes and alerts of one store; every instance shares them."""

    def __init__(self, db: Database, outcomes: Outcomes, suppressions: Suppressions) -> None:
        self.db = db
        self.outcomes = outcomes
        self.suppressions = suppressions

    def _locked_value(self, conn: Connection, key: str) -> Any:
        query = select(service_state.c.value).where(service_state.c.key == key)
        return conn.execute(self.db.for_update(query)).scalar()

    def _create(self, conn: Connection, key: str, value: Any) -> None:
        """A state row, unless it exists: PostgreSQL locks rows, not their absence."""
        conn.execute(upsert(self.db.dialect, service_state).values(
            key=key, value=value, updated_at=self.db.clock()).on_conflict_do_nothing())

    # -- accounting cursors --------------------------------------------------------------

    def values_under(self, prefix: str) -> dict[str, Any]:
        """Every stored value whose key starts with ``prefix``, by the rest of its key."""
        with self.db.reading() as conn:
            rows = conn.execute(select(service_state.c.key, service_state.c.value)
                                .where(service_state.c.key.startswith(prefix, autoescape=True))).all()
        return {row.key[len(prefix):]: row.value for row in rows}

    def cursor(self, key: str) -> Any:
        """The stored cursor of ``key``, creating its row (empty) first, so that :meth:`commit_ingest` always
        has a row to lock."""
        value = self.db.get_state(key)
        if value is not None:
            return value
        self.db.run(lambda conn: self._create(conn, key, {}))
        return self.db.get_state(key)

    def commit_ingest(self, key: str, expected: Any, value: Mapping[str, Any], stats: Sequence[Mapping[str, Any]],
                      suppress: Sequence[tuple[str, str, str]], source: str) -> list[tuple[str, str]] | None:
        """Counts, suppressions and the new cursor in one transaction; None (nothing written) when the stored
        cursor is no longer ``expected``: another ingest got there first.

        ``stats``: rows of ``ip``, ``day``, ``tenant`` and counts to add; ``suppress``: (tenant, address,
        reason).  Returns the (tenant, reason) of each suppression that is new.
        """

        def work(conn: Connection) -> list[tuple[str, str]] | None:
            if self._locked_value(conn, key) != expected:
                return None
            hour = int(self.db.clock() // 3600)
            for row in sorted(stats, key=lambda r: (r["ip"], r["day"])):  # one lock order everywhere
                self._add_stats(conn, row)
            for row in sorted(stats, key=lambda r: (r["tenant"], r["ip"])):  # the tenant guard's view of it
                self.outcomes.add(conn, row["tenant"], row["ip"], hour, {
                    "bounced": int(row.get("hard_bounces", 0)), "complained": int(row.get("complaints", 0)),
                    "delivered": int(row.get("delivered", 0)), "deferred": int(row.get("deferrals", 0))})
            new = [(tenant, reason) for tenant, address, reason in sorted(suppress)
                   if self.suppressions.add(tenant, address, reason, source, conn=conn)]
            self.db.put_state(key, dict(value), conn=conn)
            return new

        result: list[tuple[str, str]] | None = self.db.run(work)
        return result

    def _add_stats(self, conn: Connection, row: Mapping[str, Any]) -> None:
        """Add one IP-day's counts to its row, creating the row first when it is new."""
        counts = {name: int(n) for name, n in row.items() if name not in ("ip", "day", "tenant")}
        conn.execute(upsert(self.db.dialect, ip_day_stats).values(
            ip=row["ip"], day=row["day"], tenant=row["tenant"], **dict.fromkeys(counts, 0)).on_conflict_do_nothing())
        conn.execute(ip_day_stats.update().where(ip_day_stats.c.ip == row["ip"], ip_day_stats.c.day == row["day"])
                     .values(**{name: ip_day_stats.c[name] + n for name, n in counts.items()}))

    # -- alerts ----------------------------------------------------------------------------

    def queue_alerts(self, marked: Sequence[tuple[str, Mapping[str, Any]]]) -> list[int]:
        """Mark each (marker key, alert) not marked before and queue its alert, in one transaction.

        Returns the indexes of the alerts that were new (a key given twice counts once).
        """

        def work(conn: Connection) -> list[int]:
            fresh: list[int] = []
            seen: set[str] = set()
            for index, (key, _alert) in enumerate(marked):
                if key in seen or self._mark(conn, key):
                    seen.add(key)
                    fresh.append(index)
            if fresh:
                self._create(conn, PENDING_ALERTS, [])
                pending = self._locked_value(conn, PENDING_ALERTS) or []
                self.db.put_state(PENDING_ALERTS, [*pending, *(dict(marked[i][1]) for i in fresh)], conn=conn)
            return fresh

        result: list[int] = self.db.run(work)
        return result

    def _mark(self, conn: Connection, key: str) -> bool:
        """Create the marker ``key``; False when it already existed (already alerted)."""
        stmt = (upsert(self.db.dialect, service_state).values(key=key, value=True, updated_at=self.db.clock())
                .on_conflict_do_nothing().returning(service_state.c.key))
        return conn.execute(stmt).first() is not None

    def pending_alerts(self) -> list[Any]:
        return list(self.db.get_state(PENDING_ALERTS) or [])

    def drop_pending(self, delivered: int) -> None:
        """Remove the first ``delivered`` queued alerts, keeping any queued meanwhile."""

        def work(conn: Connection) -> None:
            pending = self._locked_value(conn, PENDING_ALERTS) or []
            self.db.put_state(PENDING_ALERTS, pending[delivered:], conn=conn)

        self.db.run(work)

    def ip_stats(self, ip: str | None = None) -> list[dict[str, Any]]:
        """Stored day rows, of one IP or all, oldest first: the input of ``reputation.held_days``."""
        query = select(ip_day_stats).order_by(ip_day_stats.c.ip, ip_day_stats.c.day)
        if ip is not None:
            query = query.where(ip_day_stats.c.ip == ip)
        with self.db.reading() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]
