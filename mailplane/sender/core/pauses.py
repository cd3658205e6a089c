"""Pauses and drains of a tenant, a stream, an IP or a recipient domain: what operators (and the tenant
guard) stop, why, and until when.

A **pause** stops sending on its scope: queued mail waits in the queue (the gate defers it, see
:mod:`mailplane.sender.core.gates`), nothing is dropped, and sending goes on where it stopped once the
pause ends -- resumed, or at its ``until``.  A **drain** refuses new mail for a tenant or stream at
submission while what is queued goes out (a tenant being moved or retired).  Every instance sharing
the database sees the same pauses: they are rows, read by each reservation.

:class:`PauseRequest` checks what an operator asks against the fleet, :class:`InForce` indexes the
pauses in force (pure, here); :class:`~mailplane.sender.db.pauses.Pauses` keeps the rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

from mailplane.model.addresses import canonical_ip
from mailplane.model.stack import Fleet
from mailplane.model.tenant import Tenant
from mailplane.model.types import normalise_domain
from mailplane.sender.core.gates import Pause

PauseScope = Literal["tenant", "stream", "ip", "domain"]
Mode = Literal["pause", "drain"]
SCOPES: tuple[PauseScope, ...] = ("tenant", "stream", "ip", "domain")


@dataclass(frozen=True)
class PauseRow:
    id: int
    scope: str
    tenant: str | None
    key: str
    mode: str
    reason: str
    source: str
    until: float | None
    created_at: float

    @property
    def pause(self) -> Pause:
        where = {"tenant": f"tenant {self.tenant}", "stream": f"{self.tenant}'s {self.key} mail",
                 "ip": f"IP {self.key}", "domain": f"mail to {self.key}"}[self.scope]
        return Pause(f"{where} paused by {self.source} ({self.reason})", self.until)


@dataclass(frozen=True)
class PauseRequest:
    """What an operator asks to pause or drain, checked against the fleet; ``ValueError`` says what is wrong."""

    scope: PauseScope
    tenant: str | None
    key: str
    mode: Mode
    reason: str
    until: float | None

    @classmethod
    def checked(cls, fleet: Fleet, *, scope: str, tenant: str | None, key: str | None, mode: str, reason: str,
                until: float | None, now: float) -> PauseRequest:
        _check_asked(scope, mode, reason, until, now)
        tenants = {t.name: t for t in fleet.tenants}
        if tenant is not None and tenant not in tenants:
            raise ValueError(f"no tenant {tenant!r} in the fleet")
        if scope in ("tenant", "stream", "ip") and tenant is None:
            raise ValueError(f"a {scope} pause names its tenant")
        if mode == "drain" and scope not in ("tenant", "stream"):
            raise ValueError("only a tenant or a stream can be drained (new mail refused)")
        value = _SCOPE_KEYS[scope](tenants[tenant] if tenant is not None else None, (key or "").strip())
        return cls(scope, tenant, value, mode, reason.strip()[:500], until)  # type: ignore[arg-type]


def _check_asked(scope: str, mode: str, reason: str, until: float | None, now: float) -> None:
    """The request's own fields, before anything is looked up in the fleet."""
    if scope not in SCOPES:
        raise ValueError(f"scope {scope!r} is not one of {', '.join(SCOPES)}")
    if mode not in ("pause", "drain"):
        raise ValueError(f"mode {mode!r} is not pause or drain")
    if not reason.strip():
        raise ValueError("give a reason: it is what the quota API and the logs say")
    if until is not None and until <= now:
        raise ValueError("until is in the past")


def _tenant_scope_key(_tenant: Tenant | None, _value: str) -> str:
    """A tenant's pause has no key: the tenant is all its scope."""
    return ""


def _stream_scope_key(tenant: Tenant | None, value: str) -> str:
    """A stream the tenant sends: a pause of one it has not would stop nothing."""
    assert tenant is not None
    if value not in tenant.streams:
        raise ValueError(f"{tenant.name} sends no {value!r} stream (streams: {', '.join(tenant.streams)})")
    return value


def _ip_scope_key(tenant: Tenant | None, value: str) -> str:
    """One of the tenant's IPs, in its canonical form: the pacer looks pauses up by it."""
    assert tenant is not None
    try:
        value = canonical_ip(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address") from None
    if value not in {canonical_ip(ip.address) for ip in tenant.ips}:
        raise ValueError(f"{value} is not an IP of {tenant.name}")
    return value


def _domain_scope_key(_tenant: Tenant | None, value: str) -> str:
    """A recipient domain, normalised as recipients' domains are: any domain, the tenant's or every tenant's."""
    try:
        return normalise_domain(value)
    except ValueError as err:
        raise ValueError(f"{value!r} is not a domain: {err}") from None


_SCOPE_KEYS: dict[str, Callable[[Tenant | None, str], str]] = {
    "tenant": _tenant_scope_key, "stream": _stream_scope_key, "ip": _ip_scope_key, "domain": _domain_scope_key}
"""Each scope's key, checked against the tenant (None: the request names none) and normalised."""


@dataclass(frozen=True)
class InForce:
    """The pauses in force, indexed the way the pacer and the API ask about them."""

    tenants: dict[str, PauseRow]
    streams: dict[tuple[str, str], PauseRow]
    ips: dict[str, PauseRow]
    domains: dict[tuple[str | None, str], PauseRow]
    drains: dict[tuple[str, str], PauseRow]
    """(tenant, stream or "") of each drain."""

    @classmethod
    def of(cls, rows: Iterable[PauseRow]) -> InForce:
        found = cls({}, {}, {}, {}, {})
        for row in sorted(rows, key=lambda r: r.id):  # the oldest of two on one scope is the one shown
            if row.mode == "drain":
                found.drains.setdefault((row.tenant or "", row.key), row)
            elif row.scope == "tenant" and row.tenant is not None:
                found.tenants.setdefault(row.tenant, row)
            elif row.scope == "stream" and row.tenant is not None:
                found.streams.setdefault((row.tenant, row.key), row)
            elif row.scope == "ip":
                found.ips.setdefault(row.key, row)
            elif row.scope == "domain":
                found.domains.setdefault((row.tenant, row.key), row)
        return found

    def route(self, tenant: str, stream: str) -> Pause | None:
        row = self.tenants.get(tenant) or self.streams.get((tenant, stream))
        return row.pause if row else None

    def ip(self, address: str) -> Pause | None:
        row = self.ips.get(address)
        return row.pause if row else None

    def domain(self, tenant: str, domain: str) -> Pause | None:
        row = self.domains.get((tenant, domain)) or self.domains.get((None, domain))
        return row.pause if row else None

    def about(self, tenant: str) -> list[str]:
        """What is in force on ``tenant``, its streams, IPs and recipients' domains, each in a sentence."""
        rows = [*(r for t, r in self.tenants.items() if t == tenant),
                *(r for (t, _), r in self.streams.items() if t == tenant),
                *(r for r in self.ips.values() if r.tenant == tenant),
                *(r for (t, _), r in self.domains.items() if t in (tenant, None)),
                *(r for (t, _), r in self.drains.items() if t == tenant)]
        return [("drain: new mail refused: " if r.mode == "drain" else "") + r.pause.reason
                for r in sorted(rows, key=lambda r: r.id)]

    def drain(self, tenant: str, stream: str) -> PauseRow | None:
        return self.drains.get((tenant, "")) or self.drains.get((tenant, stream))
