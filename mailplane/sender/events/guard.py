"""The tenant guard: one tenant whose list goes bad pauses alone, before the shared SES account is reviewed.

Per tenant, over a rolling window (``guard.window_hours``), the hard-bounce and complaint rates of its
mail on both routes (SES events and PowerMTA accounting, :mod:`mailplane.sender.db.outcomes`); once it
sent ``min_volume`` messages in the window, a rate above its threshold pauses the tenant (a pause of
source ``guard``: queued mail waits, nothing is dropped), raises an alert, and the quota API and
``/metrics`` say why.  The pause lasts until an operator resumes it; the guard then judges only what
happened after the resume, so it does not pause again on the mail that made it pause.

:func:`verdict` is pure; :func:`guard_tenants` reads the counts and writes the pauses.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from mailplane.model.fleet import TenantGuard
from mailplane.model.stack import Fleet
from mailplane.sender.core.pauses import PauseRequest, PauseRow
from mailplane.sender.db.outcomes import Totals
from mailplane.sender.db.store import Store

log = logging.getLogger(__name__)
SOURCE = "guard"


def verdict(guard: TenantGuard, totals: Totals) -> str | None:
    """Why the tenant must pause, or None: too little volume to judge, or rates within the thresholds."""
    if totals.sent < guard.min_volume:
        return None
    window = f"over {guard.window_hours} h"
    bounce = totals.bounced / totals.sent
    if bounce > guard.bounce_rate:
        return (f"bounce rate {bounce:.2%} {window} ({totals.bounced} of {totals.sent} sent) above "
                f"{guard.bounce_rate:.2%}")
    complaint = totals.complained / totals.sent
    if complaint > guard.complaint_rate:
        return (f"complaint rate {complaint:.3%} {window} ({totals.complained} of {totals.sent} sent) above "
                f"{guard.complaint_rate:.3%}")
    return None


@dataclass(frozen=True)
class Judged:
    """What the guard judges a tenant on now: its totals over the window (since a resume) and its thresholds."""

    tenant: str
    totals: Totals
    guard: TenantGuard


def judged(fleet: Fleet, store: Store, tenant_name: str) -> Judged:
    """The tenant's totals over its guard's window, counted from the hour after its last guard pause ended."""
    [one] = judged_all(fleet, store, [tenant_name])
    return one


def judged_all(fleet: Fleet, store: Store, tenant_names: list[str] | None = None) -> list[Judged]:
    """:func:`judged` of every tenant (or of ``tenant_names``), in two queries whatever their number."""
    names = [t.name for t in fleet.tenants] if tenant_names is None else tenant_names
    hour = int(store.clock() // 3600)
    resumed = store.pauses.last_ended_each(SOURCE)
    starts: dict[str, int] = {}
    guards: dict[str, TenantGuard] = {}
    for name in names:
        guards[name] = fleet.guard_for(fleet.tenant(name))
        starts[name] = hour - guards[name].window_hours + 1
        if name in resumed:
            starts[name] = max(starts[name], int(resumed[name] // 3600) + 1)
    totals = store.outcomes.since_each(starts)
    return [Judged(name, totals[name], guards[name]) for name in names]


@dataclass(frozen=True)
class GuardPause:
    tenant: str
    reason: str
    row: PauseRow


def guard_tenants(fleet: Fleet, store: Store, alert: Callable[[GuardPause], None] | None = None) -> list[GuardPause]:
    """Judge every tenant not paused by the guard already; pause those above their thresholds."""
    in_force = store.pauses.active()
    paused = {r.tenant for r in in_force if r.source == SOURCE and r.scope == "tenant" and r.mode == "pause"}
    made: list[GuardPause] = []
    for now in judged_all(fleet, store, [t.name for t in fleet.tenants if t.name not in paused]):
        reason = verdict(now.guard, now.totals)
        if reason is None:
            continue
        request = PauseRequest("tenant", now.tenant, "", "pause", reason, None)
        row = store.pauses.add_once(request, source=SOURCE)
        if row is None:  # another instance paused it a moment ago: its alert, its count
            continue
        log.warning("tenant guard: %s paused: %s (queued mail waits; an operator resumes it)", now.tenant, reason)
        pause = GuardPause(now.tenant, reason, row)
        made.append(pause)
        if alert is not None:
            alert(pause)
    return made
