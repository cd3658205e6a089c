"""The sender's durable queue, and the store that owns it with every other repository of the database.

Every sender instance and worker shares one database (:mod:`mailplane.sender.db.database`), so the
queue and the pacing counters live in it rather than in memory: a message is committed before the
API answers 202, and a cap is enforced by a row every worker reads and writes inside one
transaction (:mod:`mailplane.sender.db.counters`).

Claims are leases: a worker that dies (even ``kill -9``) leaves ``claimed_until`` in the past
after ``lease`` seconds and its rows are claimed again, so nothing is lost and at most the
messages it had in flight are sent twice.  Times are UTC epoch seconds (a float): one
representation on both engines, compared in SQL with no time-zone handling.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from sqlalchemy import (
    Connection,
    Row,
    and_,
    func,
    select,
    tuple_,
    update,
)
from sqlalchemy.exc import IntegrityError

from mailplane.sender.core.gates import PRIORITY
from mailplane.sender.core.messages import (
    FINAL_STATES,
    Enqueued,
    IdempotencyConflict,
    Message,
    NewMessage,
    State,
)
from mailplane.sender.core.turns import Flow
from mailplane.sender.db.counters import Counters
from mailplane.sender.db.database import DEFAULT_URL, Database
from mailplane.sender.db.ledger import Ledger
from mailplane.sender.db.outcomes import SES_ROUTE, UNROUTED, Outcomes
from mailplane.sender.db.pauses import Pauses, route_paused
from mailplane.sender.db.schema import messages
from mailplane.sender.db.suppressions import Suppressions
from mailplane.sender.db.turns import Turns

log = logging.getLogger("mailplane.sender")

DEFAULT_LEASE = 60.0
"""Seconds a claim lasts; a worker renews it (``extend_lease``) for batches that take longer."""

def _rows_under_keys(conn: Connection, tenant: str, sender: str, keys: Iterable[str],
                     *columns: Any) -> list[Row[Any]]:
    """The sender's queued messages under ``keys`` (their key and ``columns``), 500 keys a query.

    The tenant and sender are always named: the unique index leads with them, so each look-up is a
    search of the index, never a scan of every message the queue holds.
    """
    ordered = sorted(set(keys))
    found: list[Row[Any]] = []
    for start in range(0, len(ordered), 500):
        found += conn.execute(select(messages.c.idempotency_key, *columns).where(
            messages.c.tenant == tenant, messages.c.sender == sender,
            messages.c.idempotency_key.in_(ordered[start:start + 500]))).all()
    return found


def _flow(row: dict[str, Any]) -> Flow:
    return (row["tenant"], row["stream"], row["campaign"])


def _fingerprint(payload: Any) -> str | None:
    value = payload.get("fingerprint") if isinstance(payload, dict) else None
    return value if isinstance(value, str) else None


def _same(a: str | None, b: str | None) -> bool:
    """Two fingerprints of one key agree; a message queued before fingerprints existed agrees with any."""
    return a is None or b is None or a == b


CLAIM_TIERS = tuple(sorted(PRIORITY, key=PRIORITY.__getitem__))
"""The claim's order: each stream of ``PRIORITY`` in turn (they are every stream a message can have)."""


def _message(row: Any) -> Message:
    return Message(**{name: getattr(row, name) for name in Message.__dataclass_fields__})


class Store(Database):
    """The queue behind one database URL, and the repositories of the other tables; safe to share between threads."""

    def __init__(self, url: str = DEFAULT_URL, *, clock: Callable[[], float] = time.time, create: bool = True):
        super().__init__(url, clock=clock, create=create)
        self.suppressions = Suppressions(self)
        """Who each tenant never sends to again (``suppressions``)."""
        self.counters = Counters(self)
        """The send gates' counter rows and rate schedule (``counters``)."""
        self.pauses = Pauses(self)
        """Operators' and the tenant guard's pauses and drains (``pauses``)."""
        self.outcomes = Outcomes(self)
        """Per tenant, route and hour: sent, delivered, bounced, complained, deferred, suppressed (``outcomes``)."""
        self.ledger = Ledger(self, self.outcomes, self.suppressions)
        """The event side's bookkeeping: accounting cursors, IP-day outcomes, alert markers (``ledger``)."""
        self.turns = Turns(self)
        """Each flow's place in the queue: whose mail is claimed next within a stream (``turns``)."""
        self.weights: dict[str, int] = {}
        """Each tenant's weight in the turns (its ``ses.share``); the service sets it from the fleet."""

    # -- the queue ------------------------------------------------------------------------

    def enqueue(self, batch: Sequence[NewMessage]) -> list[Enqueued]:
        """Queue messages in one transaction; when this returns they are committed (durable).

        An idempotency key already used by the same tenant and sender (before, or earlier in the
        same batch) for the same message (its ``fingerprint``) returns the earlier message's id with
        ``created=False`` and queues nothing; for another message it raises
        :class:`IdempotencyConflict` and the whole batch is rolled back.
        The new rows go in as one multi-row INSERT; should another transaction commit one of the
        batch's keys meanwhile (PostgreSQL), the batch is redone row by row.
        """
        if not batch:
            return []
        try:
            return self.run(lambda conn: self._enqueue_bulk(conn, batch))  # type: ignore[no-any-return]
        except IntegrityError:
            return self.run(lambda conn: self._enqueue_rows(conn, batch))  # type: ignore[no-any-return]

    def _existing_keys(self, conn: Connection,
                       batch: Sequence[NewMessage]) -> dict[tuple[str, str, str], tuple[int, str | None]]:
        """(tenant, sender, key) to (id, fingerprint) of the messages already queued under the batch's keys."""
        wanted: dict[tuple[str, str], set[str]] = {}
        for m in batch:
            if m.idempotency_key is not None:
                wanted.setdefault((m.tenant, m.sender), set()).add(m.idempotency_key)
        return {(tenant, sender, r.idempotency_key): (int(r.id), _fingerprint(r.payload))
                for (tenant, sender), keys in sorted(wanted.items())
                for r in _rows_under_keys(conn, tenant, sender, keys, messages.c.id, messages.c.payload)}

    def _enqueue_bulk(self, conn: Connection, batch: Sequence[NewMessage]) -> list[Enqueued]:
        now = self.clock()
        known = self._existing_keys(conn, batch)
        rows: list[dict[str, Any]] = []
        plan: list[tuple[bool, int]] = []  # (new row?, row index or existing id)
        first_in_batch: dict[tuple[str, str, str], tuple[int, int]] = {}  # key -> (row index, batch index)
        for index, m in enumerate(batch):
            key = (m.tenant, m.sender, m.idempotency_key) if m.idempotency_key is not None else None
            if key is not None and key in known:
                old_id, old_print = known[key]
                if not _same(old_print, _fingerprint(m.payload)):
                    raise IdempotencyConflict(index, key[2], old_id)
                plan.append((False, old_id))
            elif key is not None and key in first_in_batch:
                row, earlier = first_in_batch[key]
                if not _same(_fingerprint(rows[row]["payload"]), _fingerprint(m.payload)):
                    raise IdempotencyConflict(index, key[2], None, earlier)
                plan.append((True, row))
            else:
                if key is not None:
                    first_in_batch[key] = (len(rows), index)
                plan.append((True, len(rows)))
                rows.append(dict(tenant=m.tenant, sender=m.sender, stream=m.stream, from_addr=m.from_addr,
                                 to_addr=m.to_addr, payload=m.payload, idempotency_key=m.idempotency_key,
                                 campaign=m.campaign, state="queued", attempts=0, next_attempt_at=now,
                                 created_at=now, updated_at=now))
        for new, turn in zip(rows, self.turns.deal(conn, [_flow(r) for r in rows], self.weights), strict=True):
            new["turn"] = turn
        ids: list[int] = []
        if rows:
            result = conn.execute(messages.insert().returning(messages.c.id, sort_by_parameter_order=True), rows)
            ids = [int(i) for i in result.scalars()]
        out: list[Enqueued] = []
        created: set[int] = set()
        for is_row, ref in plan:
            if not is_row:
                out.append(Enqueued(ref, False))
            else:
                out.append(Enqueued(ids[ref], ref not in created))
                created.add(ref)
        return out

    def _enqueue_rows(self, conn: Connection, batch: Sequence[NewMessage]) -> list[Enqueued]:
        now = self.clock()
        out: list[Enqueued] = []
        for m in batch:
            turn = self.turns.deal(conn, [(m.tenant, m.stream, m.campaign)], self.weights)[0]
            stmt = self.insert(messages).values(
                tenant=m.tenant, sender=m.sender, stream=m.stream, from_addr=m.from_addr, to_addr=m.to_addr,
                payload=m.payload, idempotency_key=m.idempotency_key, campaign=m.campaign, turn=turn,
                state="queued", attempts=0,
                next_attempt_at=now, created_at=now, updated_at=now,
            ).on_conflict_do_nothing().returning(messages.c.id)
            new_id = conn.execute(stmt).scalar()
            if new_id is not None:
                out.append(Enqueued(int(new_id), True))
                continue
            old = conn.execute(select(messages.c.id, messages.c.payload).where(
                messages.c.tenant == m.tenant, messages.c.sender == m.sender,
                messages.c.idempotency_key == m.idempotency_key)).one()
            if not _same(_fingerprint(old.payload), _fingerprint(m.payload)):
                raise IdempotencyConflict(len(out), m.idempotency_key or "", int(old.id))
            out.append(Enqueued(int(old.id), False))
        return out

    def known_keys(self, tenant: str, sender: str, keys: Sequence[str]) -> set[str]:
        """Those of ``keys`` the sender already used (the idempotency scope: tenant and sender)."""
        if not keys:
            return set()
        with self.reading() as conn:
            return {row.idempotency_key for row in _rows_under_keys(conn, tenant, sender, keys)}

    def get(self, message_id: int) -> Message | None:
        with self.reading() as conn:
            row = conn.execute(select(messages).where(messages.c.id == message_id)).first()
        return _message(row) if row else None

    def claim(self, worker: str, limit: int, lease: float = DEFAULT_LEASE,
              routes: Sequence[tuple[str, str]] | None = None) -> list[Message]:
        """Take up to ``limit`` due messages for ``worker`` for ``lease`` seconds.

        Due: queued with ``next_attempt_at`` reached, or claimed by someone whose lease ran out
        (a worker that died).  Transactional mail first, then the rest (``gates.PRIORITY``, one
        indexed query per stream), the lowest turn first within each (:mod:`mailplane.sender.db.turns`:
        tenants by their shares, a tenant's campaigns in turn): a password reset is claimed ahead of
        a campaign that was due before it, a light tenant's mail ahead of a heavy one's backlog.
        ``routes``: only messages of these (tenant, stream) pairs, the ones this instance can
        deliver (None: all).  The batch comes in that order (transactional first, then by turn), which
        is the order its waits are spread in.  Mail of a paused
        tenant or stream is not due (:func:`~mailplane.sender.db.pauses.route_paused`).
        """

        def work(conn: Connection) -> list[Message]:
            now = self.clock()
            wanted = ~route_paused(now)
            if routes is not None:
                if not routes:
                    return []
                wanted = and_(wanted, tuple_(messages.c.tenant, messages.c.stream).in_(sorted(set(routes))))
            # two queries a tier, so each walks its own index in order: the lapsed claims (rare) by
            # ix_messages_lease, the queue by ix_messages_turn (one OR would read every due row and sort)
            lapsed = and_(messages.c.state == "sending", messages.c.claimed_until < now)
            # ``+ 0``: not a range SQLite would take ix_messages_due for (it has no statistics and would
            # then sort every due row); the filter is read from ix_messages_turn as it is walked
            queued = and_(messages.c.state == "queued", messages.c.next_attempt_at + 0 <= now)
            ids: list[int] = []
            for stream in CLAIM_TIERS:
                for due in (lapsed, queued):
                    query = (select(messages.c.id).where(due, messages.c.stream == stream, wanted)
                             .order_by(messages.c.turn, messages.c.id).limit(limit - len(ids)))
                    ids += conn.execute(self.for_update(query, skip_locked=True)).scalars()
                    if len(ids) >= limit:
                        break
                if len(ids) >= limit:
                    break
            if not ids:
                return []
            conn.execute(update(messages).where(messages.c.id.in_(ids)).values(
                state="sending", claimed_by=worker, claimed_until=now + lease, updated_at=now))
            rows = {r.id: r for r in conn.execute(select(messages).where(messages.c.id.in_(ids)))}
            return [_message(rows[i]) for i in ids]  # in the claim's order: the batch is answered in it

        return self.run(work)

    def extend_lease(self, worker: str, ids: Sequence[int], lease: float = DEFAULT_LEASE) -> int:
        """Renew this worker's claims; returns how many it still holds."""

        def work(conn: Connection) -> int:
            now = self.clock()
            result = conn.execute(update(messages).where(
                messages.c.id.in_(list(ids)), messages.c.state == "sending", messages.c.claimed_by == worker,
            ).values(claimed_until=now + lease, updated_at=now))
            return int(result.rowcount)

        return self.run(work)

    def complete(self, worker: str, message_id: int, state: State, error: str | None = None) -> bool:
        """Final state (sent, failed, suppressed); False if ``worker`` no longer holds the claim.

        Counters are left alone: a message the provider took, even to refuse it permanently,
        counted against the IP's and the account's volume (see ``pacing``).
        """
        if state not in FINAL_STATES:
            raise ValueError(f"not a final state: {state}")
        return self.complete_many(worker, [(message_id, state, error)]) == 1

    def unclaim(self, worker: str, ids: Sequence[int]) -> int:
        """Give claims back untouched (a worker stopping): due again at once, no attempt counted."""

        def work(conn: Connection) -> int:
            now = self.clock()
            result = conn.execute(update(messages).where(
                messages.c.id.in_(list(ids)), messages.c.state == "sending", messages.c.claimed_by == worker,
            ).values(state="queued", claimed_by=None, claimed_until=None, transport=None, ip=None,
                     reserved_day=None, reserved_hour=None, updated_at=now))
            return int(result.rowcount)

        return int(self.run(work)) if ids else 0

    def complete_many(self, worker: str, results: Sequence[tuple[int, State, str | None]]) -> int:
        """``complete`` for several messages in one transaction (one commit for a whole batch's outcomes)."""
        for _, state, _ in results:
            if state not in FINAL_STATES:
                raise ValueError(f"not a final state: {state}")

        def work(conn: Connection) -> int:
            now = self.clock()
            done = 0
            counted: Counter[tuple[str, str, str]] = Counter()
            for (state, error), ids in _grouped(results).items():
                rows = conn.execute(update(messages).where(
                    messages.c.id.in_(ids), messages.c.state == "sending", messages.c.claimed_by == worker,
                ).values(state=state, claimed_by=None, claimed_until=None, last_error=error,
                         attempts=messages.c.attempts + 1, updated_at=now)
                    .returning(messages.c.tenant, messages.c.ip)).all()
                done += len(rows)
                if state == "sent":  # what the tenant guard's rates are taken over, in the same transaction
                    counted.update(("sent", row.tenant, row.ip or SES_ROUTE) for row in rows)
                elif state == "suppressed":  # kept back before it took a route
                    counted.update(("suppressed", row.tenant, row.ip or UNROUTED) for row in rows)
            for (what, tenant, route), n in sorted(counted.items()):
                self.outcomes.add(conn, tenant, route, int(now // 3600), {what: n})
            return done

        return int(self.run(work)) if results else 0

    def queue_counts(self, tenant: str) -> dict[str, dict[str, int]]:
        """A tenant's messages per stream and state (an operator deciding to hold or cancel)."""
        query = (select(messages.c.stream, messages.c.state, func.count()).where(messages.c.tenant == tenant)
                 .group_by(messages.c.stream, messages.c.state))
        out: dict[str, dict[str, int]] = {}
        with self.reading() as conn:
            for stream, state, n in conn.execute(query).all():
                out.setdefault(stream, {})[state] = int(n)
        return out

    def cancel_queued(self, tenant: str, stream: str | None, reason: str) -> int:
        """Cancel a tenant's (or one stream's) queued mail; messages being sent right now are not stopped.

        Pause first: a paused route's mail is never claimed, so all of it is ``queued`` and cancelled.
        """

        def work(conn: Connection) -> int:
            now = self.clock()
            cond = [messages.c.tenant == tenant, messages.c.state == "queued"]
            if stream is not None:
                cond.append(messages.c.stream == stream)
            result = conn.execute(update(messages).where(*cond).values(
                state="cancelled", last_error=f"cancelled: {reason}"[:1000], updated_at=now))
            return int(result.rowcount)

        return int(self.run(work))

    def counts(self) -> dict[str, int]:
        """Messages per state: the queue's gauge for ``/metrics``."""
        with self.reading() as conn:
            rows = conn.execute(select(messages.c.state, func.count()).group_by(messages.c.state)).all()
        return {state: int(n) for state, n in rows}

    def oldest_queued(self) -> float | None:
        """When the oldest message still waiting was accepted (epoch seconds); None when none waits."""
        with self.reading() as conn:
            value = conn.execute(select(func.min(messages.c.created_at)).where(messages.c.state == "queued")).scalar()
        return float(value) if value is not None else None

    def suppress(self, tenant: str, address: str, reason: str, source: str, *, conn: Connection | None = None) -> bool:
        """:meth:`Suppressions.add <mailplane.sender.db.suppressions.Suppressions.add>`."""
        return self.suppressions.add(tenant, address, reason, source, conn=conn)

    def suppressed(self, tenant: str, addresses: Sequence[str], *, stream: str | None = None) -> set[str]:
        """:meth:`Suppressions.among <mailplane.sender.db.suppressions.Suppressions.among>`."""
        return self.suppressions.among(tenant, addresses, stream=stream)

    def counter(self, kind: str, key: str, day: object) -> int:
        """Today's (or any day's) count of one scope; 0 when nothing was counted."""
        return self.counters.sent(kind, key, day)


def _grouped(results: Sequence[tuple[int, str, str | None]]) -> dict[tuple[str, str | None], list[int]]:
    groups: dict[tuple[str, str | None], list[int]] = {}
    for message_id, state, error in results:
        groups.setdefault((state, error), []).append(message_id)
    return groups
