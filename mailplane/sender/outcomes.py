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

    def since(self, tenant: str, hour: int) -> Totals:
        """The tenant's totals over every route from epoch hour ``hour`` on."""
        query = select(*(func.coalesce(func.sum(tenant_hours.c[name]), 0) for name in COLUMNS)).where(
            tenant_hours.c.tenant == tenant, tenant_hours.c.hour >= hour)
        with self.store.reading() as conn:
            row = conn.execute(query).one()
        return Totals(*(int(v) for v in row))
