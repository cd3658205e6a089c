"""What one tenant may have in flight at the front ends: bytes being checked and committed, requests, sessions.

The listener's work for a message -- reading it into the queue's payload, the checks, the commit --
is shared by every tenant: one event loop, one GIL, one committer.  Without a bound, one tenant's
twenty concurrent 10 MB messages fill all of it and another tenant's small receipt waits seconds
behind them.  So each tenant has a budget of bytes in flight (``max_tenant_bytes_in_flight``), held
from the DATA command (the size declared at MAIL FROM) to the commit: its next message waits, in its
own session, until the tenant's earlier ones are committed, and a
message larger than the budget goes alone.  Another tenant never waits on that budget, so its mail
waits at most for what the others have in flight within theirs.  Sessions are bounded per tenant as
they are per client address (``max_sessions_per_tenant``, counted once a session has logged in).

The HTTP API has the same bound (:class:`TenantIntake`): a tenant's requests being rendered, checked
and committed at once (``max_requests_per_tenant``) and their bytes (``max_request_bytes_per_tenant``);
the tenant's next request waits, in its own connection, until one of its earlier ones is answered.

Used from one event loop (the listener's, the API's): the waits are asyncio conditions, the counts
plain ints.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import AsyncIterator


class TenantBudgets:
    """Units (bytes, requests) in flight per tenant, each tenant waiting only on its own."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight: dict[str, int] = defaultdict(int)
        self.peak: dict[str, int] = defaultdict(int)
        """The most each tenant ever had in flight: for tests and metrics."""
        self._changed: dict[str, asyncio.Condition] = {}

    def _fits(self, tenant: str, size: int) -> bool:
        used = self.in_flight[tenant]
        return used == 0 or used + size <= self.limit

    @contextlib.asynccontextmanager
    async def hold(self, tenant: str, size: int) -> AsyncIterator[None]:
        """Wait until ``size`` bytes fit in the tenant's budget (at once when it has nothing in flight), hold
        them for the block, and give them back after, even if the block fails."""
        changed = self._changed.setdefault(tenant, asyncio.Condition())
        async with changed:
            await changed.wait_for(lambda: self._fits(tenant, size))
            self.in_flight[tenant] += size
            self.peak[tenant] = max(self.peak[tenant], self.in_flight[tenant])
        try:
            yield
        finally:
            async with changed:
                self.in_flight[tenant] -= size
                changed.notify_all()


class TenantSessions:
    """Logged-in sessions per tenant, at most ``limit`` each."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open: dict[str, int] = defaultdict(int)

    def login(self, tenant: str) -> bool:
        """Count one more session of ``tenant``; False (nothing counted) when it has its limit already."""
        if self.open[tenant] >= self.limit:
            return False
        self.open[tenant] += 1
        return True

    def logout(self, tenant: str) -> None:
        self.open[tenant] = max(self.open[tenant] - 1, 0)


class TenantIntake:
    """An HTTP request's hold on its tenant's requests and bytes in flight (the API's fair intake)."""

    def __init__(self, max_requests: int, max_bytes: int) -> None:
        self.requests = TenantBudgets(max_requests)
        self.bytes = TenantBudgets(max_bytes)

    @contextlib.asynccontextmanager
    async def hold(self, tenant: str, size: int) -> AsyncIterator[None]:
        """One request of ``size`` bytes: a place among the tenant's requests, then its bytes (requests first,
        so a request waiting for bytes holds no more than its own place)."""
        async with self.requests.hold(tenant, 1), self.bytes.hold(tenant, size):
            yield
