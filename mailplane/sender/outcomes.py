"""Per tenant, route and hour: messages sent, hard bounces and complaints -- what the tenant guard judges.

Sends are counted when a message is marked sent (in the same transaction), bounces and complaints
when their SES event arrives or their PowerMTA accounting row is ingested (counted at that hour:
the rates are taken over a window of many hours, so a report's lag is noise).  Both routes count,
so a tenant's rate is its rate, however its mail left.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import Connection, func, select, update

from mailplane.sender.schema import tenant_hours, upsert

if TYPE_CHECKING:
    from mailplane.sender.store import Store

SES_ROUTE = "ses"
COLUMNS = ("sent", "bounced", "complained")


@dataclass(frozen=True)
class Totals:
    sent: int = 0
    bounced: int = 0
    complained: int = 0


class Outcomes:
    """The ``tenant_hours`` rows of one store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def add(self, conn: Connection, tenant: str, route: str, hour: int, counts: Mapping[str, int]) -> None:
        """Add ``counts`` (of :data:`COLUMNS`) to a row, inside the caller's transaction."""
        if not any(counts.values()):
            return
        conn.execute(upsert(self.store.dialect, tenant_hours).values(
            tenant=tenant, route=route, hour=hour, **dict.fromkeys(COLUMNS, 0)).on_conflict_do_nothing())
        conn.execute(update(tenant_hours).where(
            tenant_hours.c.tenant == tenant, tenant_hours.c.route == route, tenant_hours.c.hour == hour).values(
            **{name: tenant_hours.c[name] + int(n) for name, n in counts.items()}))

    def record(self, tenant: str, route: str, counts: Mapping[str, int]) -> None:
        """Add ``counts`` at this hour, in a transaction of its own."""
        if not any(counts.values()):
            return
        hour = int(self.store.clock() // 3600)
        self.store.run(lambda conn: self.add(conn, tenant, route, hour, counts))

    def hours(self, tenant: str, since_hour: int) -> list[tuple[str, int, int, int, int]]:
        """(route, hour, sent, bounced, complained) of the tenant from ``since_hour`` on."""
        query = select(tenant_hours.c.route, tenant_hours.c.hour, tenant_hours.c.sent, tenant_hours.c.bounced,
                       tenant_hours.c.complained).where(tenant_hours.c.tenant == tenant,
                                                        tenant_hours.c.hour >= since_hour)
        with self.store.reading() as conn:
            return [(r.route, int(r.hour), int(r.sent), int(r.bounced), int(r.complained))
                    for r in conn.execute(query)]

    def since(self, tenant: str, hour: int) -> Totals:
        """The tenant's totals over every route from epoch hour ``hour`` on."""
        query = select(*(func.coalesce(func.sum(tenant_hours.c[name]), 0) for name in COLUMNS)).where(
            tenant_hours.c.tenant == tenant, tenant_hours.c.hour >= hour)
        with self.store.reading() as conn:
            row = conn.execute(query).one()
        return Totals(*(int(v) for v in row))


@dataclass(frozen=True)
class DayRoute:
    """One day of one route of a tenant, as ``GET /v1/stats/{tenant}`` reports it."""

    day: str
    route: str
    sent: int
    bounced: int
    complained: int


def by_day(rows: list[tuple[str, int, int, int, int]]) -> list[DayRoute]:
    """(route, epoch hour, sent, bounced, complained) rows summed per UTC day and route, oldest first."""
    import datetime

    totals: dict[tuple[str, str], list[int]] = {}
    for route, hour, sent, bounced, complained in rows:
        day = datetime.datetime.fromtimestamp(hour * 3600, datetime.UTC).date().isoformat()
        acc = totals.setdefault((day, route), [0, 0, 0])
        acc[0] += sent
        acc[1] += bounced
        acc[2] += complained
    return [DayRoute(day, route, *counts) for (day, route), counts in sorted(totals.items())]
