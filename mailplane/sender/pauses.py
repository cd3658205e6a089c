"""Pauses and drains of a tenant, a stream, an IP or a recipient domain: what operators (and the tenant
guard) stop, why, and until when.

A **pause** stops sending on its scope: queued mail waits in the queue (the gate defers it, see
:mod:`mailplane.sender.gates`), nothing is dropped, and sending goes on where it stopped once the
pause ends -- resumed, or at its ``until``.  A **drain** refuses new mail for a tenant or stream at
submission while what is queued goes out (a tenant being moved or retired).  Every instance sharing
the database sees the same pauses: they are rows, read by each reservation.

:class:`PauseRequest` checks what an operator asks against the fleet (pure); the store's
:class:`Pauses` repository keeps the rows.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from sqlalchemy import ColumnElement, Connection, and_, exists, func, or_, select, update

from mailplane.model.addresses import canonical_ip
from mailplane.model.stack import Fleet
from mailplane.model.types import normalise_domain
from mailplane.sender.gates import PAUSED, Pause
from mailplane.sender.schema import messages, pauses, upsert

if TYPE_CHECKING:
    from mailplane.sender.store import Store

Scope = Literal["tenant", "stream", "ip", "domain"]
Mode = Literal["pause", "drain"]
SCOPES: tuple[Scope, ...] = ("tenant", "stream", "ip", "domain")


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


@dataclass(frozen=True)
class PauseRow:
    id: int
    scope: str
    tenant: str | None
    key: str
    mode: str
    reason: str
    source: str
    until: float | None
    created_at: float

    @property
    def pause(self) -> Pause:
        where = {"tenant": f"tenant {self.tenant}", "stream": f"{self.tenant}'s {self.key} mail",
                 "ip": f"IP {self.key}", "domain": f"mail to {self.key}"}[self.scope]
        return Pause(f"{where} paused by {self.source} ({self.reason})", self.until)


@dataclass(frozen=True)
class PauseRequest:
    """What an operator asks to pause or drain, checked against the fleet; ``ValueError`` says what is wrong."""

    scope: Scope
    tenant: str | None
    key: str
    mode: Mode
    reason: str
    until: float | None

    @classmethod
    def checked(cls, fleet: Fleet, *, scope: str, tenant: str | None, key: str | None, mode: str, reason: str,
                until: float | None, now: float) -> PauseRequest:
        if scope not in SCOPES:
            raise ValueError(f"scope {scope!r} is not one of {', '.join(SCOPES)}")
        if mode not in ("pause", "drain"):
            raise ValueError(f"mode {mode!r} is not pause or drain")
        if not reason.strip():
            raise ValueError("give a reason: it is what the quota API and the logs say")
        if until is not None and until <= now:
            raise ValueError("until is in the past")
        tenants = {t.name: t for t in fleet.tenants}
        if tenant is not None and tenant not in tenants:
            raise ValueError(f"no tenant {tenant!r} in the fleet")
        if scope in ("tenant", "stream", "ip") and tenant is None:
            raise ValueError(f"a {scope} pause names its tenant")
        if mode == "drain" and scope not in ("tenant", "stream"):
            raise ValueError("only a tenant or a stream can be drained (new mail refused)")
        value = (key or "").strip()
        if scope == "tenant":
            value = ""
        elif scope == "stream":
            assert tenant is not None
            if value not in tenants[tenant].streams:
                raise ValueError(f"{tenant} sends no {value!r} stream (streams: {', '.join(tenants[tenant].streams)})")
        elif scope == "ip":
            assert tenant is not None
            try:
                value = canonical_ip(value)
            except ValueError:
                raise ValueError(f"{value!r} is not an IP address") from None
            if value not in {canonical_ip(ip.address) for ip in tenants[tenant].ips}:
                raise ValueError(f"{value} is not an IP of {tenant}")
        else:
            try:
                value = normalise_domain(value)
            except ValueError as err:
                raise ValueError(f"{value!r} is not a domain: {err}") from None
        return cls(scope, tenant, value, mode, reason.strip()[:500], until)  # type: ignore[arg-type]


@dataclass(frozen=True)
class InForce:
    """The pauses in force, indexed the way the pacer and the API ask about them."""

    tenants: dict[str, PauseRow]
    streams: dict[tuple[str, str], PauseRow]
    ips: dict[str, PauseRow]
    domains: dict[tuple[str | None, str], PauseRow]
    drains: dict[tuple[str, str], PauseRow]
    """(tenant, stream or "") of each drain."""

    @classmethod
    def of(cls, rows: Iterable[PauseRow]) -> InForce:
        found = cls({}, {}, {}, {}, {})
        for row in sorted(rows, key=lambda r: r.id):  # the oldest of two on one scope is the one shown
            if row.mode == "drain":
                found.drains.setdefault((row.tenant or "", row.key), row)
            elif row.scope == "tenant" and row.tenant is not None:
                found.tenants.setdefault(row.tenant, row)
            elif row.scope == "stream" and row.tenant is not None:
                found.streams.setdefault((row.tenant, row.key), row)
            elif row.scope == "ip":
                found.ips.setdefault(row.key, row)
            elif row.scope == "domain":
                found.domains.setdefault((row.tenant, row.key), row)
        return found

    def route(self, tenant: str, stream: str) -> Pause | None:
        row = self.tenants.get(tenant) or self.streams.get((tenant, stream))
        return row.pause if row else None

    def ip(self, address: str) -> Pause | None:
        row = self.ips.get(address)
        return row.pause if row else None

    def domain(self, tenant: str, domain: str) -> Pause | None:
        row = self.domains.get((tenant, domain)) or self.domains.get((None, domain))
        return row.pause if row else None

    def about(self, tenant: str) -> list[str]:
        """What is in force on ``tenant``, its streams, IPs and recipients' domains, each in a sentence."""
        rows = [*(r for t, r in self.tenants.items() if t == tenant),
                *(r for (t, _), r in self.streams.items() if t == tenant),
                *(r for r in self.ips.values() if r.tenant == tenant),
                *(r for (t, _), r in self.domains.items() if t in (tenant, None)),
                *(r for (t, _), r in self.drains.items() if t == tenant)]
        return [("drain: new mail refused: " if r.mode == "drain" else "") + r.pause.reason
                for r in sorted(rows, key=lambda r: r.id)]

    def drain(self, tenant: str, stream: str) -> PauseRow | None:
        return self.drains.get((tenant, "")) or self.drains.get((tenant, stream))


class Pauses:
    """The pause rows of one store (every instance shares them)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def add(self, request: PauseRequest, source: str = "operator") -> PauseRow:
        now = self.store.clock()

        def work(conn: Connection) -> int:
            result = conn.execute(pauses.insert().values(
                scope=request.scope, tenant=request.tenant, key=request.key, mode=request.mode,
                reason=request.reason, source=source, until=request.until, created_at=now).returning(pauses.c.id))
            return int(result.scalar_one())

        new_id: int = self.store.run(work)
        return PauseRow(new_id, request.scope, request.tenant, request.key, request.mode, request.reason, source,
                        request.until, now)

    def add_once(self, request: PauseRequest, source: str) -> PauseRow | None:
        """Add a tenant pause of ``source`` unless one is in force already (another instance's, made the same
        moment): None then.  The database's unique index on open guard pauses decides, not a prior read."""
        now = self.store.clock()

        def work(conn: Connection) -> int | None:
            result = conn.execute(upsert(self.store.dialect, pauses).values(
                scope=request.scope, tenant=request.tenant, key=request.key, mode=request.mode,
                reason=request.reason, source=source, until=request.until, created_at=now)
                .on_conflict_do_nothing().returning(pauses.c.id))
            found = result.scalar_one_or_none()
            return None if found is None else int(found)

        new_id: int | None = self.store.run(work)
        if new_id is None:
            return None
        return PauseRow(new_id, request.scope, request.tenant, request.key, request.mode, request.reason, source,
                        request.until, now)

    def end(self, pause_id: int) -> bool:
        """Resume: the pause stops at once; False when there is no such pause in force."""
        now = self.store.clock()

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

        ended: bool = self.store.run(work)
        return ended

    def active(self) -> list[PauseRow]:
        """The pauses and drains in force now (not resumed, not past their end)."""
        now = self.store.clock()
        query = select(pauses).where(in_force_at(now)).order_by(pauses.c.id)
        with self.store.reading() as conn:
            return [PauseRow(int(r.id), r.scope, r.tenant, r.key, r.mode, r.reason, r.source, r.until, r.created_at)
                    for r in conn.execute(query)]

    def last_ended_each(self, source: str) -> dict[str, float]:
        """Per tenant, when its latest ``source`` pause was resumed (tenants never resumed are absent)."""
        query = (select(pauses.c.tenant, func.max(pauses.c.ended_at))
                 .where(pauses.c.source == source, pauses.c.scope == "tenant", pauses.c.ended_at.is_not(None))
                 .group_by(pauses.c.tenant))
        with self.store.reading() as conn:
            return {tenant: float(ended) for tenant, ended in conn.execute(query)}

    def in_force(self) -> InForce:
        return InForce.of(self.active())
