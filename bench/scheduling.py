"""Who goes first inside the caps: one simulated day of the sender's decisions, today's rules beside the old ones.

Why: the caps always held, but inside them the sender was a first-in, first-out queue with clock-hour
windows and one SES quota for whoever came first.  This drives the pure decision
(``mailplane.sender.gates.decide``, what every reservation runs under lock) the way the workers do --
claim the due messages a batch at a time, transactional first, ask again at each message's
``until`` -- on a simulated clock, so a whole day runs in seconds and the same input gives the same
figures.  It runs the day twice: with the scheduler as it is, and as it was (no priority, an hour's
ceiling at once, no SES shares: the "before" column), and prints for each:

* the PowerMTA tenant's transactional wait (p50, p99) while its campaign saturates its IPs, and the
  goal: the time an IP needs to earn one send, plus 5 s;
* each SES tenant's sends through the account, and the light one's error against what was kept for
  it (half its fair share, since it comes at noon; goal: within 5 %);
* the most sends of one IP in any 60 s against its hourly ceiling / 60 (goal: at most 2x);
* cap violations (IP day and clock hour, SES day): must be 0.

The day (seed 000's account scaled by 1/10, seed 004's warming IPs): SES 5,000 a day at 1.4/s, a heavy
SES tenant's 6,000-message campaign at 08:00, a light SES tenant's 1,500 at 12:00; a PowerMTA tenant
with five IPs at 300 a day (25 an hour each), both streams on them, a 1,000-message campaign at 09:00
and a password reset every 4 minutes all day.

    .venv/bin/python bench/scheduling.py
"""

from __future__ import annotations

import datetime
import heapq
import math
import statistics
import time
from collections import defaultdict
from dataclasses import dataclass

from mailplane.sender.gates import (
    PRIORITY,
    Ask,
    Deferred,
    Granted,
    IpGate,
    Locked,
    Pace,
    RateSchedule,
    RoutePlan,
    SesLimits,
    decide,
)

DAY = datetime.date(2026, 12, 7)
DAY0 = datetime.datetime(2026, 12, 7, tzinfo=datetime.UTC).timestamp()
REGION = "eu-west-1"
SES_QUOTA, SES_RATE = 5_000, 1.4
IP_DAILY, IP_HOURLY = 300, 25
IPS = tuple(f"203.0.113.{n}" for n in range(21, 26))
BATCH = 64


@dataclass(frozen=True)
class Message:
    id: int
    tenant: str
    stream: str
    arrival: float


def workload() -> list[Message]:
    mail: list[Message] = []

    def add(tenant: str, stream: str, count: int, at: float, every: float = 0.0) -> None:
        base = len(mail)
        mail.extend([Message(base + n + 1, tenant, stream, DAY0 + at + n * every) for n in range(count)])

    add("heavy", "marketing", 6_000, 8 * 3600)
    add("light", "marketing", 1_500, 12 * 3600)
    add("pmta", "marketing", 1_000, 9 * 3600)
    add("pmta", "transactional", 360, 0.0, every=240.0)
    return mail


def plans(now_rules: bool) -> dict[str, RoutePlan]:
    burst = 60 if now_rules else 3600
    gates = tuple(IpGate(ip, IP_DAILY, IP_HOURLY, pace=Pace.of(IP_HOURLY, burst)) for ip in IPS)
    return {"heavy": RoutePlan("heavy", None), "light": RoutePlan("light", None),
            "pmta": RoutePlan("pmta", None, gates)}


def simulate(now_rules: bool) -> tuple[dict[int, tuple[float, str | None]], dict[str, int]]:
    """Every message's grant (time, IP) over the day, and why messages waited (deferrals by reason).

    The claim as the store's: due transactional mail first (each stream its own queue, as its own
    indexed query), the oldest due first within a stream, a batch at a time.
    """
    routes = plans(now_rules)
    shares = {"heavy": 1, "light": 1} if now_rules else {}
    mail = {m.id: m for m in workload()}
    tiers: dict[int, list[tuple[float, int]]] = defaultdict(list)

    def tier(m: Message) -> int:
        return PRIORITY[m.stream] if now_rules else 0

    for m in mail.values():
        heapq.heappush(tiers[tier(m)], (m.arrival, m.id))
    daily: dict[tuple[str, str], int] = defaultdict(int)
    hourly: dict[tuple[str, int], int] = defaultdict(int)
    paces: dict[str, float] = {}
    schedule = RateSchedule(SES_RATE, DAY0, [])
    granted: dict[int, tuple[float, str | None]] = {}
    reasons: dict[str, int] = defaultdict(int)
    while any(tiers.values()):
        now = min(q[0][0] for q in tiers.values() if q)
        if datetime.datetime.fromtimestamp(now, datetime.UTC).date() != DAY:
            break  # the simulated day is over: what waits for tomorrow's caps is counted as waiting
        batch: list[int] = []
        for rank in sorted(tiers):
            queue = tiers[rank]
            while queue and queue[0][0] <= now and len(batch) < BATCH:
                batch.append(heapq.heappop(queue)[1])
        hour = int(now // 3600)
        locked = Locked(now, DAY, hour, daily, defaultdict(int, {ip: hourly[(ip, hour)] for ip in IPS}),
                        frozenset(batch), schedule, paces=paces)
        asks = [Ask(i, routes[mail[i].tenant], priority=tier(mail[i])) for i in batch]
        limits = SesLimits(REGION, SES_QUOTA, shares, (now - DAY0) / 86400)
        for i, answer in zip(batch, decide(asks, locked, limits), strict=True):
            if isinstance(answer, Granted):
                granted[i] = (now, answer.ip)
            else:
                assert isinstance(answer, Deferred) and answer.until > now
                reasons[answer.reason.split(":")[0].split(" (")[0]] += 1
                heapq.heappush(tiers[tier(mail[i])], (answer.until, i))
        daily, paces = locked.daily, locked.paces
        for ip in IPS:
            hourly[(ip, hour)] = locked.hourly[ip]
        schedule = locked.schedule or schedule
    return granted, dict(reasons)


def figures(granted: dict[int, tuple[float, str | None]]) -> dict[str, float]:
    mail = {m.id: m for m in workload()}
    out: dict[str, float] = {}
    busy_start, busy_end = DAY0 + 9 * 3600, DAY0 + 9 * 3600 + 1_000 / (len(IPS) * IP_HOURLY) * 3600
    waits = [granted[m.id][0] - m.arrival if m.id in granted else float("inf") for m in mail.values()
             if m.tenant == "pmta" and m.stream == "transactional" and busy_start <= m.arrival <= busy_end]
    out["tx_p50"] = statistics.median(waits)
    out["tx_p99"] = sorted(waits)[math.ceil(0.99 * len(waits)) - 1]
    for tenant in ("heavy", "light"):
        out[f"ses_{tenant}"] = sum(1 for i, (_, ip) in granted.items() if mail[i].tenant == tenant and ip is None)
    per_ip: dict[str, list[float]] = defaultdict(list)
    for _, (t, ip) in granted.items():
        if ip is not None:
            per_ip[ip].append(t)
    out["busiest_minute"] = max(_most_in_any(times, 60.0) for times in per_ip.values())
    violations = 0
    for times in per_ip.values():
        per_hour: dict[int, int] = defaultdict(int)
        for t in times:
            per_hour[int(t // 3600)] += 1
        violations += sum(1 for n in per_hour.values() if n > IP_HOURLY) + (len(times) > IP_DAILY)
    violations += out["ses_heavy"] + out["ses_light"] > SES_QUOTA
    out["violations"] = violations
    return out


def _most_in_any(times: list[float], window: float) -> int:
    times, most, start = sorted(times), 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= window:
            start += 1
        most = max(most, end - start + 1)
    return most


def main() -> None:
    started = time.perf_counter()
    now_run, before_run = simulate(True), simulate(False)
    now, before = figures(now_run[0]), figures(before_run[0])
    earn = 3600 / IP_HOURLY  # the time one IP needs to earn a send
    fair = SES_QUOTA / 2
    light_fair_left = fair * 0.5  # the light tenant arrives at noon: half its share is still kept for it
    print(f"one simulated day, {len(workload()):,} messages, twice: {time.perf_counter() - started:.1f} s")
    print(f"{'':66}{'now':>12}{'before':>12}")
    rows = [
        ("transactional wait p50 while the campaign saturates (s)", now["tx_p50"], before["tx_p50"]),
        (f"transactional wait p99 (s; goal: an IP earns a send + 5 = {earn + 5:.0f})", now["tx_p99"],
         before["tx_p99"]),
        (f"heavy SES tenant's sends (fair share {fair:.0f})", now["ses_heavy"], before["ses_heavy"]),
        (f"light SES tenant's sends (wants 1,500 at noon; {light_fair_left:.0f} kept)", now["ses_light"],
         before["ses_light"]),
        ("  its error against what was kept for it (%; goal <= 5)",
         100 * abs(now["ses_light"] - light_fair_left) / light_fair_left,
         100 * abs(before["ses_light"] - light_fair_left) / light_fair_left),
        (f"busiest 60 s of one IP (even {IP_HOURLY / 60:.2f}; goal <= 2x, or 1)", now["busiest_minute"],
         before["busiest_minute"]),
        ("cap violations", now["violations"], before["violations"]),
    ]
    for label, a, b in rows:
        print(f"{label:66}{a:>12,.1f}{b:>12,.1f}")
    for name, (_, reasons) in (("now", now_run), ("before", before_run)):
        print(f"waits ({name}): " + ", ".join(f"{why} {n:,}" for why, n in sorted(reasons.items())))


if __name__ == "__main__":
    main()
