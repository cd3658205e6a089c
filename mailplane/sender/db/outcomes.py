"""Per tenant, route and hour: messages sent, delivered, hard-bounced, complained of, deferred and kept back
as suppressed -- what the tenant guard judges (sent, bounced, complained) and what people read beside it.

Sends are counted when a message is marked sent (in the same transaction), and so are messages kept
back because their recipient is suppressed (route :data:`UNROUTED`: no route was chosen); bounces,
complaints, deliveries and deferrals when their SES event arrives or their PowerMTA accounting row
is ingested (counted at that hour: the rates are taken over a window of many hours, so a report's
lag is noise).  Both routes count, so a tenant's rate is its rate, however its mail left.  SES
reports deliveries and delays only to a tenant whose ``ses.events`` include ``delivery`` and
``delivery-delay``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import Connection, func, select, update

from mailplane.sender.db.database import Database
from mailplane.sender.db.schema import tenant_hours, upsert

SES_ROUTE = "ses"
UNROUTED = "-"
"""The route of mail kept back before it took one (its recipient suppressed)."""
COLUMNS = ("sent", "delivered", "bounced", "complained", "deferred", "suppressed")
GUARDED = ("sent", "bounced", "complained")
"""What the tenant guard judges."""


@dataclass(frozen=True)
class Totals:
    sent: int = 0
    bounced: int = 0
    complained: int = 0


class Outcomes:
    """The ``tenant_hours`` rows of one store."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, conn: Connection, tenant: str, route: str, hour: int, counts: Mapping[str, int]) -> None:
        """Add ``counts`` (of :data:`COLUMNS`) to a row, inside the caller's transaction."""
        if not any(counts.values()):
            return
        conn.execute(upsert(self.db.dialect, tenant_hours).values(
            tenant=tenant, route=route, hour=hour, **dict.fromkeys(COLUMNS, 0)).on_conflict_do_nothing())
        conn.execute(update(tenant_hours).where(
            tenant_hours.c.tenant == tenant, tenant_hours.c.route == route, tenant_hours.c.hour == hour).values(
            **{name: tenant_hours.c[name] + int(n) for name, n in counts.items()}))

    def record(self, tenant: str, route: str, counts: Mapping[str, int]) -> None:
        """Add ``counts`` at this hour, in a transaction of its own."""
        if not any(counts.values()):
            return
        hour = int(self.db.clock() // 3600)
        self.db.run(lambda conn: self.add(conn, tenant, route, hour, counts))

    def hours(self, tenant: str, since_hour: int) -> list[HourRoute]:
        """The tenant's rows from ``since_hour`` on."""
        query = select(tenant_hours.c.route, tenant_hours.c.hour, *(tenant_hours.c[name] for name in COLUMNS)).where(
            tenant_hours.c.tenant == tenant, tenant_hours.c.hour >= since_hour)
        with self.db.reading() as conn:
            return [HourRoute(r.route, int(r.hour), {name: int(r._mapping[name]) for name in COLUMNS})
                    for r in conn.execute(query)]

    def since_each(self, starts: Mapping[str, int]) -> dict[str, Totals]:
        """Per tenant of ``starts``, its totals from its own start hour on, in one query for all of them.

        A query per tenant made a scrape of ``/metrics`` and each guard round cost two round trips per
        tenant; this reads the hours of the widest window once and sums each tenant's part of it.
        """
        out = {tenant: Totals() for tenant in starts}
        if not starts:
            return out
        query = (select(tenant_hours.c.tenant, tenant_hours.c.hour,
                        *(func.sum(tenant_hours.c[name]) for name in GUARDED))
                 .where(tenant_hours.c.hour >= min(starts.values()))
                 .group_by(tenant_hours.c.tenant, tenant_hours.c.hour))
        sums: dict[str, list[int]] = {tenant: [0] * len(GUARDED) for tenant in starts}
        with self.db.reading() as conn:
            for tenant, hour, *counts in conn.execute(query):
                if tenant in starts and hour >= starts[tenant]:
                    sums[tenant] = [a + int(b or 0) for a, b in zip(sums[tenant], counts, strict=True)]
        return {tenant: Totals(*values) for tenant, values in sums.items()}


@dataclass(frozen=True)
class HourRoute:
    """One hour of one route of a tenant: a ``tenant_hours`` row."""

    route: str
    hour: int
    """Epoch hour."""
    counts: Mapping[str, int]
    """By :data:`COLUMNS`."""


@dataclass(frozen=True)
class DayRoute:
    """One day of one route of a tenant, as ``GET /v1/stats/{tenant}`` reports it."""

    day: str
    route: str
    counts: Mapping[str, int]
    """By :data:`COLUMNS`."""

    def rate(self, name: str) -> float | None:
        """``name`` per message sent; None with nothing sent."""
        sent = self.counts["sent"]
        return self.counts[name] / sent if sent else None


def by_day(rows: list[HourRoute]) -> list[DayRoute]:
    """Hour rows summed per UTC day and route, oldest first."""
    import datetime

    totals: dict[tuple[str, str], dict[str, int]] = {}
    for row in rows:
        day = datetime.datetime.fromtimestamp(row.hour * 3600, datetime.UTC).date().isoformat()
        acc = totals.setdefault((day, row.route), dict.fromkeys(COLUMNS, 0))
        for name in COLUMNS:
            acc[name] += row.counts[name]
    return [DayRoute(day, route, counts) for (day, route), counts in sorted(totals.items())]
