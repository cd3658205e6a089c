"""The gate decision without a database: plain counters in, answers out, and the caps held for any batch.

:func:`mailplane.sender.core.gates.decide` is what every reservation runs under lock; here hypothesis
draws routes, caps, counters already spent and batches of messages, and the properties are the
rules themselves: no IP past its daily cap or hourly ceiling, no tenant past its quota, SES past
neither its daily quota nor its rate, a message whose claim was lost never counted, and every
grant counted exactly once where it went.
"""

from __future__ import annotations

import datetime
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from mailplane.sender.core.gates import (
    SES,
    Ask,
    Deferred,
    Granted,
    IpGate,
    Locked,
    LostClaim,
    RateSchedule,
    RoutePlan,
    SesLimits,
    decide,
    midnight_after,
)

DAY = datetime.date(2026, 12, 4)
NOW = datetime.datetime(2026, 12, 4, 10, 30, tzinfo=datetime.UTC).timestamp()
HOUR = int(NOW // 3600)
LIMITS = SesLimits("eu-west-1", daily_quota=5)
IPS = ("192.0.2.1", "192.0.2.2", "192.0.2.3")
caps = st.none() | st.integers(min_value=0, max_value=12)


OWNED = {"acme": ("192.0.2.1", "192.0.2.2"), "bravo": ("192.0.2.3",)}
"""An IP belongs to one tenant (the model enforces it); a tenant's streams may share its IPs."""
ROUTES = (("acme", "transactional"), ("acme", "marketing"), ("bravo", "transactional"))


@st.composite
def situations(draw: st.DrawFn) -> tuple[list[Ask], Locked, dict[str, RoutePlan]]:
    """Three (tenant, stream) routes (IPs or SES), counters spent so far within their caps, and a batch."""
    ip_caps = {ip: (draw(caps), draw(caps)) for ip in IPS}  # the day's caps are the IP's, whatever the stream
    quotas = {tenant: draw(st.none() | st.integers(0, 15)) for tenant in OWNED}
    plans: dict[str, RoutePlan] = {}
    for tenant, stream in ROUTES:
        ips = draw(st.lists(st.sampled_from(OWNED[tenant]), unique=True, max_size=2))
        gates = tuple(IpGate(ip, *ip_caps[ip]) for ip in ips)
        plans[f"{tenant}/{stream}"] = RoutePlan(tenant, quotas[tenant], gates)
    daily: dict[tuple[str, str], int] = {(SES, LIMITS.region): draw(st.integers(0, LIMITS.daily_quota))}
    hourly: dict[str, int] = {}
    for tenant, quota in quotas.items():
        daily[("tenant", tenant)] = draw(st.integers(0, quota if quota is not None else 15))
    for ip, (daily_cap, hourly_cap) in ip_caps.items():
        daily[("ip", ip)] = draw(st.integers(0, daily_cap if daily_cap is not None else 12))
        hourly[ip] = draw(st.integers(0, hourly_cap if hourly_cap is not None else 12))
    batch = draw(st.lists(st.sampled_from(sorted(plans)), max_size=40))
    asks = [Ask(i, plans[route]) for i, route in enumerate(batch, 1)]
    held = frozenset(draw(st.sets(st.sampled_from([a.id for a in asks]))) if asks else set())
    schedule = RateSchedule(rate=draw(st.sampled_from([0.5, 1.0, 14.0])), next_slot=NOW - draw(st.floats(0, 2)),
                            recent=[])
    return asks, Locked(NOW, DAY, HOUR, daily, hourly, held, schedule), plans


def _caps(plans: dict[str, RoutePlan]) -> tuple[dict[str, int], dict[str, int]]:
    """The tightest daily and hourly cap of each IP among the plans naming it."""
    daily: dict[str, int] = {}
    hourly: dict[str, int] = {}
    for plan in plans.values():
        for g in plan.gates:
            if g.daily_cap is not None:
                daily[g.address] = min(daily.get(g.address, g.daily_cap), g.daily_cap)
            if g.hourly_cap is not None:
                hourly[g.address] = min(hourly.get(g.address, g.hourly_cap), g.hourly_cap)
    return daily, hourly


@settings(max_examples=400, deadline=None)
@given(situations())
def test_no_batch_takes_a_counter_past_its_cap(situation: tuple[list[Ask], Locked, dict[str, RoutePlan]]) -> None:
    asks, locked, plans = situation
    before_daily, before_hourly = dict(locked.daily), dict(locked.hourly)
    answers = decide(asks, locked, LIMITS)
    ip_daily, ip_hourly = _caps(plans)
    for ip, cap in ip_daily.items():
        assert locked.daily[("ip", ip)] <= cap
    for ip, cap in ip_hourly.items():
        assert locked.hourly[ip] <= cap
    for plan in plans.values():
        if plan.daily_quota is not None:
            assert locked.daily[("tenant", plan.tenant)] <= plan.daily_quota
    assert locked.daily[(SES, LIMITS.region)] <= LIMITS.daily_quota
    # every grant is counted once, where it went; nothing else moved
    grants = [(a, g) for a, g in zip(asks, answers, strict=True) if isinstance(g, Granted)]
    by_ip = Counter(g.ip for _, g in grants if g.ip is not None)
    for ip in IPS:
        assert locked.daily.get(("ip", ip), 0) - before_daily.get(("ip", ip), 0) == by_ip[ip]
        assert locked.hourly.get(ip, 0) - before_hourly.get(ip, 0) == by_ip[ip]
    by_tenant = Counter(a.plan.tenant for a, _ in grants)
    for tenant in OWNED:
        assert locked.daily[("tenant", tenant)] - before_daily[("tenant", tenant)] == by_tenant[tenant]
    ses = sum(1 for _, g in grants if g.transport == "ses")
    assert locked.daily[(SES, LIMITS.region)] - before_daily[(SES, LIMITS.region)] == ses
    for ask, answer in zip(asks, answers, strict=True):
        if ask.id not in locked.held:
            assert answer == LostClaim()
        elif isinstance(answer, Granted):
            assert (answer.transport == "pmta") == bool(ask.plan.gates)
            assert answer.ip is None or answer.ip in {g.address for g in ask.plan.gates}
            assert answer.vmta == (None if answer.ip is None else f"{ask.plan.tenant}-{answer.ip.replace('.', '-')}")
        else:
            assert isinstance(answer, Deferred) and answer.until > NOW and not answer.kept


@settings(max_examples=200, deadline=None)
@given(situations())
def test_a_batch_grants_what_the_same_messages_asked_one_by_one_would(
        situation: tuple[list[Ask], Locked, dict[str, RoutePlan]]) -> None:
    """Deciding in one batch, or in reservations of one message carrying the counters over, grants the same and
    counts the same; a batch only spreads waits on a rate over the next slots (later, never sooner)."""
    asks, locked, _ = situation
    alone = Locked(locked.now, locked.day, locked.hour, dict(locked.daily), dict(locked.hourly), locked.held,
                   RateSchedule(locked.schedule.rate, locked.schedule.next_slot, list(locked.schedule.recent))
                   if locked.schedule else None)
    together = decide(asks, locked, LIMITS)
    one_by_one = [decide([ask], alone, LIMITS)[0] for ask in asks]
    assert locked.daily == alone.daily and locked.hourly == alone.hourly
    for batch, single in zip(together, one_by_one, strict=True):
        if isinstance(batch, Deferred) and batch.pace_step > 0:
            assert isinstance(single, Deferred) and (batch.reason, batch.pace_step) == (single.reason,
                                                                                       single.pace_step)
            assert batch.until >= single.until
        else:
            assert batch == single


@settings(max_examples=100, deadline=None)
@given(rate=st.sampled_from([1.0, 2.0, 14.0]), steps=st.lists(st.floats(0.0, 0.4), min_size=1, max_size=120))
def test_ses_never_gets_more_than_its_rate_in_any_second(rate: float, steps: list[float]) -> None:
    """Workers asking at arbitrary moments: grants never exceed floor(rate) in any 1-second window."""
    plan = RoutePlan("sesco", None)
    locked = Locked(NOW, DAY, HOUR, {(SES, LIMITS.region): 0, ("tenant", "sesco"): 0}, {}, frozenset({1}),
                    RateSchedule(rate, NOW, []))
    granted_at: list[float] = []
    now = NOW
    for step in steps:
        now += step
        locked.now = now
        answer = decide([Ask(1, plan)], locked, SesLimits(LIMITS.region, 10_000))[0]
        if isinstance(answer, Granted):
            granted_at.append(now)
        else:
            assert isinstance(answer, Deferred) and answer.reason == "SES max send rate" and answer.until > now
    window = max(1, int(rate))
    for i in range(len(granted_at) - window):
        assert granted_at[i + window] - granted_at[i] >= 1.0 - 1e-9


def test_deferrals_say_when_the_message_may_go_again() -> None:
    gate = IpGate("192.0.2.1", daily_cap=1, hourly_cap=1)
    plan = RoutePlan("acme", 10, (gate,))
    locked = Locked(NOW, DAY, HOUR, {("ip", gate.address): 0, ("tenant", "acme"): 0}, {gate.address: 0},
                    frozenset({1, 2, 3}))
    first, second = decide([Ask(1, plan), Ask(2, plan)], locked, LIMITS)
    assert first == Granted("pmta", gate.address, "acme-192-0-2-1", DAY)
    assert second == Deferred(midnight_after(DAY), "every IP reached its warmup cap for the day")
    hourly = RoutePlan("acme", 10, (IpGate("192.0.2.1", daily_cap=5, hourly_cap=1),))
    assert decide([Ask(3, hourly)], locked, LIMITS) == [
        Deferred((HOUR + 1) * 3600.0, "every IP reached its hourly ceiling")]
    quota = RoutePlan("acme", 1, (IpGate("192.0.2.1", None, None),))
    assert decide([Ask(3, quota)], locked, LIMITS) == [
        Deferred(midnight_after(DAY), "tenant acme daily quota 1 reached")]
    # an SES slot within keep_within is booked for the message, to be sent at it; one further (NOW + 1.5) is
    # asked for again when it comes within reach, in the queue's order (the batch's next one a slot later)
    soon = Locked(NOW, DAY, HOUR, {(SES, LIMITS.region): 0, ("tenant", "s"): 0}, {}, frozenset({1, 2, 3}),
                  RateSchedule(1.0, NOW + 0.5, []))
    assert decide([Ask(i, RoutePlan("s", None)) for i in (1, 2, 3)], soon, LIMITS, keep_within=1.0) == [
        Granted("ses", None, None, DAY, at=NOW + 0.5), Deferred(NOW + 0.5, "SES max send rate", pace_step=1.0),
        Deferred(NOW + 1.5, "SES max send rate", pace_step=1.0)]


def test_the_ip_with_most_left_goes_first_then_the_least_used() -> None:
    a, b = IpGate("192.0.2.1", 10, None), IpGate("192.0.2.2", 4, None)
    plan = RoutePlan("acme", None, (a, b))
    locked = Locked(NOW, DAY, HOUR, {("ip", a.address): 7, ("ip", b.address): 0, ("tenant", "acme"): 0},
                    {a.address: 0, b.address: 0}, frozenset(range(1, 6)))
    ips = [g.ip for g in decide([Ask(i, plan) for i in range(1, 6)], locked, LIMITS) if isinstance(g, Granted)]
    # b has 4 left, a 3: b; then 3 each, b used less: b; then a has more left, and so on
    assert ips == ["192.0.2.2", "192.0.2.2", "192.0.2.1", "192.0.2.2", "192.0.2.1"]


def test_a_stream_served_by_other_hosts_goes_back_to_the_queue_for_them() -> None:
    plan = RoutePlan("acme", None, (), elsewhere=True)
    locked = Locked(NOW, DAY, HOUR, {}, {}, frozenset({1}))
    [answer] = decide([Ask(1, plan)], locked, LIMITS)
    assert isinstance(answer, Deferred) and not answer.kept and answer.until == NOW + 60


def test_a_pause_keeps_mail_waiting_and_a_paused_ip_is_passed_over() -> None:
    from mailplane.sender.core.gates import PAUSE_RECHECK, Pause

    a, b = IpGate("192.0.2.1", 10, None), IpGate("192.0.2.2", 10, None, Pause("IP 192.0.2.2 paused by operator (x)"))
    locked = Locked(NOW, DAY, HOUR, {("ip", a.address): 0, ("ip", b.address): 0, ("tenant", "acme"): 0},
                    {a.address: 0, b.address: 0}, frozenset(range(1, 10)))
    plan = RoutePlan("acme", None, (a, b))
    granted = decide([Ask(i, plan) for i in (1, 2, 3)], locked, LIMITS)
    assert {g.ip for g in granted if isinstance(g, Granted)} == {"192.0.2.1"}  # never the paused one
    stopped = Pause("tenant acme paused by operator (bounces)", until=NOW + 30)
    [waiting] = decide([Ask(4, RoutePlan("acme", None, (a,), pause=stopped))], locked, LIMITS)
    assert waiting == Deferred(NOW + 30, "paused: tenant acme paused by operator (bounces)")
    endless = Pause("mail to example.net paused by operator (421s)")
    [to_domain] = decide([Ask(5, plan, pause=endless)], locked, LIMITS)
    assert to_domain == Deferred(NOW + PAUSE_RECHECK, "paused: mail to example.net paused by operator (421s)")
    all_paused = RoutePlan("acme", None, (IpGate("192.0.2.2", 10, None, Pause("p", until=NOW + 5)),))
    [none_left] = decide([Ask(6, all_paused)], locked, LIMITS)
    assert isinstance(none_left, Deferred) and none_left.until == NOW + 5 and none_left.reason.startswith("paused: ")
    assert locked.daily[("tenant", "acme")] == 3  # only the three grants counted
