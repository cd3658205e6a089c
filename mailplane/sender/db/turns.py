"""The ``queue_turns`` rows: each flow's finish and V, read and moved inside the store's transactions.

What the turns are and how they are dealt: :mod:`mailplane.sender.core.turns`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy import ColumnElement, Connection, and_, or_, select, update

from mailplane.sender.core.turns import CLOCK, Dealt, Flow, FlowState, deal, settle
from mailplane.sender.db.database import Database
from mailplane.sender.db.schema import messages, queue_turns, upsert


class Turns:
    """The ``queue_turns`` rows: V and each flow's finish, used inside the store's transactions."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def clock(self, conn: Connection) -> float:
        """V: the highest turn granted a send so far (0 on a new queue)."""
        found = conn.execute(select(queue_turns.c.finish).where(*_is(CLOCK))).scalar()
        return float(found) if found is not None else 0.0

    def deal(self, conn: Connection, batch: Sequence[Flow], weights: Mapping[str, int]) -> list[float]:
        """Turns for a batch being queued in ``conn``'s transaction; moves the flows' finishes."""
        if not batch:
            return []
        v = self.clock(conn)
        groups = sorted({(t, s) for t, s, _ in batch})
        known = self._flows(conn, and_(queue_turns.c.finish > v, _in_groups(groups)))
        missing = sorted(set(batch) - known.keys())
        if missing:
            known.update(self._flows(conn, or_(*(and_(*_is(f)) for f in missing))))
        dealt = deal(v, known, batch, weights)
        self._save(conn, v, dealt)
        return dealt.turns

    def served(self, highest: float) -> None:
        """Move V up to the highest turn just granted a send (never down: mail deferred and granted later has
        older turns), and close up the turns of tenants whose flows went idle."""

        def work(conn: Connection) -> None:
            v_before = float(conn.execute(self.db.for_update(
                select(queue_turns.c.finish).where(*_is(CLOCK)))).scalar() or 0.0)
            if highest <= v_before:
                return
            self._set(conn, CLOCK, FlowState(highest))
            ended = self._flows(conn, and_(queue_turns.c.finish > v_before, queue_turns.c.finish <= highest,
                                           queue_turns.c.tenant != ""))
            if ended:
                groups = sorted({(f[0], f[1]) for f in ended})
                flows = {**ended, **self._flows(conn, and_(queue_turns.c.finish > highest, _in_groups(groups)))}
                self._save(conn, highest, settle(v_before, highest, flows))

        self.db.run(work)

    def forget_idle(self) -> int:
        """Delete the flows whose finish V has passed: an idle flow starts at V whether its row is there or not."""

        def work(conn: Connection) -> int:
            v = self.clock(conn)
            result = conn.execute(queue_turns.delete().where(queue_turns.c.finish <= v, queue_turns.c.tenant != ""))
            return int(result.rowcount)

        return int(self.db.run(work))

    def _flows(self, conn: Connection, where: ColumnElement[bool]) -> dict[Flow, FlowState]:
        rows = conn.execute(self.db.for_update(select(queue_turns).where(where))).all()
        return {(r.tenant, r.stream, r.campaign): FlowState(float(r.finish), int(r.spacing)) for r in rows}

    def _save(self, conn: Connection, v: float, dealt: Dealt) -> None:
        for (tenant, stream, campaign), factor in sorted(dealt.stretches.items()):
            conn.execute(update(messages).where(
                messages.c.tenant == tenant, messages.c.stream == stream, messages.c.campaign == campaign,
                messages.c.state == "queued", messages.c.turn > v).values(turn=v + (messages.c.turn - v) * factor))
        for flow, state in sorted(dealt.flows.items()):
            self._set(conn, flow, state)

    def _set(self, conn: Connection, flow: Flow, state: FlowState) -> None:
        tenant, stream, campaign = flow
        insert = upsert(self.db.dialect, queue_turns).values(
            tenant=tenant, stream=stream, campaign=campaign, finish=state.finish, spacing=state.spacing)
        conn.execute(insert.on_conflict_do_update(index_elements=["tenant", "stream", "campaign"],
                                                  set_={"finish": insert.excluded.finish,
                                                        "spacing": insert.excluded.spacing}))


def _is(flow: Flow) -> list[ColumnElement[bool]]:
    tenant, stream, campaign = flow
    return [queue_turns.c.tenant == tenant, queue_turns.c.stream == stream, queue_turns.c.campaign == campaign]


def _in_groups(groups: Sequence[tuple[str, str]]) -> ColumnElement[bool]:
    return or_(*(and_(queue_turns.c.tenant == t, queue_turns.c.stream == s) for t, s in groups))
