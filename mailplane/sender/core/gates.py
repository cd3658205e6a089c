"""The gate decision: may this send go now, on which IP, and what does it reserve -- pure computation.

The store locks every counter a batch of sends is subject to and hands their values here as
:class:`Locked`; :func:`decide` answers each message in order, updating those values in memory,
so a batch grants exactly what the same messages asked one by one would.  Nothing here reads a
clock, a database or the fleet: the pacer (:mod:`mailplane.sender.delivery.pacing`) turns the fleet into
:class:`RoutePlan` s, the store's counter repository (:mod:`mailplane.sender.db.counters`) writes what
the decision changed.  So the rules of "warmup is law" can be tested, and property-tested, with
plain values.

The gates, per message:

* the worker must still hold its claim (else :class:`LostClaim`);
* a stream whose IPs are all on other instances' hosts goes back to the queue for them;
* a pause in force (:class:`Pause`: an operator's, or the tenant guard's) on the tenant, the stream
  or the recipient's domain keeps the message waiting; a paused IP is passed over;
* through PowerMTA, an IP whose VMTA the host's PowerMTA does not run (or runs without a DKIM key
  for the From domain) is passed over too (:attr:`IpGate.missing`): PowerMTA would refuse the mail,
  or send it unsigned;
* the tenant's own ``daily_quota``;
* through PowerMTA: among the route's IPs, one with warmup quota left today, room under its
  hourly ceiling and its :class:`Pace` ready -- the one with the most left, then the least used,
  then the lowest address.  The pace spends the hourly ceiling as a steady rate (one send every
  ``3600 / ceiling`` seconds, a burst of ``burst_seconds``' worth at once: GCRA), so the ceiling
  never leaves in one burst at the top of the hour; the clock-hour count still caps it exactly;
* through SES: the account's daily quota and its send rate (:class:`RateSchedule`).

What cannot go now is deferred: to tomorrow 00:00 UTC (a daily cap), the next hour (an hourly
ceiling), the IP's next paced send or the SES rate's next slot; ``kept`` when that is within
``keep_within`` seconds (the worker waits rather than sending the message back through the queue).

**Priority.** :func:`decide` answers a batch's transactional mail before its marketing mail
(:data:`PRIORITY`), and the store claims transactional mail first, so a password reset takes the
next send its IPs earn rather than waiting behind a campaign; caps stay law, priority only chooses
who spends them.  Messages a batch defers for the same route's pace are spread over its next sends
(one ``pace_step`` apart, transactional first) instead of all coming back at the same moment.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from mailplane.model.names import dkim_key_covers, vmta_name

SES = "ses"
"""Counter kind, and rate schedule name, of the SES account."""
ELSEWHERE_RETRY = 60.0
"""Seconds a message this instance cannot route waits before any instance claims it again."""
PAUSED = "paused: "
"""How the reason of a message waiting under a pause begins (a resume finds them by it)."""
PAUSE_RECHECK = 60.0
"""Seconds a paused message waits before it is asked about again: a resume takes effect within this."""
NOT_DEPLOYED = "not deployed: "
"""How the reason of a message waiting for PowerMTA to get its VMTA begins."""
DEPLOY_RECHECK = 60.0
"""Seconds a message waiting for a VMTA to be deployed waits before it is asked about again."""
PACING = "pacing: "
"""How the reason of a message waiting for its route's next paced send begins."""
PRIORITY = {"transactional": 0, "marketing": 1}
"""Which stream's mail is answered first (lower first); a stream not listed goes last."""
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
class Pace:
    """An IP's hourly ceiling as a steady rate (the generic cell rate algorithm over one shared time).

    The state is the *theoretical arrival time* ``tat``: a send may go at ``now`` when
    ``now >= tat - (burst - 1) * interval``, and moves it to ``max(tat, now) + interval``.  An idle
    IP starts with ``burst`` sends at once, then one every ``interval``; in any 60 s no more than
    ``burst + 60 / interval`` leave, which with the default burst (60 s' worth) is twice the even
    rate.  One stored number per IP, locked with the other counters, so it is exact across workers
    and instances.  Never refunded: like the SES slot it stands for a moment that has passed.
    """

    interval: float
    burst: int

    @classmethod
    def of(cls, hourly_cap: int | None, burst_seconds: float) -> Pace | None:
        """The pace of an hourly ceiling; None for none (an IP declared warm) or 0 (it may not send)."""
        if not hourly_cap or hourly_cap <= 0:
            return None
        return cls(3600.0 / hourly_cap, max(1, math.ceil(hourly_cap * burst_seconds / 3600.0)))

    @classmethod
    def daily(cls, daily_cap: int | None, burst_seconds: float) -> Pace | None:
        """The pace of a daily quota spread over the day; None for none."""
        if not daily_cap or daily_cap <= 0:
            return None
        return cls(86400.0 / daily_cap, max(1, math.ceil(daily_cap * burst_seconds / 86400.0)))

    def ready(self, tat: float) -> float:
        """When the next send may go."""
        return tat - (self.burst - 1) * self.interval

    def after(self, tat: float, now: float) -> float:
        """The state after a send at ``now``."""
        return max(tat, now) + self.interval

    def in_hand(self, tat: float, now: float) -> int:
        """How many sends may go at ``now`` one after the other (0 to ``burst``): the quota API's view."""
        ahead = max(tat, now) - now  # how far the state runs ahead of the clock
        return max(0, min(self.burst, self.burst - math.ceil(ahead / self.interval - 1e-9)))


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


@dataclass(frozen=True)
class Granted:
    transport: Literal["ses", "pmta"]
    ip: str | None
    vmta: str | None
    """The virtual MTA named in ``X-Virtual-MTA`` (PowerMTA only)."""
    day: datetime.date
    at: float | None = None
    """A slot booked a moment ahead (the SES rate's next, within ``keep_within``): send not before it."""


@dataclass(frozen=True)
class Deferred:
    until: float
    """Epoch seconds at which the message is due again (it is back in the queue)."""
    reason: str
    kept: bool = False
    """The worker still holds the claim (``keep_within``): it waits until ``until`` and asks again."""
    pace_step: float = 0.0
    """For a wait on the route's pace (or the SES rate): its steady interval, by which a batch spreads such
    waits."""
    lane: str | None = None
    """The pace waited for when it is not the route's (a tenant's quota pace): what a batch spreads it along."""


@dataclass(frozen=True)
class LostClaim:
    """The worker's lease ran out and someone else holds the message: do not send it."""


Reservation = Granted | Deferred | LostClaim


@dataclass(frozen=True)
class Pause:
    """Sending stopped on a scope until ``until`` (epoch seconds; None: until resumed), and why.

    Queued mail waits under a pause; nothing is dropped.
    """

    reason: str
    until: float | None = None

    def wait(self, now: float) -> float:
        """When a message under this pause is due again: its end, or the next look, whichever is first."""
        recheck = now + PAUSE_RECHECK
        return recheck if self.until is None else min(self.until, recheck)


@dataclass(frozen=True)
class IpGate:
    """One IP of a route and its caps for the day (the plan's, as an override leaves them)."""

    address: str
    daily_cap: int | None
    hourly_cap: int | None
    pause: Pause | None = None
    """A pause of this IP in force: it is passed over."""
    missing: str | None = None
    """Why the host's PowerMTA cannot take the IP's mail now (its VMTA is not deployed there): passed over."""
    signs: frozenset[str] | None = None
    """The domains the deployed VMTA has a DKIM key for; None: not known (no deployed record)."""
    pace: Pace | None = None
    """The steady rate the hourly ceiling is spent at; None: no ceiling to pace."""

    def takes(self, from_domain: str) -> bool:
        """Whether mail From ``from_domain`` may be handed to this IP's VMTA as deployed."""
        return self.missing is None and (self.signs is None or dkim_key_covers(self.signs, from_domain))


@dataclass(frozen=True)
class RoutePlan:
    """What one (tenant, stream) of a batch is subject to; computed once per batch by the pacer."""

    tenant: str
    daily_quota: int | None
    gates: tuple[IpGate, ...] = ()
    """The route's IPs on this instance's hosts; none: the stream goes by SES."""
    elsewhere: bool = False
    """The stream's IPs are all on other instances' hosts: not this instance's to send (nor SES's)."""
    pause: Pause | None = None
    """A pause of the tenant or of this stream in force: its mail waits."""
    quota_pace: Pace | None = None
    """The tenant's daily quota as a steady rate (``quota_burst_seconds``): marketing waits for it."""


QUOTA_PACE = "quota:"
"""Prefix of a tenant's quota pace among :attr:`Locked.paces` (the rest are IP addresses)."""


def quota_pace_key(tenant: str) -> str:
    return QUOTA_PACE + tenant


SHARE_KIND = "sesshare"
"""Daily counter kind of one tenant's SES sends (key: the tenant): what its fair share is held against."""
SHARE_RECHECK = 300.0
"""Seconds a message kept back for other tenants' shares waits before it is asked about again."""


@dataclass(frozen=True)
class SesLimits:
    region: str
    daily_quota: int
    shares: Mapping[str, int] = field(default_factory=dict)
    """The weight of each tenant sending through SES (its ``ses.share``); empty: no shares kept."""
    day_fraction: float = 0.0
    """How much of the UTC day has passed (0 to 1): the reserve kept for a share shrinks with it."""

    def fair_share(self, tenant: str) -> float:
        total = sum(self.shares.values())
        return self.daily_quota * self.shares.get(tenant, 0) / total if total else float(self.daily_quota)

    def kept_for_others(self, tenant: str, used: Mapping[tuple[str, str], int]) -> int:
        """Sends of the quota kept for the other SES tenants' unused shares, now.

        Each other tenant keeps ``fair share x (1 - day_fraction) - what it sent``, at least 0: its
        whole share at 00:00 UTC, none at the end of the day.  So a tenant may always send within its
        own share, what nobody keeps is lent (more of it as the day goes on), and a tenant that
        arrives late still finds the rest of its share.
        """
        kept = 0.0
        for other in self.shares:
            if other != tenant:
                kept += max(0.0, self.fair_share(other) * (1.0 - self.day_fraction) - used.get((SHARE_KIND, other), 0))
        return math.floor(kept)


@dataclass
class Locked:
    """The counters a reservation holds locked, as they stand; :func:`decide` moves them in memory.

    ``daily`` is keyed by (kind, key) -- ``("ip", address)``, ``("tenant", name)``, ``("ses",
    region)`` -- for ``day``; ``hourly`` by IP address for epoch hour ``hour``.  ``schedule`` is
    present when some message may go by SES.  ``held``: the ids whose claim the worker still has.
    """

    now: float
    day: datetime.date
    hour: int
    daily: dict[tuple[str, str], int]
    hourly: dict[str, int]
    held: frozenset[int]
    schedule: RateSchedule | None = None
    schedule_used: bool = field(default=False)
    paces: dict[str, float] = field(default_factory=dict)
    """Each paced IP's theoretical arrival time (see :class:`Pace`), and each tenant's quota pace's
    (:func:`quota_pace_key`); one absent starts idle."""
    paces_used: set[str] = field(default_factory=set)
    """The paces a grant moved: the store writes those back."""


@dataclass(frozen=True)
class Ask:
    """One message to decide: its queue id, the plan of its (tenant, stream) and its recipient's domain."""

    id: int
    plan: RoutePlan
    pause: Pause | None = None
    """A pause of the recipient's domain in force (a mailbox provider refusing mail): the message waits."""
    from_domain: str = ""
    """The From address's domain: the VMTA it goes through must have a DKIM key for it."""
    priority: int = 0
    """:data:`PRIORITY` of its stream: lower is answered first within a batch."""


def midnight_after(day: datetime.date) -> float:
    nxt = datetime.datetime.combine(day + datetime.timedelta(days=1), datetime.time(), datetime.UTC)
    return nxt.timestamp()


def _defer(locked: Locked, until: float, reason: str, keep_within: float) -> Deferred:
    return Deferred(until, reason, kept=until - locked.now <= keep_within)


def _ready(gate: IpGate, locked: Locked) -> float:
    return locked.now if gate.pace is None else gate.pace.ready(locked.paces.get(gate.address, 0.0))


def _pace_step(gates: Sequence[IpGate]) -> float:
    """The route's steady interval: its IPs' paces together (1 / the sum of their rates)."""
    rates = [1.0 / g.pace.interval for g in gates if g.pace is not None]
    return 1.0 / sum(rates) if rates and len(rates) == len(gates) else 0.0


@dataclass(frozen=True)
class _Wait:
    """Why no IP of a route may send now, until when, and the route's pace step when it waits on its pace."""

    until: float
    reason: str
    step: float = 0.0


def _remaining(gate: IpGate, locked: Locked) -> float:
    """What the IP's warmup cap leaves it today (no cap: no end)."""
    return float("inf") if gate.daily_cap is None else gate.daily_cap - locked.daily[("ip", gate.address)]


def _open_today(plan: RoutePlan, locked: Locked, from_domain: str) -> list[IpGate] | _Wait:
    """The route's IPs that may carry this message at all today: not paused, under their warmup cap, with a
    DKIM key for the From domain; or, when none is, the wait the first of these stages none passes gives."""
    sending = [g for g in plan.gates if g.pause is None]
    if not sending:
        pauses = [g.pause for g in plan.gates if g.pause is not None]
        return _Wait(min(p.wait(locked.now) for p in pauses), f"{PAUSED}every IP of the route: {pauses[0].reason}")
    open_today = [g for g in sending if _remaining(g, locked) > 0]
    if not open_today:
        return _Wait(midnight_after(locked.day), "every IP reached its warmup cap for the day")
    deployed = [g for g in open_today if g.takes(from_domain)]
    if not deployed:  # asked again soon: the record changes when the host's next run reloads PowerMTA
        gate = open_today[0]
        why = gate.missing or f"the VMTA of {gate.address} runs without a DKIM key for {from_domain}"
        return _Wait(locked.now + DEPLOY_RECHECK, f"{NOT_DEPLOYED}{why}")
    return deployed


def _pick_ip(plan: RoutePlan, locked: Locked, from_domain: str) -> IpGate | _Wait:
    """The IP to send on -- the most left today, then the least used, then the lowest address -- or, when
    none may send, when one may again and why."""
    today = _open_today(plan, locked, from_domain)
    if isinstance(today, _Wait):
        return today
    open_now = [g for g in today if g.hourly_cap is None or locked.hourly[g.address] < g.hourly_cap]
    if not open_now:
        return _Wait((locked.hour + 1) * 3600.0, "every IP reached its hourly ceiling")
    ready = [g for g in open_now if _ready(g, locked) <= locked.now]
    if not ready:
        soonest = min(_ready(g, locked) for g in open_now)
        return _Wait(soonest, f"{PACING}the route's IPs spend their hourly ceilings as a steady rate",
                     _pace_step(open_now))
    return min(ready, key=lambda g: (-_remaining(g, locked), locked.daily[("ip", g.address)], g.address))


def decide_one(ask: Ask, locked: Locked, ses: SesLimits, keep_within: float = 0.0) -> Reservation:
    """One message's answer; a grant counts it in ``locked`` at once."""
    held = _held_back(ask, locked, keep_within)
    if held is not None:
        return held
    if ask.plan.gates:
        return _decide_pmta(ask, locked, keep_within)
    return _decide_ses(ask.plan, locked, ses, keep_within)


def _held_back(ask: Ask, locked: Locked, keep_within: float) -> Reservation | None:
    """What stops the message whichever way it would go: a lost claim, another instance's route, a pause, the
    tenant's daily quota or its pace; None when nothing does."""
    if ask.id not in locked.held:
        return LostClaim()
    plan = ask.plan
    if plan.elsewhere:  # claimed under an older fleet: back to the queue for another instance
        return Deferred(locked.now + ELSEWHERE_RETRY, "no IP for this stream on this instance's MTA hosts")
    pause = plan.pause or ask.pause
    if pause is not None:
        return _defer(locked, pause.wait(locked.now), PAUSED + pause.reason, keep_within)
    tomorrow = midnight_after(locked.day)
    quota = plan.daily_quota
    if quota is not None and locked.daily[("tenant", plan.tenant)] >= quota:
        return _defer(locked, tomorrow, f"tenant {plan.tenant} daily quota {quota} reached", keep_within)
    pace = plan.quota_pace
    if pace is not None and ask.priority > 0:  # transactional mail is never held by the quota's pace
        ready = pace.ready(locked.paces.get(quota_pace_key(plan.tenant), 0.0))
        if locked.now < ready:
            wait = _defer(locked, min(ready, tomorrow), f"tenant {plan.tenant}'s quota pace (one send every "
                          f"{pace.interval:.1f} s)", keep_within)
            return Deferred(wait.until, wait.reason, wait.kept, pace.interval, lane=QUOTA_PACE + plan.tenant)
    return None


def _decide_pmta(ask: Ask, locked: Locked, keep_within: float) -> Reservation:
    """A route through PowerMTA: the IP picked is counted (daily, hourly, pace) with the tenant's quota."""
    plan = ask.plan
    picked = _pick_ip(plan, locked, ask.from_domain)
    if isinstance(picked, _Wait):
        return Deferred(picked.until, picked.reason, picked.until - locked.now <= keep_within, picked.step)
    if picked.pace is not None:
        locked.paces[picked.address] = picked.pace.after(locked.paces.get(picked.address, 0.0), locked.now)
        locked.paces_used.add(picked.address)
    locked.daily[("ip", picked.address)] += 1
    locked.hourly[picked.address] += 1
    locked.daily[("tenant", plan.tenant)] += 1
    _spend_quota_pace(plan, locked)
    return Granted("pmta", picked.address, vmta_name(plan.tenant, picked.address), locked.day)


def _decide_ses(plan: RoutePlan, locked: Locked, ses: SesLimits, keep_within: float) -> Reservation:
    """A route through SES: the account's daily quota, the other tenants' fair shares of it, then a slot of
    the send rate."""
    tomorrow = midnight_after(locked.day)
    if locked.daily[(SES, ses.region)] >= ses.daily_quota:
        return _defer(locked, tomorrow, f"SES daily quota {ses.daily_quota} reached", keep_within)
    kept = ses.kept_for_others(plan.tenant, locked.daily) if ses.shares else 0
    if kept and locked.daily[(SES, ses.region)] + 1 + kept > ses.daily_quota:
        return _defer(locked, min(locked.now + SHARE_RECHECK, tomorrow),
                      f"SES daily quota: {kept} sends kept for other tenants' fair shares "
                      f"({plan.tenant}'s is {ses.fair_share(plan.tenant):.0f})", keep_within)
    schedule = locked.schedule
    if schedule is None:
        raise ValueError("a message that may go by SES needs the SES rate schedule locked")
    at = max(locked.now, schedule.earliest())
    if at - locked.now > keep_within:  # due again when its slot can be booked: the queue's order decides who
        return Deferred(at - keep_within, "SES max send rate", pace_step=1.0 / schedule.rate)
    # The next slot is near: booked for this message now, sent at it.  Slots go in the order messages ask,
    # which is the queue's (turns, transactional first), not to whichever worker wakes first at the slot.
    schedule.take(at)
    locked.schedule_used = True
    locked.daily[(SES, ses.region)] += 1
    locked.daily[("tenant", plan.tenant)] += 1
    if plan.tenant in ses.shares:
        locked.daily[(SHARE_KIND, plan.tenant)] += 1
    _spend_quota_pace(plan, locked)
    return Granted("ses", None, None, locked.day, at if at > locked.now else None)


def _spend_quota_pace(plan: RoutePlan, locked: Locked) -> None:
    """A grant moves the tenant's quota pace, whatever the stream: transactional sends leave marketing less."""
    if plan.quota_pace is not None:
        key = quota_pace_key(plan.tenant)
        locked.paces[key] = plan.quota_pace.after(locked.paces.get(key, 0.0), locked.now)
        locked.paces_used.add(key)


def decide(asks: Sequence[Ask], locked: Locked, ses: SesLimits, keep_within: float = 0.0) -> list[Reservation]:
    """Every message of a batch against the same locked counters, transactional first (:data:`PRIORITY`),
    answers in the batch's order.

    Waits on a route's pace are spread: the first waits for the route's next send, each further one
    of the batch ``pace_step`` later, so a capped campaign comes back one send at a time, not all
    at once (and a transactional message, answered first, takes the earliest).
    """
    answers: list[Reservation | None] = [None] * len(asks)
    spread: dict[tuple[str, tuple[str, ...]], float] = {}
    for index in sorted(range(len(asks)), key=lambda i: asks[i].priority):
        ask = asks[index]
        answer = decide_one(ask, locked, ses, keep_within)
        if isinstance(answer, Deferred) and answer.pace_step > 0:  # the SES slots are the whole account's
            route = (ask.plan.tenant, tuple(g.address for g in ask.plan.gates)) if ask.plan.gates else (SES, ())
            if answer.lane is not None:
                route = (answer.lane, ())
            until = max(answer.until, spread.get(route, answer.until))
            spread[route] = until + answer.pace_step
            answer = Deferred(until, answer.reason, answer.kept and until - locked.now <= keep_within,
                              answer.pace_step, answer.lane)
        answers[index] = answer
    return [a for a in answers if a is not None]
