"""The suppression list: who a tenant never sends to again, and for which mail.

A hard bounce or a complaint stops every mail to the address; an unsubscription (reason
``unsubscribe``) stops marketing mail only, so a password reset still reaches someone who left a
newsletter.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, func, select, update

from mailplane.sender.core.messages import canonical_address
from mailplane.sender.db.database import Database
from mailplane.sender.db.schema import suppressions

UNSUBSCRIBE = "unsubscribe"
"""The suppression reason that applies to marketing mail only."""


class Suppressions:
    """The ``suppressions`` rows."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, tenant: str, address: str, reason: str, source: str, *, conn: Connection | None = None) -> bool:
        """Never send to ``address`` for ``tenant`` again; False if it already was suppressed.

        ``reason`` ``unsubscribe`` stops marketing mail only (see :meth:`among`).  A hard bounce
        or a complaint arriving for an address that had only unsubscribed widens it to all mail.
        Inside the caller's transaction when ``conn`` is given (an ingest writes it with its cursor).
        """

        def work(conn: Connection) -> bool:
            key = canonical_address(address)
            stmt = self.db.insert(suppressions).values(
                tenant=tenant, address=key, reason=reason, source=source[:255], created_at=self.db.clock(),
            ).on_conflict_do_nothing().returning(suppressions.c.address)
            if conn.execute(stmt).first() is not None:  # (rowcount is -1 for this on psycopg 3)
                return True
            if reason != UNSUBSCRIBE:
                widened = conn.execute(update(suppressions).where(
                    suppressions.c.tenant == tenant, suppressions.c.address == key,
                    suppressions.c.reason == UNSUBSCRIBE).values(reason=reason, source=source[:255])
                    .returning(suppressions.c.address)).first()
                return widened is not None
            return False

        return work(conn) if conn is not None else bool(self.db.run(work))

    def among(self, tenant: str, addresses: Sequence[str], *, stream: str | None = None) -> set[str]:
        """Those of ``addresses`` (canonical form) ``tenant`` may not send ``stream`` mail to.

        An unsubscription is from the tenant's marketing mail: it does not stop a password reset
        or a receipt (``stream="transactional"``).  Bounces and complaints stop everything.
        """
        keys = sorted({canonical_address(a) for a in addresses})
        if not keys:
            return set()
        query = select(suppressions.c.address).where(suppressions.c.tenant == tenant, suppressions.c.address.in_(keys))
        if stream == "transactional":
            query = query.where(suppressions.c.reason != UNSUBSCRIBE)
        with self.db.reading() as conn:
            return {r.address for r in conn.execute(query)}

    def count(self) -> int:
        with self.db.reading() as conn:
            return int(conn.execute(select(func.count()).select_from(suppressions)).scalar() or 0)
