"""Reserve a send before making it: the gates that make "warmup is law" hold across workers.

A worker that holds a claimed message calls ``Pacer.reserve``.  In ONE transaction it reads and
locks every counter the send is subject to, decides, increments them and records the reservation
on the message, so no interleaving of workers, threads or instances can push a counter past its
cap (listmonk's per-worker counters overshoot by the number of workers; ours are shared rows):

* the model's route for the message's (tenant, stream) says PowerMTA or SES
  (:mod:`mailplane.model.routes`); through PowerMTA: among the route's IPs, the one
  with the most remaining warmup quota today (its ``daily_cap`` from ``ip_status``), and room
  under its hourly ceiling;
* through SES: the account's daily quota and its max send rate, one
  rate schedule row shared by everyone (not one per worker; ``RateSchedule``);
* always the tenant's own ``daily_quota``.

What cannot go now is not dropped: the message goes back to the queue with ``next_attempt_at``
at tomorrow 00:00 UTC (a daily cap), the next hour (an hourly ceiling) or the SES rate's next
slot.  Days are UTC days; SES's quota is a rolling 24 hours, so counting it per UTC day
can let up to twice the quota through in the 24 hours around midnight, and SES then answers
``Daily message quota exceeded``, which the transport treats as retryable (and refunds).

Refund rule (``Pacer.release``): a reservation is given back only when the provider certainly did
not take the message -- the connection failed before the DATA command was accepted, or SES
refused the call with a throttling / quota error.  Everything else keeps counting: a permanent
failure (5xx) was still a message the IP offered to a mailbox provider, and a failure after DATA
(a 4xx, a timeout awaiting the final reply) may have been delivered.  The retry reserves again,
so a cap can be under-used, never overshot.  The rate slot is never refunded: it stands for a
moment in time that has passed.  The same holds after a crash: a re-claimed message reserves
again, and its first reservation stays counted.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import ColumnElement, Connection, Row, Select, Table, select, update

from mailplane.model.names import vmta_name
from mailplane.model.stack import Fleet
from mailplane.model.tenant import Ip, Tenant
from mailplane.sender.store import Message, Store, daily_counters, hourly_counters, messages, token_buckets
from mailplane.warmup.status import ip_status

SES_BUCKET = "ses"
ELSEWHERE_RETRY = 60.0
"""Seconds a message this instance cannot route waits before any instance claims it again."""
DEFAULT_CATCH_UP = 0.25
"""Seconds of lateness the SES schedule makes up (see ``RateSchedule``)."""


@dataclass
class RateSchedule:
    """The SES account's send rate as a schedule of slots, one row every worker shares.

    Sends are spaced ``1/rate`` apart (slot ``next_slot``), and never more than ``floor(rate)``
    fall in any 1-second window (``recent`` keeps the last ones' times).  A plain token bucket
    holding one token does the first but loses every moment a worker is late to the token, a
    few milliseconds a send: 3 to 5 % of a 14/s rate.  Here the slots keep their places, so a
    late send lets the next ones follow sooner -- by up to ``catch_up`` seconds of slots, and
    never past the 1-second window -- and the achieved rate stays at the account's rate.
    """

    rate: float
    next_slot: float
    recent: list[float]
    catch_up: float = DEFAULT_CATCH_UP

    @property
    def window(self) -> int:
        return max(1, int(self.rate))

    def earliest(self) -> float:
        """When the next send may go."""
        start = self.next_slot
        if len(self.recent) >= self.window:
            start = max(start, self.recent[-self.window] + 1.0)
        return start

    def take(self, now: float) -> None:
        """Record a send at ``now`` (>= ``earliest()``)."""
        self.next_slot = max(self.next_slot, now - self.catch_up) + 1.0 / self.rate
        self.recent = [*self.recent, now][-self.window:]


@dataclass(frozen=True)
class IpOverride:
    """What the reputation module imposes on an IP: a held plan, a frozen or lowered cap, a pause."""

    held_days: int = 0
    daily_cap: int | None = None
    """Replaces the plan's cap for the day when given (e.g. frozen at the value it had)."""
    hourly_cap: int | None = None
    paused: bool = False


def apply_override(daily: int | None, hourly: int | None,
                   override: IpOverride | None) -> tuple[int | None, int | None]:
    """The caps an override leaves: its own caps replace the plan's, and a pause wins over both."""
    if override is None:
        return daily, hourly
    if override.daily_cap is not None:
        daily = override.daily_cap
    if override.hourly_cap is not None:
        hourly = override.hourly_cap
    if override.paused:
        daily = hourly = 0
    return daily, hourly


Overrides = Callable[[str, str, datetime.date], IpOverride | None]
"""(tenant, IP address, day) -> the override in force, or None."""


@dataclass(frozen=True)
class Granted:
    transport: Literal["ses", "pmta"]
    ip: str | None
    vmta: str | None
    """The virtual MTA named in ``X-Virtual-MTA`` (PowerMTA only)."""
    day: datetime.date


@dataclass(frozen=True)
class Deferred:
    until: float
    """Epoch seconds at which the message is due again (it is back in the queue)."""
    reason: str
    kept: bool = False
    """The worker still holds the claim (``keep_within``): it waits until ``until`` and asks again."""


@dataclass(frozen=True)
class LostClaim:
    """The worker's lease ran out and someone else holds the message: do not send it."""


Reservation = Granted | Deferred | LostClaim


@dataclass(frozen=True)
class _IpGate:
    address: str
    daily_cap: int | None
    hourly_cap: int | None


@dataclass(frozen=True)
class _Plan:
    """What one (tenant, stream) of a batch is subject to; computed once per batch."""

    tenant: Tenant
    gates: list[_IpGate]
    elsewhere: bool = False
    """The stream's IPs are all on other instances' hosts: not this instance's to send (nor SES's)."""


class _MissingRow(Exception):
    """A counter row this process created is gone: counting without it would count nothing."""


def _midnight_after(day: datetime.date) -> float:
    nxt = datetime.datetime.combine(day + datetime.timedelta(days=1), datetime.time(), datetime.UTC)
    return nxt.timestamp()


class Pacer:
    """The send gates of one fleet over one store; shared by all the workers of an instance."""

    def __init__(self, store: Store, fleet: Fleet, *, overrides: Overrides | None = None,
                 catch_up: float = DEFAULT_CATCH_UP, hosts: Collection[str] | None = None):
        self.store = store
        self.fleet = fleet
        self.overrides = overrides
        self.catch_up = catch_up
        self.hosts = frozenset(hosts) if hosts is not None else None
        """The MTA hosts this instance submits to (PowerMTA accepts only its own host's sender);
        None: every host."""
        self.ses = fleet.settings.ses

    # -- what applies to a message (pure) -------------------------------------------------

    def ips_for(self, tenant: Tenant, stream: str) -> list[Ip]:
        """The IPs of the (tenant, stream)'s route (:mod:`mailplane.model.routes`); empty: it goes by SES."""
        route = self.fleet.routes.get((tenant.name, stream))
        return list(route.ips) if route else []  # a stream the tenant dropped since the mail was queued

    def local_ips_for(self, tenant: Tenant, stream: str) -> list[Ip]:
        """Those of ``ips_for`` on this instance's hosts."""
        return [ip for ip in self.ips_for(tenant, stream) if self.hosts is None or ip.host in self.hosts]

    def routes(self) -> list[tuple[str, str]] | None:
        """The (tenant, stream) pairs this instance can deliver: through SES (no IP carries the
        stream) or through an IP on its hosts.  None when it serves every host."""
        if self.hosts is None:
            return None
        return [(t.name, stream) for t in self.fleet.tenants for stream in t.streams
                if not self.ips_for(t, stream) or self.local_ips_for(t, stream)]

    def ip_gate(self, tenant: Tenant, ip: Ip, day: datetime.date) -> _IpGate:
        """The IP's caps on ``day``: its plan's, as held, frozen or paused by an override."""
        override = self.overrides(tenant.name, ip.address, day) if self.overrides else None
        status = ip_status(tenant, ip, self.fleet.plan_for(ip), day, override.held_days if override else 0)
        daily, hourly = status.daily_cap, status.hourly_cap
        daily, hourly = apply_override(daily, hourly, override)
        return _IpGate(ip.address, daily, hourly)

    # -- the reservation (one transaction) ------------------------------------------------

    def reserve(self, worker: str, message: Message, *, keep_within: float = 0.0) -> Reservation:
        """Reserve ``message``'s send now, or put it back in the queue until it can go."""
        return self.reserve_many(worker, [message], keep_within=keep_within)[0]

    def reserve_many(self, worker: str, batch: Sequence[Message], *, keep_within: float = 0.0) -> list[Reservation]:
        """Reserve a batch in ONE transaction: the same gates as one by one, a fraction of the commits.

        The batch is decided in order against counters read once under lock and updated in
        memory, so it grants exactly what the same messages reserved one by one would.
        ``keep_within``: a message that could go within that many seconds (the SES rate's next
        token, typically) is not put back in the queue; the worker keeps its claim, waits and
        asks again -- at 14 messages a second a trip through the queue costs more than the wait.
        """
        if not batch:
            return []
        now = self.store.clock()
        day = datetime.datetime.fromtimestamp(now, datetime.UTC).date()
        hour = int(now // 3600)
        plans: list[_Plan] = []
        cache: dict[tuple[str, str], _Plan] = {}
        for message in batch:
            key = (message.tenant, message.stream)
            if key not in cache:
                tenant = self.fleet.tenant(message.tenant)
                gates = [self.ip_gate(tenant, ip, day) for ip in self.local_ips_for(tenant, message.stream)]
                cache[key] = _Plan(tenant, gates, elsewhere=not gates and bool(self.ips_for(tenant, message.stream)))
            plans.append(cache[key])
        daily: set[tuple[str, str, datetime.date]] = set()
        hourly: set[tuple[str, str, int]] = set()
        via_ses = False
        for plan in {id(p): p for p in plans}.values():
            if plan.elsewhere:
                continue
            daily.add(("tenant", plan.tenant.name, day))
            daily.update(("ip", g.address, day) for g in plan.gates)
            hourly.update(("ip", g.address, hour) for g in plan.gates)
            if not plan.gates:
                via_ses = True
                daily.add(("ses", self.ses.region, day))
        daily_keys = sorted(daily, key=str)
        hourly_keys = sorted(hourly)

        def work(conn: Connection) -> list[Reservation]:
            return self._reserve(conn, worker, batch, plans, now, day, hour, via_ses, daily_keys, hourly_keys,
                                 keep_within)

        for _ in range(2):
            self.store.ensure_rows(daily_keys, hourly_keys)
            if via_ses:
                self.store.ensure_bucket(SES_BUCKET)
            try:
                return self.store.run(work)  # type: ignore[no-any-return]
            except _MissingRow:  # deleted since this process created it (old days pruned): create again
                self.store.forget_rows()
        raise RuntimeError("counter rows vanish as soon as they are created")

    def _lock(self, conn: Connection, query: Select[Any]) -> Row[Any] | None:
        return conn.execute(self.store.for_update(query)).first()

    def _reserve(self, conn: Connection, worker: str, batch: Sequence[Message], plans: list[_Plan], now: float,
                 day: datetime.date, hour: int, via_ses: bool, daily_keys: list[tuple[str, str, datetime.date]],
                 hourly_keys: list[tuple[str, str, int]], keep_within: float) -> list[Reservation]:
        # Lock order: messages (by id), bucket, daily rows, hourly rows (each sorted) -- the same everywhere.
        ids = sorted({m.id for m in batch})
        held = set(conn.execute(self.store.for_update(select(messages.c.id).where(
            messages.c.id.in_(ids), messages.c.state == "sending", messages.c.claimed_by == worker)
            .order_by(messages.c.id))).scalars())
        bucket = None
        if via_ses:
            bucket = self._lock(conn, select(token_buckets.c.next_slot, token_buckets.c.recent)
                                .where(token_buckets.c.name == SES_BUCKET))
            if bucket is None:
                raise _MissingRow
        sent: dict[tuple[str, str], int] = {}
        for kind, key, d in daily_keys:
            row = self._lock(conn, select(daily_counters.c.sent).where(
                daily_counters.c.kind == kind, daily_counters.c.key == key, daily_counters.c.day == d))
            if row is None:
                raise _MissingRow
            sent[(kind, key)] = int(row.sent)
        hourly: dict[str, int] = {}
        for _kind, key, h in hourly_keys:
            row = self._lock(conn, select(hourly_counters.c.sent).where(
                hourly_counters.c.kind == "ip", hourly_counters.c.key == key, hourly_counters.c.hour == h))
            if row is None:
                raise _MissingRow
            hourly[key] = int(row.sent)
        start = dict(sent), dict(hourly)

        # The locks may have been waited for: the bucket and the record use the time we got them.
        # (``day`` and ``hour`` stay those of the rows locked; at worst a send straddling midnight
        # counts on the day it asked.)
        now = max(now, self.store.clock())
        tomorrow = _midnight_after(day)
        schedule = None
        if bucket is not None:
            schedule = RateSchedule(self.ses.max_send_rate, float(bucket.next_slot),
                                    [float(t) for t in bucket.recent], self.catch_up)
        bucket_used = False
        out: list[Reservation] = []
        granted: dict[str, list[int]] = {"pmta": [], "ses": []}
        for message, plan in zip(batch, plans, strict=True):
            if message.id not in held:
                out.append(LostClaim())
                continue
            if plan.elsewhere:  # claimed under an older fleet: back to the queue for another instance
                out.append(self._defer(conn, message, now, now + ELSEWHERE_RETRY,
                                       "no IP for this stream on this instance's MTA hosts"))
                continue
            tenant = plan.tenant
            quota = tenant.daily_quota
            if quota is not None and sent[("tenant", tenant.name)] >= quota:
                out.append(self._defer(conn, message, now, tomorrow,
                                       f"tenant {tenant.name} daily quota {quota} reached", keep_within))
                continue
            ip: str | None = None
            if plan.gates:
                def remaining(g: _IpGate) -> float:
                    return float("inf") if g.daily_cap is None else g.daily_cap - sent[("ip", g.address)]

                open_today = [g for g in plan.gates if remaining(g) > 0]
                if not open_today:
                    out.append(self._defer(conn, message, now, tomorrow, "every IP reached its warmup cap for the day",
                                           keep_within))
                    continue
                open_now = [g for g in open_today if g.hourly_cap is None or hourly[g.address] < g.hourly_cap]
                if not open_now:
                    out.append(self._defer(conn, message, now, (hour + 1) * 3600.0,
                                           "every IP reached its hourly ceiling", keep_within))
                    continue
                best = min(open_now, key=lambda g: (-remaining(g), sent[("ip", g.address)], g.address))
                ip = best.address
                sent[("ip", ip)] += 1
                hourly[ip] += 1
            else:
                if sent[("ses", self.ses.region)] >= self.ses.daily_quota:
                    out.append(self._defer(conn, message, now, tomorrow,
                                           f"SES daily quota {self.ses.daily_quota} reached", keep_within))
                    continue
                assert schedule is not None
                if now < schedule.earliest():
                    out.append(self._defer(conn, message, now, schedule.earliest(), "SES max send rate",
                                           keep_within))
                    continue
                schedule.take(now)
                bucket_used = True
                sent[("ses", self.ses.region)] += 1
            sent[("tenant", tenant.name)] += 1
            granted["pmta" if ip else "ses"].append(message.id)
            if ip:
                conn.execute(update(messages).where(messages.c.id == message.id).values(
                    transport="pmta", ip=ip, reserved_day=day, reserved_hour=hour, reserved_at=now, updated_at=now))
            out.append(Granted("pmta" if ip else "ses", ip, vmta_name(tenant.name, ip) if ip else None, day))
        if granted["ses"]:
            conn.execute(update(messages).where(messages.c.id.in_(granted["ses"])).values(
                transport="ses", ip=None, reserved_day=day, reserved_hour=hour, reserved_at=now, updated_at=now))
        if bucket_used:
            assert schedule is not None
            conn.execute(update(token_buckets).where(token_buckets.c.name == SES_BUCKET)
                         .values(next_slot=schedule.next_slot, recent=schedule.recent, updated_at=now))
        for kind, key, d in daily_keys:
            added = sent[(kind, key)] - start[0][(kind, key)]
            if added:
                self._bump(conn, daily_counters, kind, key, daily_counters.c.day == d, added)
        for _kind, key, h in hourly_keys:
            added = hourly[key] - start[1][key]
            if added:
                self._bump(conn, hourly_counters, "ip", key, hourly_counters.c.hour == h, added)
        return out

    @staticmethod
    def _bump(conn: Connection, table: Table, kind: str, key: str, when: ColumnElement[bool], by: int = 1) -> None:
        """Add ``by`` to a counter row of ``table`` (daily or hourly: the same kind, key, sent columns)."""
        cond = [table.c.kind == kind, table.c.key == key, when]
        if by < 0:
            cond.append(table.c.sent >= -by)  # a refund never takes a counter below zero
        conn.execute(update(table).where(*cond).values(sent=table.c.sent + by))

    def _defer(self, conn: Connection, message: Message, now: float, until: float, reason: str,
               keep_within: float = 0.0) -> Deferred:
        if until - now <= keep_within:
            return Deferred(until, reason, kept=True)
        conn.execute(update(messages).where(messages.c.id == message.id).values(
            state="queued", next_attempt_at=until, claimed_by=None, claimed_until=None, last_error=reason,
            transport=None, ip=None, reserved_day=None, reserved_hour=None, updated_at=now))
        return Deferred(until, reason)

    # -- after an attempt -----------------------------------------------------------------

    def release(self, worker: str, message_id: int, *, retry_in: float, refund: bool, error: str) -> bool:
        """Put a message that failed temporarily back in the queue ``retry_in`` seconds from now.

        ``refund``: True only when the provider certainly did not take it (connection failed
        before DATA was accepted; SES throttling or quota error); then its reservation's counters
        are given back, in the same transaction.  False if ``worker`` no longer holds the claim.
        """

        def work(conn: Connection) -> bool:
            now = self.store.clock()
            row = self._lock(conn, select(messages).where(
                messages.c.id == message_id, messages.c.state == "sending", messages.c.claimed_by == worker))
            if row is None:
                return False
            day, hour = row.reserved_day, row.reserved_hour
            if refund and day is not None:  # in the reservation's lock order: daily rows sorted, then hourly
                ip, tenant = row.ip, row.tenant
                if ip:
                    self._bump(conn, daily_counters, "ip", ip, daily_counters.c.day == day, -1)
                else:
                    self._bump(conn, daily_counters, "ses", self.ses.region, daily_counters.c.day == day, -1)
                self._bump(conn, daily_counters, "tenant", tenant, daily_counters.c.day == day, -1)
                if ip:
                    self._bump(conn, hourly_counters, "ip", ip, hourly_counters.c.hour == hour, -1)
            conn.execute(update(messages).where(messages.c.id == message_id).values(
                state="queued", next_attempt_at=now + retry_in, claimed_by=None, claimed_until=None,
                attempts=messages.c.attempts + 1, last_error=error, transport=None, ip=None, reserved_day=None,
                reserved_hour=None, updated_at=now))
            return True

        return self.store.run(work)
