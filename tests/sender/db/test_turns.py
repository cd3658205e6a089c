"""Turns in the queue (``mailplane.sender.db.turns``): tenants served by their weights, a tenant's campaigns in
turn, an idle tenant's mail at once -- first on the pure ``deal`` under hypothesis, then on a real store."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailplane.sender.core.messages import NewMessage
from mailplane.sender.core.turns import Dealt, Flow, FlowState, deal, settle
from mailplane.sender.db.store import Store

NOON = 1_767_182_400.0


@dataclass
class Queue:
    """The store's rules on turns, in memory: deal at queueing, claim the lowest (turn, id), V = highest served
    (every claim here is granted its send at once)."""

    weights: dict[str, int]
    v: float = 0.0
    flows: dict[Flow, FlowState] = field(default_factory=dict)
    queued: list[tuple[float, int, Flow]] = field(default_factory=list)
    next_id: int = 0

    def apply(self, dealt: Dealt) -> None:
        for flow, factor in dealt.stretches.items():
            self.queued = [(self.v + (t - self.v) * factor if f == flow and t > self.v else t, i, f)
                           for t, i, f in self.queued]
        self.flows.update(dealt.flows)

    def add(self, batch: list[Flow]) -> None:
        dealt = deal(self.v, self.flows, batch, self.weights)
        self.apply(dealt)
        for turn, flow in zip(dealt.turns, batch, strict=True):
            self.queued.append((turn, self.next_id, flow))
            self.next_id += 1

    def claim(self) -> Flow:
        turn, ident, flow = min(self.queued)
        self.queued.remove((turn, ident, flow))
        if turn > self.v:
            before, self.v = self.v, turn
            self.apply(settle(before, self.v, self.flows))
        return flow


def test_an_idle_tenant_goes_before_a_busy_ones_backlog() -> None:
    q = Queue({"heavy": 1, "light": 1})
    q.add([("heavy", "marketing", "")] * 1000)
    assert {q.claim()[0] for _ in range(100)} == {"heavy"}
    q.add([("light", "marketing", "")] * 10)
    served = [q.claim()[0] for _ in range(20)]
    assert served.count("light") == 10 and served.count("heavy") == 10  # in alternation, not after 900


def test_tenants_are_served_by_their_weights_whatever_their_campaigns() -> None:
    q = Queue({"a": 3, "b": 1})
    q.add([("a", "marketing", "spring")] * 1000 + [("b", "marketing", "")] * 1000)
    q.add([("a", "marketing", "summer")] * 1000)  # a's second campaign splits a's share, does not grow it
    served = Counter(q.claim() for _ in range(400))
    assert abs(served[("a", "marketing", "spring")] + served[("a", "marketing", "summer")] - 300) <= 2
    assert abs(served[("a", "marketing", "spring")] - served[("a", "marketing", "summer")]) <= 2
    assert abs(served[("b", "marketing", "")] - 100) <= 2


def test_a_second_campaign_takes_turns_with_the_first() -> None:
    q = Queue({"t": 1})
    q.add([("t", "marketing", "first")] * 500)
    for _ in range(100):
        q.claim()
    q.add([("t", "marketing", "second")] * 500)
    served = Counter(q.claim()[2] for _ in range(200))
    assert served == {"first": 100, "second": 100}


def test_a_campaign_that_ends_gives_its_turns_back_to_the_tenants_other() -> None:
    q = Queue({"t": 1, "u": 1})
    q.add([("t", "marketing", "long")] * 400 + [("u", "marketing", "")] * 400)
    q.add([("t", "marketing", "short")] * 10)
    first = Counter(q.claim()[0] for _ in range(40))
    assert first == {"t": 20, "u": 20}  # t's two campaigns share t's half
    later = Counter(q.claim()[0] for _ in range(100))
    assert abs(later["t"] - 50) <= 2  # "short" is over: "long" has all of t's turns again


def test_streams_are_apart_a_tenants_transactional_flow_is_not_stretched_by_its_campaigns() -> None:
    dealt = deal(10.0, {("t", "marketing", "a"): FlowState(500.0)}, [("t", "transactional", ""),
                                                                    ("t", "marketing", "b")], {"t": 1})
    assert dealt.turns[0] == 10.0 and dealt.stretches == {("t", "marketing", "a"): 2.0}
    assert dealt.flows[("t", "marketing", "a")] == FlowState(10.0 + 490.0 * 2, 2)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.sampled_from(["", "x", "y"]),
                          st.integers(1, 40), st.integers(0, 30)), min_size=1, max_size=25),
       st.dictionaries(st.sampled_from(["a", "b", "c"]), st.integers(1, 4)))
def test_backlogged_tenants_get_their_weighted_turns(arrivals: list[tuple[str, str, int, int]],
                                                     weights: dict[str, int]) -> None:
    """However batches and claims interleave: over any run of claims during which two tenants both have mail
    queued, what each got divided by its weight differs by no more than a few of their largest steps."""
    q = Queue(dict(weights))
    served: list[tuple[Flow, frozenset[str]]] = []
    for tenant, campaign, size, claims in arrivals:
        q.add([(tenant, "marketing", campaign)] * size)
        for _ in range(min(claims, len(q.queued))):
            backlogged = frozenset(f[0] for _, _, f in q.queued)
            served.append((q.claim(), backlogged))
    step = {t: 3 / q.weights.get(t, 1) for t in "abc"}  # up to three campaigns: k / weight per message
    for i in range(len(served)):
        got: Counter[str] = Counter()
        both = served[i][1]
        for flow, backlogged in served[i:]:
            both = both & backlogged
            got[flow[0]] += 1
            for x in both:
                for y in both:
                    gap = got[x] / q.weights.get(x, 1) - got[y] / q.weights.get(y, 1)
                    assert gap <= 2 * (step[x] + step[y]) + 1e-9, (x, y, dict(got))


# -- on a real store ----------------------------------------------------------------------------

@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(f"sqlite:///{tmp_path / 'queue.db'}", clock=lambda: NOON)
    yield s
    s.close()


def mail(tenant: str, n: int, campaign: str = "", stream: str = "marketing") -> NewMessage:
    return NewMessage(tenant, "app", stream, f"app@{tenant}.example.com", f"r{n}@example.org",
                      {"subject": "s", "text": "t"}, campaign=campaign)


def drain(store: Store, n: int, batch: int = 1) -> list[tuple[str, str]]:
    """Claim and send ``n`` messages, telling the turns what was served as the pacer does after a grant."""
    out: list[tuple[str, str]] = []
    while len(out) < n:
        claimed = store.claim("w", batch)
        assert claimed, "the queue ran dry"
        for m in claimed:
            assert store.complete("w", m.id, "sent")
            out.append((m.tenant, m.campaign))
        store.turns.served(max(m.turn for m in claimed))
    return out


def test_the_store_claims_a_light_tenants_mail_ahead_of_a_heavy_ones_backlog(store: Store) -> None:
    store.enqueue([mail("heavy", n) for n in range(300)])
    assert {t for t, _ in drain(store, 50, batch=10)} == {"heavy"}
    store.enqueue([mail("light", n) for n in range(5)])
    next_ten = [t for t, _ in drain(store, 10, batch=5)]
    assert next_ten.count("light") == 5  # first-in, first-out would have served the 250 heavy ones first


def test_the_store_gives_a_tenants_campaigns_turns_and_keeps_weights(store: Store) -> None:
    store.weights = {"a": 2, "b": 1}
    store.enqueue([mail("a", n, "spring") for n in range(200)] + [mail("b", n) for n in range(200)])
    drain(store, 30, batch=6)
    store.enqueue([mail("a", n, "summer") for n in range(200)])
    served = Counter(drain(store, 120, batch=6))
    assert abs(served[("a", "spring")] + served[("a", "summer")] - 80) <= 3
    assert abs(served[("a", "spring")] - served[("a", "summer")]) <= 3
    assert abs(served[("b", "")] - 40) <= 3


def test_a_backlog_claimed_and_deferred_is_not_served_so_a_new_tenant_still_gets_its_turns(store: Store) -> None:
    """Workers claim a capped tenant's whole backlog and hand it back deferred: V must not jump to its end."""
    store.enqueue([mail("heavy", n) for n in range(200)])
    drain(store, 10)
    for m in store.claim("w", 500):  # the rest: claimed, deferred (no capacity), due again at once
        assert store.unclaim("w", [m.id]) == 1
    store.enqueue([mail("light", n) for n in range(5)])
    assert [t for t, _ in drain(store, 10)].count("light") == 5


def test_transactional_mail_is_still_claimed_first(store: Store) -> None:
    store.enqueue([mail("heavy", n) for n in range(100)])
    drain(store, 10)
    store.enqueue([mail("heavy", 999, stream="transactional")])
    [first] = store.claim("w", 1)
    assert first.stream == "transactional"
    assert store.complete("w", first.id, "sent")
    store.turns.served(first.turn)
    drain(store, 3)
    assert store.turns.forget_idle() == 1  # V passed the transactional flow's end: its row is not needed
