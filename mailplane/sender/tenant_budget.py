"""What one tenant may have in flight at the SMTP listener: bytes being checked and committed, and sessions.

The listener's work for a message -- reading it into the queue's payload, the checks, the commit --
is shared by every tenant: one event loop, one GIL, one committer.  Without a bound, one tenant's
twenty concurrent 10 MB messages fill all of it and another tenant's small receipt waits seconds
behind them.  So each tenant has a budget of bytes in flight (``max_tenant_bytes_in_flight``), held
from the DATA command (the size declared at MAIL FROM) to the commit: its next message waits, in its
own session, until the tenant's earlier ones are committed, and a
message larger than the budget goes alone.  Another tenant never waits on that budget, so its mail
waits at most for what the others have in flight within theirs.  Sessions are bounded per tenant as
they are per client address (``max_sessions_per_tenant``, counted once a session has logged in).

Used from the listener's one event loop: the waits are asyncio conditions, the counts plain ints.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import AsyncIterator


class TenantBudgets:
    """Bytes in flight per tenant, each tenant waiting only on its own."""

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
