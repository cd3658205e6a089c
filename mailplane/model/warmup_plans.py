"""Warmup plans: the built-in presets and plans written in fleet.yaml, as step functions.

Part of the model (the loader checks plan names against the presets, the fleet builds its plans
here); :mod:`mailplane.warmup` reads them to compute an IP's status on a date.

A plan maps a day of the plan (1 = the IP's first day) to a daily cap per IP; days a schedule
does not list keep the previous cap, and after its last step the cap stays at the last value
(the IP is warm).  The hourly ceiling is the daily cap spread over ``spread_hours`` unless a step
gives one: mailbox providers punish bursts as much as volume.  Numbers and their sources are
in docs/reference/yaml.md ("Warmup plans").
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

from mailplane.model.fleet import HoldThresholds, ScheduleStep, WarmupPlanSpec

DEFAULT_SPREAD_HOURS = 12
DEFAULT_BURST_SECONDS = 60
"""Seconds' worth of an IP's hourly ceiling that may leave at once (see ``WarmupPlanSpec.burst_seconds``)."""


@dataclass(frozen=True)
class WarmupPlan:
    """One named ramp: ``WarmupPlanSpec`` is how fleet.yaml writes it, this is what consumers read."""

    name: str
    steps: tuple[ScheduleStep, ...]
    spread_hours: int
    hold_when: HoldThresholds
    description: str = ""
    burst_seconds: int = DEFAULT_BURST_SECONDS

    def _step(self, day: int) -> ScheduleStep | None:
        if day < 1:
            return None
        index = bisect.bisect_right([s.day for s in self.steps], day) - 1
        return self.steps[index] if index >= 0 else None

    def daily_cap(self, day: int) -> int:
        """Messages per IP on ``day`` of the plan; 0 before the plan starts."""
        step = self._step(day)
        return step.daily if step else 0

    def hourly_cap(self, day: int) -> int:
        step = self._step(day)
        if step is None:
            return 0
        return step.hourly if step.hourly is not None else math.ceil(step.daily / self.spread_hours)

    @property
    def length(self) -> int:
        """The last day on which the cap changes; from then on the IP counts as warm."""
        return self.steps[-1].day


def _nice(value: float) -> int:
    """Two significant figures: plan tables people can read and remember."""
    digits = max(math.floor(math.log10(value)) - 1, 0)
    return int(round(value / 10**digits) * 10**digits)


def geometric(first: int, last: int, days: int) -> tuple[ScheduleStep, ...]:
    """A daily ramp growing by a constant factor from ``first`` on day 1 to ``last`` on ``days``."""
    factor = (last / first) ** (1 / (days - 1))
    values = [_nice(first * factor**i) for i in range(days - 1)] + [last]
    return tuple(ScheduleStep(day=i + 1, daily=v) for i, v in enumerate(values))


def _table(values: list[int]) -> tuple[ScheduleStep, ...]:
    return tuple(ScheduleStep(day=i + 1, daily=v) for i, v in enumerate(values))


_SPARKPOST = [200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 40_000, 50_000, 75_000, 100_000,
              150_000, 200_000, 250_000, 325_000, 400_000, 500_000, 600_000, 750_000, 1_000_000,
              1_250_000, 1_750_000, 2_000_000, 3_000_000, 4_250_000, 5_000_000, 6_000_000,
              7_500_000, 10_000_000]

PRESETS: dict[str, WarmupPlan] = {
    plan.name: plan
    for plan in (
        WarmupPlan("ses-45d", geometric(50, 50_000, 45), 24, HoldThresholds(),
             "Amazon SES style: 45 days to 50,000/day. SES publishes only the end points, so the "
             "days between grow by a constant factor (x1.17/day)."),
        WarmupPlan("sparkpost-30d", _table(_SPARKPOST), 24, HoldThresholds(),
             "SparkPost's published daily table: 200/day on day 1 to 10,000,000/day on day 29."),
        WarmupPlan("pmta-6w", geometric(50, 10_000, 42), DEFAULT_SPREAD_HOURS, HoldThresholds(),
             "Six weeks from 50/day to 10,000/day (x1.14/day), as the PowerMTA warmup engine "
             "mailplane replaces ran it; for small senders."),
    )
}


def build_plan(name: str, spec: WarmupPlanSpec) -> WarmupPlan:
    """A plan from fleet.yaml.  The spec is already checked: a known preset xor a schedule."""
    base = PRESETS.get(spec.preset or "")
    steps = tuple(spec.schedule) if spec.schedule else (base.steps if base else ())
    spread = spec.spread_hours or (base.spread_hours if base else DEFAULT_SPREAD_HOURS)
    hold = spec.hold_when or (base.hold_when if base else HoldThresholds())
    description = f"{spec.preset} with this stack's settings" if base else "written in fleet.yaml"
    burst = spec.burst_seconds or (base.burst_seconds if base else DEFAULT_BURST_SECONDS)
    return WarmupPlan(name, steps, spread, hold, description, burst)
