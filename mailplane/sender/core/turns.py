"""Whose mail a worker claims next within a stream: fair turns between tenants and between a tenant's campaigns.

Priority (:data:`mailplane.sender.core.gates.PRIORITY`) decides between streams.  Within a stream the
queue was first-in, first-out: one tenant's 10,000-message campaign, queued first, went before
another tenant's single message, and a tenant's second campaign waited for its first to finish.
Now every message carries a **turn** when it is queued, and workers claim the lowest turns first.

Turns are start tags of start-time fair queuing (SFQ, Goyal, Vin and Cheng, 1996), computed once at
queueing time so the claim stays one indexed query:

* A **flow** is the mail of one (tenant, stream, campaign); mail without a campaign is the flow
  ``""``.  Each flow remembers the finish tag of its last message.
* The queue's **virtual time** V is the highest turn granted a send so far (not merely claimed: a
  backlog claimed and deferred for capacity has not been served).  A flow's next
  message starts at ``max(V, the flow's finish)``: a tenant that was idle starts at V (no credit
  saved up, no debt for having used capacity nobody else wanted), a busy flow after its own
  queued mail.
* Each message of a flow advances its finish by ``k / weight``: ``weight`` is the tenant's share
  (``ses.share`` in its YAML, default 1), ``k`` the tenant's flows active in that stream (finish
  beyond V).  Between tenants, turns are dealt in proportion to their weights whatever their
  campaigns; within a tenant, its campaigns take turns.
* When a tenant's new campaign joins ``k`` active ones, the turns those have ahead of V are
  stretched by ``(k + 1) / k`` (one UPDATE per flow), so the tenant's share is split, not grown;
  when V passes the end of one of them, the others' are closed up by ``(k - 1) / k`` at that
  claim, so a campaign that ended gives its turns back to its tenant's others.

It is work-conserving: a turn is an order, not a time, so when only one tenant has mail due, its
mail goes at once whatever its turns.  Caps and rates stay the gates' (a claimed message whose
capacity is spent is deferred and keeps its turn).  Two instances queueing for one flow at the
same moment (PostgreSQL locks the flows' rows, SQLite has one writer) deal in turn.

:func:`deal` and :func:`settle` are the pure computation (here); :class:`~mailplane.sender.db.turns.Turns`
reads and writes the ``queue_turns`` rows inside the store's transactions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

Flow = tuple[str, str, str]
"""(tenant, stream, campaign)."""

CLOCK: Flow = ("", "", "")
"""The ``queue_turns`` row that holds V (no tenant is named ``""``)."""


@dataclass(frozen=True)
class FlowState:
    finish: float
    """The turn after its last message's."""
    spacing: int = 1
    """The tenant's flows in the stream that were active when its turns were dealt: its step is spacing / weight."""


@dataclass(frozen=True)
class Dealt:
    """What :func:`deal` or :func:`settle` decided."""

    turns: list[float]
    """The turn of each message of the batch, in order (none for :func:`settle`)."""
    flows: dict[Flow, FlowState]
    """The new state of each flow that changed."""
    stretches: dict[Flow, float]
    """Flow -> factor by which its queued turns beyond V are to be scaled (its tenant's flows in the stream changed)."""


def _even(v: float, state: dict[Flow, FlowState], group: tuple[str, str], joining: int,
          stretches: dict[Flow, float]) -> int:
    """Give every active flow of ``group`` (plus ``joining`` new ones) the same spacing; returns it."""
    members = [f for f, s in state.items() if (f[0], f[1]) == group and s.finish > v]
    k = len(members) + joining
    for f in members:
        s = state[f]
        if s.spacing != k:
            factor = k / s.spacing
            state[f] = FlowState(v + (s.finish - v) * factor, k)
            stretches[f] = stretches.get(f, 1.0) * factor
    return k


def deal(v: float, flows: Mapping[Flow, FlowState], batch: Sequence[Flow], weights: Mapping[str, int]) -> Dealt:
    """The turns of ``batch`` (one flow per message, in queueing order) given V and the flows' states.

    ``flows`` holds at least every active flow (finish beyond ``v``) of the batch's (tenant,
    stream)s and the batch's own flows; absent flows are idle.  Pure.
    """
    state = {f: s for f, s in flows.items() if f != CLOCK}
    stretches: dict[Flow, float] = {}
    turns: list[float] = []
    for flow in batch:
        group = (flow[0], flow[1])
        if flow not in state or state[flow].finish <= v:  # the flow (re)joins its tenant's others
            state.pop(flow, None)
            k = _even(v, state, group, 1, stretches)
            state[flow] = FlowState(v, k)
        now = state[flow]
        turns.append(now.finish)
        state[flow] = FlowState(now.finish + now.spacing / max(1, weights.get(flow[0], 1)), now.spacing)
    return Dealt(turns, {f: s for f, s in state.items() if flows.get(f) != s}, stretches)


def settle(v_before: float, v: float, flows: Mapping[Flow, FlowState]) -> Dealt:
    """V moved from ``v_before`` to ``v``: the tenants whose flows went idle meanwhile have their others'
    turns closed up, so a campaign that ended gives its turns back to its tenant's others.  Pure."""
    state = dict(flows)
    stretches: dict[Flow, float] = {}
    for group in sorted({(f[0], f[1]) for f, s in flows.items() if v_before < s.finish <= v and f != CLOCK}):
        _even(v, state, group, 0, stretches)
    return Dealt([], {f: s for f, s in state.items() if flows.get(f) != s}, stretches)
