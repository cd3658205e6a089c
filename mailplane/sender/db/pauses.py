"""The ``pauses`` rows: operators' and the tenant guard's pauses and drains, shared by every instance.

What a pause is and what it stops: :mod:`mailplane.sender.core.pauses`.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, Connection, and_, exists, func, or_, select, update

from mailplane.sender.core.gates import PAUSED
from mailplane.sender.core.pauses import InForce, PauseRequest, PauseRow
from mailplane.sender.db.database import Database
from mailplane.sender.db.schema import messages, pauses, upsert


def in_force_at(now: float) -> ColumnElement[bool]:
    """The pause rows in force at ``now``: not resumed and not past their ``until``."""
    return and_(pauses.c.ended_at.is_(None), or_(pauses.c.until.is_(None), pauses.c.until > now))


def route_paused(now: float) -> ColumnElement[bool]:
    """True for a message whose tenant or (tenant, stream) is paused at ``now``.

    The queue's claim leaves such mail where it is, so a paused tenant's messages stay ``queued``
    (an operator's cancel finds them all) instead of being claimed and handed back by the gate.
    IP and recipient-domain pauses are judged by the gate: which IP a message takes is decided
    after the claim.
    """
    return exists(select(pauses.c.id).where(
        in_force_at(now), pauses.c.mode == "pause", pauses.c.tenant == messages.c.tenant,
        or_(pauses.c.scope == "tenant", and_(pauses.c.scope == "stream", pauses.c.key == messages.c.stream))))


class Pauses:
    """The pause rows of one store (every instance shares them)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, request: PauseRequest, source: str = "operator") -> PauseRow:
        now = self.db.clock()

        def work(conn: Connection) -> int:
            result = conn.execute(pauses.insert().values(
                scope=request.scope, tenant=request.tenant, key=request.key, mode=request.mode,
                reason=request.reason, source=source, until=request.until, created_at=now).returning(pauses.c.id))
            return int(result.scalar_one())

        new_id: int = self.db.run(work)
        return PauseRow(new_id, request.scope, request.tenant, request.key, request.mode, request.reason, source,
                        request.until, now)

    def add_once(self, request: PauseRequest, source: str) -> PauseRow | None:
        """Add a tenant pause of ``source`` unless one is in force already (another instance's, made the same
        moment): None then.  The database's unique index on open guard pauses decides, not a prior read."""
        now = self.db.clock()

        def work(conn: Connection) -> int | None:
            result = conn.execute(upsert(self.db.dialect, pauses).values(
                scope=request.scope, tenant=request.tenant, key=request.key, mode=request.mode,
                reason=request.reason, source=source, until=request.until, created_at=now)
                .on_conflict_do_nothing().returning(pauses.c.id))
            found = result.scalar_one_or_none()
            return None if found is None else int(found)

        new_id: int | None = self.db.run(work)
        if new_id is None:
            return None
        return PauseRow(new_id, request.scope, request.tenant, request.key, request.mode, request.reason, source,
                        request.until, now)

    def end(self, pause_id: int) -> bool:
        """Resume: the pause stops at once; False when there is no such pause in force."""
        now = self.db.clock()

        def work(conn: Connection) -> bool:
            result = conn.execute(update(pauses).where(
                pauses.c.id == pause_id, pauses.c.ended_at.is_(None)).values(ended_at=now))
            if result.rowcount != 1:
                return False
            # Mail waiting under a pause is due again now, not at its next look: another pause still
            # in force defers it again at once, so releasing all of it is safe.
            conn.execute(update(messages).where(
                messages.c.state == "queued", messages.c.last_error.startswith(PAUSED, autoescape=True),
                messages.c.next_attempt_at > now).values(next_attempt_at=now))
            return True

        ended: bool = self.db.run(work)
        return ended

    def active(self) -> list[PauseRow]:
        """The pauses and drains in force now (not resumed, not past their end)."""
        now = self.db.clock()
        query = select(pauses).where(in_force_at(now)).order_by(pauses.c.id)
        with self.db.reading() as conn:
            return [PauseRow(int(r.id), r.scope, r.tenant, r.key, r.mode, r.reason, r.source, r.until, r.created_at)
                    for r in conn.execute(query)]

    def last_ended_each(self, source: str) -> dict[str, float]:
        """Per tenant, when its latest ``source`` pause was resumed (tenants never resumed are absent)."""
        query = (select(pauses.c.tenant, func.max(pauses.c.ended_at))
                 .where(pauses.c.source == source, pauses.c.scope == "tenant", pauses.c.ended_at.is_not(None))
                 .group_by(pauses.c.tenant))
        with self.db.reading() as conn:
            return {tenant: float(ended) for tenant, ended in conn.execute(query)}

    def in_force(self) -> InForce:
        return InForce.of(self.active())
