"""Reserve a send before making it: the gates that make "warmup is law" hold across workers.

A worker that holds a claimed message calls ``Pacer.reserve``.  The pacer reads the fleet -- the
model's route for each message's (tenant, stream) (:mod:`mailplane.model.routes`), each IP's
warmup cap for the day, any override the reputation side imposes -- into
:class:`~mailplane.sender.core.gates.RoutePlan` s; the store's counter repository
(:mod:`mailplane.sender.db.counters`) locks every counter those plans touch, hands them to the pure
decision (:func:`mailplane.sender.core.gates.decide`) and writes what it changed, in ONE transaction,
so no interleaving of workers, threads or instances can push a counter past its cap (listmonk's
per-worker counters overshoot by the number of workers; ours are shared rows).

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
import functools
from collections.abc import Callable, Collection, Sequence

from mailplane.model.addresses import ip_key
from mailplane.model.names import vmta_name
from mailplane.model.routes import tenant_routes
from mailplane.model.stack import Fleet
from mailplane.model.tenant import Ip, Tenant
from mailplane.sender.core.gates import (
    DEFAULT_CATCH_UP,
    ELSEWHERE_RETRY,
    PRIORITY,
    SES,
    SHARE_KIND,
    Ask,
    Deferred,
    Granted,
    IpGate,
    IpOverride,
    Locked,
    LostClaim,
    Pace,
    RateSchedule,
    Reservation,
    RoutePlan,
    SesLimits,
    apply_override,
    decide,
    quota_pace_key,
)
from mailplane.sender.core.limits import AccountLimits, Limits, effective
from mailplane.sender.core.messages import Message
from mailplane.sender.core.pauses import InForce
from mailplane.sender.db.counters import DailyKey, HourlyKey, LockScope
from mailplane.sender.db.store import Store
from mailplane.sender.delivery.deployed import UNKNOWN, DeployedConfigs
from mailplane.warmup.status import ip_status

__all__ = ["DEFAULT_CATCH_UP", "ELSEWHERE_RETRY", "Deferred", "Granted", "IpOverride", "LostClaim", "Overrides",
           "Pacer", "RateSchedule", "Reservation", "apply_override"]

Overrides = Callable[[str, str, datetime.date], IpOverride | None]
"""(tenant, IP address, day) -> the override in force, or None."""


class Pacer:
    """The send gates of one fleet over one store; shared by all the workers of an instance."""

    def __init__(self, store: Store, fleet: Fleet, *, overrides: Overrides | None = None,
                 catch_up: float = DEFAULT_CATCH_UP, hosts: Collection[str] | None = None,
                 deployed: DeployedConfigs | None = None):
        self.store = store
        self.fleet = fleet
        self.overrides = overrides
        self.deployed = deployed
        """What PowerMTA runs on each host (its VMTAs and their DKIM domains); None: not known, not judged."""
        self.catch_up = catch_up
        self.hosts = frozenset(hosts) if hosts is not None else None
        """The MTA hosts this instance submits to (PowerMTA accepts only its own host's sender);
        None: every host."""
        self.ses = fleet.settings.ses
        self.ses_shares: dict[str, int] = {t.name: t.ses.share for t in fleet.tenants
                                           if any(r.transport == "ses" for r in tenant_routes(t))}
        """The weight of each tenant with a stream through SES: they share the account's daily quota."""
        self.account: AccountLimits | None = None
        """What SES last said the account allows (``Service.refresh_account``); None: fleet.yaml's alone."""

    def ses_limits(self, now: float | None = None) -> SesLimits:
        """The SES account's daily quota as the gates hold it at ``now``: the tenants' shares and the day's progress."""
        now = self.store.clock() if now is None else now
        return SesLimits(self.ses.region, self.limits().daily_quota, self.ses_shares, _day_fraction(now))

    def limits(self) -> Limits:
        """The account's limits the gates enforce: the lower of fleet.yaml's and the account's."""
        return effective(self.ses.daily_quota, self.ses.max_send_rate, self.account)

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

    def ip_gate(self, tenant: Tenant, ip: Ip, day: datetime.date, in_force: InForce | None = None) -> IpGate:
        """The IP's caps on ``day``: its plan's, as held, frozen or paused by an override; and its pause."""
        override = self.overrides(tenant.name, ip.address, day) if self.overrides else None
        status = ip_status(tenant, ip, self.fleet.plan_for(ip), day, override.held_days if override else 0)
        daily, hourly = apply_override(status.daily_cap, status.hourly_cap, override)
        plan = self.fleet.plan_for(ip)
        pace = Pace.of(hourly, plan.burst_seconds) if plan is not None else None
        verdict = self.deployed.about(ip.host, vmta_name(tenant.name, ip.address)) if self.deployed else UNKNOWN
        return IpGate(ip.address, daily, hourly, in_force.ip(ip_key(ip.address)) if in_force else None,
                      missing=verdict.missing, signs=verdict.domains, pace=pace)

    def plan(self, tenant_name: str, stream: str, day: datetime.date, in_force: InForce | None = None) -> RoutePlan:
        """What a (tenant, stream) is subject to on ``day``, on this instance, under the pauses in force."""
        tenant = self.fleet.tenant(tenant_name)
        gates = tuple(self.ip_gate(tenant, ip, day, in_force) for ip in self.local_ips_for(tenant, stream))
        return RoutePlan(tenant.name, tenant.daily_quota, gates,
                         elsewhere=not gates and bool(self.ips_for(tenant, stream)),
                         pause=in_force.route(tenant.name, stream) if in_force else None,
                         quota_pace=Pace.daily(tenant.daily_quota, tenant.quota_burst_seconds))

    def scope(self, plans: Collection[RoutePlan], day: datetime.date, hour: int) -> LockScope:
        """The counter rows a batch with these plans locks, sorted: the lock order."""
        daily: set[DailyKey] = set()
        hourly: set[HourlyKey] = set()
        paces: set[str] = set()
        via_ses = False
        for plan in plans:
            if plan.elsewhere:
                continue
            daily.add(("tenant", plan.tenant, day))
            daily.update(("ip", g.address, day) for g in plan.gates)
            hourly.update(("ip", g.address, hour) for g in plan.gates)
            paces.update(g.address for g in plan.gates if g.pace is not None)
            if plan.quota_pace is not None:
                paces.add(quota_pace_key(plan.tenant))
            if not plan.gates:
                via_ses = True
                daily.add((SES, self.ses.region, day))
                daily.update((SHARE_KIND, tenant, day) for tenant in self.ses_shares)
        return LockScope(tuple(sorted(daily, key=str)), tuple(sorted(hourly)), via_ses, tuple(sorted(paces)))

    # -- the reservation ------------------------------------------------------------------

    def reserve(self, worker: str, message: Message, *, keep_within: float = 0.0) -> Reservation:
        """Reserve ``message``'s send now, or put it back in the queue until it can go."""
        return self.reserve_many(worker, [message], keep_within=keep_within)[0]

    def reserve_many(self, worker: str, batch: Sequence[Message], *, keep_within: float = 0.0) -> list[Reservation]:
        """Reserve a batch in ONE transaction: the same gates as one by one, a fraction of the commits.

        The batch is decided in order against counters read once under lock and updated in
        memory, so it grants exactly what the same messages reserved one by one would.
        ``keep_within``: a message whose SES slot is within that many seconds is granted that slot
        (``Granted.at``: the worker sends it then), so slots go in the queue's order; one further is
        due again when its slot comes within reach.  A message an IP's pace lets go within that
        many seconds is not put back in the queue: the worker keeps its claim, waits and asks again.
        """
        if not batch:
            return []
        now = self.store.clock()
        day = datetime.datetime.fromtimestamp(now, datetime.UTC).date()
        hour = int(now // 3600)
        in_force = self.store.pauses.in_force()
        plans: dict[tuple[str, str], RoutePlan] = {}
        for message in batch:
            key = (message.tenant, message.stream)
            if key not in plans:
                plans[key] = self.plan(message.tenant, message.stream, day, in_force)
        asks = [Ask(m.id, plans[(m.tenant, m.stream)], in_force.domain(m.tenant, _domain(m.to_addr)),
                    _domain(m.from_addr), PRIORITY.get(m.stream, len(PRIORITY))) for m in batch]
        limits = self.limits()
        answers = self.store.counters.reserve(
            worker, [m.id for m in batch], self.scope(plans.values(), day, hour),
            functools.partial(self._schedule, limits.max_send_rate),
            functools.partial(self._decide, asks, self.ses_limits(now),
                              keep_within=keep_within), now, day, hour)
        served = [m.turn for m, answer in zip(batch, answers, strict=True) if isinstance(answer, Granted)]
        if served:  # after the reservation's commit, in a transaction of its own: no lock held across tenants
            self.store.turns.served(max(served))
        return answers

    def _schedule(self, rate: float, next_slot: float, recent: list[float]) -> RateSchedule:
        return RateSchedule(rate, next_slot, recent, self.catch_up)

    def _decide(self, asks: list[Ask], limits: SesLimits, locked: Locked, *, keep_within: float) -> list[Reservation]:
        return decide(asks, locked, limits, keep_within)

    # -- after an attempt -----------------------------------------------------------------

    def release(self, worker: str, message_id: int, *, retry_in: float, refund: bool, error: str) -> bool:
        """Put a message that failed temporarily back in the queue ``retry_in`` seconds from now, giving its
        reservation back when ``refund`` (see the module docstring); False if ``worker`` lost the claim."""
        return self.store.counters.release(worker, message_id, retry_in=retry_in, refund=refund, error=error,
                                           ses_region=self.ses.region)


def _day_fraction(now: float) -> float:
    return (now % 86400.0) / 86400.0


def _domain(address: str) -> str:
    return address.rpartition("@")[2].lower()
