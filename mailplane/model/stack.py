"""The validated fleet of one stack: what every consumer reads, with look-ups they share."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from mailplane.model.fleet import FleetSettings, ReputationPolicy, TenantGuard
from mailplane.model.routes import Route, tenant_routes
from mailplane.model.source import SourceDoc
from mailplane.model.tenant import Domain, Ip, Tenant
from mailplane.model.warmup_plans import PRESETS, WarmupPlan, build_plan


@dataclass(frozen=True)
class IpRef:
    """An IP with its tenant: most consumers need both."""

    tenant: Tenant
    ip: Ip


@dataclass(eq=False)
class Fleet:
    """One loaded stack: fleet.yaml's settings and its tenants.

    ``stack`` is the folder name; ``tenants`` are sorted by name, so output is deterministic.
    """

    stack: str
    root: Path
    settings: FleetSettings
    tenants: tuple[Tenant, ...]
    sources: dict[str, SourceDoc] = field(repr=False)
    """``"fleet"`` and each tenant name to its parsed file, for located reports downstream."""

    @cached_property
    def plans(self) -> dict[str, WarmupPlan]:
        """Built-in presets plus this stack's own plans (which may not shadow a preset)."""
        own = {name: build_plan(name, spec) for name, spec in self.settings.warmup_plans.items()}
        return {**PRESETS, **own}

    @cached_property
    def _tenants(self) -> dict[str, Tenant]:
        return {t.name: t for t in self.tenants}

    def tenant(self, name: str) -> Tenant:
        return self._tenants[name]

    def ips(self) -> Iterator[IpRef]:
        for tenant in self.tenants:
            for ip in tenant.ips:
                yield IpRef(tenant, ip)

    @cached_property
    def ips_by_host(self) -> dict[str, tuple[IpRef, ...]]:
        by_host: dict[str, list[IpRef]] = {name: [] for name in sorted(self.settings.mta_hosts)}
        for ref in self.ips():
            by_host[ref.ip.host].append(ref)
        return {host: tuple(refs) for host, refs in by_host.items()}

    @cached_property
    def domains(self) -> dict[str, tuple[Tenant, Domain]]:
        return {d.name: (t, d) for t in self.tenants for d in t.domains}

    @cached_property
    def routes(self) -> dict[tuple[str, str], Route]:
        """(tenant, stream) to its route (:mod:`mailplane.model.routes`), tenants by name, streams in order."""
        return {(r.tenant, r.stream): r for t in self.tenants for r in tenant_routes(t)}

    def route(self, tenant: str, stream: str) -> Route:
        return self.routes[(tenant, stream)]

    def dns_provider(self, domain: Domain) -> str:
        """The domain's own provider, else the fleet's default."""
        return domain.dns.provider or self.settings.dns.default_provider

    def plan_for(self, ip: Ip) -> WarmupPlan | None:
        return self.plans[ip.warmup.plan] if ip.warmup else None

    def guard_for(self, tenant: Tenant) -> TenantGuard:
        """The rates at which the tenant's sending pauses: its own, else the fleet's default."""
        return tenant.guard or self.settings.guard

    def reputation_policy_for(self, tenant: Tenant) -> ReputationPolicy:
        """The SES reputation policy of the tenant: its own, else the fleet's default."""
        return tenant.ses.reputation_policy or self.settings.ses.reputation_policy
