"""The shared counters of the send gates, in SQL: locked, handed to the pure decision, written back.

A reservation is ONE transaction: lock the batch's messages and every counter row it is subject
to -- in one fixed order everywhere (messages by id, the SES rate schedule, the IPs' paces, daily
rows, hourly rows, each sorted), so two transactions never deadlock -- read them into a
:class:`~mailplane.sender.core.gates.Locked`, let :func:`~mailplane.sender.core.gates.decide` answer,
and write what it changed: the counters' increments, the schedule, each granted message's
reservation and each deferred message's return to the queue.  No interleaving of workers,
threads or instances can push a counter past its cap.

Counter rows are created beforehand in short transactions of their own (:meth:`Counters.ensure`),
so the reservation only ever locks rows that exist.
"""

from __future__ import annotations

import datetime
import hashlib
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Connection, Row, Select, Table, select, update

from mailplane.sender.core.gates import (
    QUOTA_PACE,
    SES,
    SHARE_KIND,
    Deferred,
    Granted,
    Locked,
    RateSchedule,
    Reservation,
)
from mailplane.sender.db.database import Database
from mailplane.sender.db.schema import daily_counters, hourly_counters, messages, token_buckets, upsert

DailyKey = tuple[str, str, datetime.date]
"""(kind, key, day) of a daily counter row."""
HourlyKey = tuple[str, str, int]
"""(kind, key, epoch hour) of an hourly counter row."""


class MissingRow(Exception):
    """A counter row this process created is gone (old days pruned): counting without it would count nothing."""


@dataclass(frozen=True)
class LockScope:
    """The rows one reservation locks."""

    daily: tuple[DailyKey, ...]
    hourly: tuple[HourlyKey, ...]
    schedule: bool
    """Whether some message may go by SES (the rate schedule row is locked too)."""
    paces: tuple[str, ...] = ()
    """The paced IPs (their :class:`~mailplane.sender.core.gates.Pace` rows), sorted."""


Decide = Callable[[Locked], list[Reservation]]
ScheduleOf = Callable[[float, list[float]], RateSchedule]


class Counters:
    """The counter rows and the rate schedule of one store; every worker and instance shares them."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._ensured: set[tuple[str, str, str, object]] = set()
        self._lock = threading.Lock()

    # -- rows --------------------------------------------------------------------------

    def ensure(self, scope: LockScope) -> None:
        """Create missing counter rows (and the schedule) in their own short transaction.

        Inserting them inside a reservation would make row creation another lock taken in
        whatever order the inserts happen; creating them first keeps the reservation's locks to
        existing rows, taken in one fixed order.  Remembered per process, so it runs once per
        scope and day.
        """
        todo_d = [k for k in scope.daily if ("d", *k) not in self._ensured]
        todo_h = [k for k in scope.hourly if ("h", *k) not in self._ensured]
        bucket = scope.schedule and ("b", SES, "", None) not in self._ensured
        todo_p = [ip for ip in scope.paces if ("p", ip, "", None) not in self._ensured]
        if not todo_d and not todo_h and not bucket and not todo_p:
            return
        dialect = self.db.dialect

        def work(conn: Connection) -> None:
            for kind, key, day in sorted(todo_d, key=str):
                conn.execute(upsert(dialect, daily_counters).values(kind=kind, key=key, day=day, sent=0)
                             .on_conflict_do_nothing())
            for kind, key, hour in sorted(todo_h):
                conn.execute(upsert(dialect, hourly_counters).values(kind=kind, key=key, hour=hour, sent=0)
                             .on_conflict_do_nothing())
            if bucket:
                now = self.db.clock()
                conn.execute(upsert(dialect, token_buckets).values(name=SES, next_slot=now, recent=[], updated_at=now)
                             .on_conflict_do_nothing())
            for ip in sorted(todo_p):  # an IP never paced starts idle: its burst is there at once
                conn.execute(upsert(dialect, token_buckets).values(name=pace_row(ip), next_slot=0.0, recent=[],
                                                                   updated_at=self.db.clock())
                             .on_conflict_do_nothing())

        self.db.run(work)
        with self._lock:
            self._ensured.update(("d", *k) for k in todo_d)
            self._ensured.update(("h", *k) for k in todo_h)
            if bucket:
                self._ensured.add(("b", SES, "", None))
            self._ensured.update(("p", ip, "", None) for ip in todo_p)

    def forget(self) -> None:
        """Drop the memory of created rows: the next :meth:`ensure` checks the database again."""
        with self._lock:
            self._ensured.clear()

    def sent(self, kind: str, key: str, day: object) -> int:
        """A day's count of one scope; 0 when nothing was counted."""
        with self.db.reading() as conn:
            value = conn.execute(select(daily_counters.c.sent).where(
                daily_counters.c.kind == kind, daily_counters.c.key == key, daily_counters.c.day == day)).scalar()
        return int(value or 0)

    def hour_sent(self, kind: str, key: str, hour: int) -> int:
        """An epoch hour's count of one scope; 0 when nothing was counted."""
        with self.db.reading() as conn:
            value = conn.execute(select(hourly_counters.c.sent).where(
                hourly_counters.c.kind == kind, hourly_counters.c.key == key, hourly_counters.c.hour == hour)).scalar()
        return int(value or 0)

    def pace_states(self, ips: Sequence[str]) -> dict[str, float]:
        """Each IP's pace state (its theoretical arrival time) where it has one."""
        if not ips:
            return {}
        names = {pace_row(ip): ip for ip in ips}
        with self.db.reading() as conn:
            rows = conn.execute(select(token_buckets.c.name, token_buckets.c.next_slot)
                                .where(token_buckets.c.name.in_(sorted(names))))
            return {names[name]: float(slot) for name, slot in rows}

    # -- the reservation ---------------------------------------------------------------

    def reserve(self, worker: str, ids: Sequence[int], scope: LockScope, schedule: ScheduleOf, decide: Decide,
                now: float, day: datetime.date, hour: int) -> list[Reservation]:
        """Lock, decide, write: one transaction (created rows that vanished are made again, once).

        ``schedule`` makes the SES rate schedule from the stored row's next slot and recent sends.
        """
        for _ in range(2):
            self.ensure(scope)
            try:
                result: list[Reservation] = self.db.run(
                    lambda conn: self._reserve(conn, worker, ids, scope, schedule, decide, now, day, hour))
                return result
            except MissingRow:
                self.forget()
        raise RuntimeError("counter rows vanish as soon as they are created")

    def _lock_row(self, conn: Connection, query: Select[Any]) -> Row[Any]:
        row = conn.execute(self.db.for_update(query)).first()
        if row is None:
            raise MissingRow
        return row

    def _reserve(self, conn: Connection, worker: str, ids: Sequence[int], scope: LockScope, schedule_of: ScheduleOf,
                 decide: Decide, now: float, day: datetime.date, hour: int) -> list[Reservation]:
        held = frozenset(conn.execute(self.db.for_update(select(messages.c.id).where(
            messages.c.id.in_(sorted(set(ids))), messages.c.state == "sending", messages.c.claimed_by == worker)
            .order_by(messages.c.id))).scalars())
        schedule = None
        if scope.schedule:
            bucket = self._lock_row(conn, select(token_buckets.c.next_slot, token_buckets.c.recent)
                                    .where(token_buckets.c.name == SES))
            schedule = schedule_of(float(bucket.next_slot), [float(t) for t in bucket.recent])
        paces = {ip: float(self._lock_row(conn, select(token_buckets.c.next_slot)
                                          .where(token_buckets.c.name == pace_row(ip))).next_slot)
                 for ip in scope.paces}
        daily = {(kind, key): int(self._lock_row(conn, select(daily_counters.c.sent).where(
            daily_counters.c.kind == kind, daily_counters.c.key == key, daily_counters.c.day == d)).sent)
            for kind, key, d in scope.daily}
        hourly = {key: int(self._lock_row(conn, select(hourly_counters.c.sent).where(
            hourly_counters.c.kind == kind, hourly_counters.c.key == key, hourly_counters.c.hour == h)).sent)
            for kind, key, h in scope.hourly}
        # The locks may have been waited for: the schedule and the record use the time we got them.
        # (``day`` and ``hour`` stay those of the rows locked; at worst a send straddling midnight
        # counts on the day it asked.)
        locked = Locked(max(now, self.db.clock()), day, hour, dict(daily), dict(hourly), held, schedule,
                        paces=dict(paces))
        answers = decide(locked)
        self._write(conn, ids, answers, locked)
        for kind, key, d in scope.daily:
            added = locked.daily[(kind, key)] - daily[(kind, key)]
            _bump(conn, daily_counters, kind, key, daily_counters.c.day == d, added)
        for kind, key, h in scope.hourly:
            _bump(conn, hourly_counters, kind, key, hourly_counters.c.hour == h, locked.hourly[key] - hourly[key])
        return answers

    def _write(self, conn: Connection, ids: Sequence[int], answers: list[Reservation], locked: Locked) -> None:
        """Each granted message's reservation, each deferred message's return to the queue, the schedule."""
        now, day, hour = locked.now, locked.day, locked.hour
        via_ses: list[int] = []
        for message_id, answer in zip(ids, answers, strict=True):
            if isinstance(answer, Granted):
                if answer.ip is None:
                    via_ses.append(message_id)
                else:
                    conn.execute(update(messages).where(messages.c.id == message_id).values(
                        transport="pmta", ip=answer.ip, reserved_day=day, reserved_hour=hour, reserved_at=now,
                        updated_at=now))
            elif isinstance(answer, Deferred) and not answer.kept:
                conn.execute(update(messages).where(messages.c.id == message_id).values(
                    state="queued", next_attempt_at=answer.until, claimed_by=None, claimed_until=None,
                    last_error=answer.reason, transport=None, ip=None, reserved_day=None, reserved_hour=None,
                    updated_at=now))
        if via_ses:
            conn.execute(update(messages).where(messages.c.id.in_(via_ses)).values(
                transport="ses", ip=None, reserved_day=day, reserved_hour=hour, reserved_at=now, updated_at=now))
        if locked.schedule_used and locked.schedule is not None:
            conn.execute(update(token_buckets).where(token_buckets.c.name == SES).values(
                next_slot=locked.schedule.next_slot, recent=locked.schedule.recent, updated_at=now))
        for ip in sorted(locked.paces_used):
            conn.execute(update(token_buckets).where(token_buckets.c.name == pace_row(ip)).values(
                next_slot=locked.paces[ip], updated_at=now))

    # -- after an attempt --------------------------------------------------------------

    def release(self, worker: str, message_id: int, *, retry_in: float, refund: bool, error: str,
                ses_region: str) -> bool:
        """Put a message that failed temporarily back in the queue ``retry_in`` seconds from now.

        ``refund``: True only when the provider certainly did not take it (connection failed
        before DATA was accepted; SES throttling or quota error); then its reservation's counters
        are given back, in the same transaction and the reservation's lock order.  False if
        ``worker`` no longer holds the claim.
        """

        def work(conn: Connection) -> bool:
            now = self.db.clock()
            row = conn.execute(self.db.for_update(select(messages).where(
                messages.c.id == message_id, messages.c.state == "sending", messages.c.claimed_by == worker))).first()
            if row is None:
                return False
            day, hour = row.reserved_day, row.reserved_hour
            if refund and day is not None:  # daily rows sorted, then hourly
                ip, tenant = row.ip, row.tenant
                on_day = daily_counters.c.day == day
                if ip:
                    _bump(conn, daily_counters, "ip", ip, on_day, -1)
                else:  # the account's count, then the tenant's share of it (a row only where shares are kept)
                    _bump(conn, daily_counters, SES, ses_region, on_day, -1)
                    _bump(conn, daily_counters, SHARE_KIND, tenant, on_day, -1)
                _bump(conn, daily_counters, "tenant", tenant, on_day, -1)
                if ip:
                    _bump(conn, hourly_counters, "ip", ip, hourly_counters.c.hour == hour, -1)
            conn.execute(update(messages).where(messages.c.id == message_id).values(
                state="queued", next_attempt_at=now + retry_in, claimed_by=None, claimed_until=None,
                attempts=messages.c.attempts + 1, last_error=error, transport=None, ip=None, reserved_day=None,
                reserved_hour=None, updated_at=now))
            return True

        return bool(self.db.run(work))


def pace_row(key: str) -> str:
    """The ``token_buckets`` row of a pace (an IP's, or a tenant's quota pace): its theoretical arrival time
    in ``next_slot``.  A name over the column's 64 characters (a long tenant name) keeps its start and a
    digest of the whole, so it stays one row per pace."""
    name = key if key.startswith(QUOTA_PACE) else f"pace:{key}"
    if len(name) <= 64:
        return name
    return f"{name[:47]}~{hashlib.sha256(name.encode()).hexdigest()[:16]}"


def _bump(conn: Connection, table: Table, kind: str, key: str, when: ColumnElement[bool], by: int) -> None:
    """Add ``by`` to a counter row of ``table`` (daily or hourly: the same kind, key, sent columns)."""
    if not by:
        return
    cond = [table.c.kind == kind, table.c.key == key, when]
    if by < 0:
        cond.append(table.c.sent >= -by)  # a refund never takes a counter below zero
    conn.execute(update(table).where(*cond).values(sent=table.c.sent + by))
