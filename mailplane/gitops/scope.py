"""Which tenants a change touches, so ``plan --base`` runs the Pulumi program for those alone.

The program declares each tenant's resources from that tenant's file and the stack's shared settings
only (``mailplane.cloud.program``), so a tenant whose file is the same on both sides, under the same
shared settings, declares the same resources on both: running the program for it cannot show a
change.  Running it for the touched tenants alone is what keeps a one-domain pull request on a
thousand-tenant fleet a matter of seconds.  When the stack's shared settings change (fleet.yaml:
SES, DNS, the sender, warmup plans, MTA hosts), or there is no base, every tenant is run.

Pure: the fleet changes (``mailplane.gitops.diff.item_changes``) and both fleets in.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from mailplane.gitops.diff import ItemChange
from mailplane.model.stack import Fleet

SHARED_KINDS = frozenset({"setting", "warmup_plan", "mta_host"})
TENANT_KINDS = frozenset({"tenant", "domain", "ip", "sender"})


@dataclass(frozen=True)
class Scope:
    tenants: frozenset[str] | None
    """The tenants to run the program for; None: all of them."""
    total: int
    """Tenants of the head and the base together."""
    why: str
    """One sentence for the review."""

    def planned(self, fleet: Fleet | None) -> Fleet | None:
        """``fleet`` with only the tenants in scope (the fleet itself when every tenant is)."""
        if fleet is None or self.tenants is None:
            return fleet
        return replace(fleet, tenants=tuple(t for t in fleet.tenants if t.name in self.tenants))


def scope_of(items: list[ItemChange], base: Fleet | None, head: Fleet) -> Scope:
    names = {t.name for t in head.tenants} | ({t.name for t in base.tenants} if base is not None else set())
    if base is None:
        return Scope(None, len(names), f"Pulumi program run for all {len(names)} tenants: a new stack")
    shared = sorted({i.name if i.kind == "setting" else i.kind.replace("_", " ") for i in items
                     if i.kind in SHARED_KINDS})
    if shared:
        return Scope(None, len(names), f"Pulumi program run for all {len(names)} tenants: fleet.yaml's "
                     f"{', '.join(shared)} changed")
    touched: set[str] = set()
    for item in items:
        if item.kind not in TENANT_KINDS:
            continue
        touched.add(item.name if item.kind == "tenant" else item.tenant or item.name)
        touched.update(str(f.before) for f in item.fields if f.path == "tenant" and f.before)  # moved from
    listed = ", ".join(sorted(touched)) or "none"
    return Scope(frozenset(touched), len(names), f"Pulumi program run for {len(touched)} of {len(names)} tenants, "
                 f"those the change touches ({listed}); the others' resources are unchanged")


def changed_files(items: list[ItemChange]) -> frozenset[str]:
    """The stack's files a change edits, relative to the stack (``fleet.yaml``, ``tenants/<name>.yaml``), as far
    as the fleet's items tell: what a pull-request comment shows the findings of."""
    files: set[str] = set()
    for item in items:
        if item.kind in SHARED_KINDS:
            files.add("fleet.yaml")
        elif item.kind in TENANT_KINDS:
            files.add(f"tenants/{item.name if item.kind == 'tenant' else item.tenant or item.name}.yaml")
            files.update(f"tenants/{f.before}.yaml" for f in item.fields if f.path == "tenant" and f.before)
    return frozenset(files)
