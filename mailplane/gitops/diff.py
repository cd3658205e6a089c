"""What a change does: the base fleet against the head fleet, in the terms reviewers check.

A YAML diff shows which keys moved; a reviewer needs to know what that *does*: which tenants,
domains, IPs and senders appear or go, which DNS records someone must publish or remove, which
cloud resources Pulumi would create, update, replace or delete, what each MTA host's PowerMTA
config becomes, and how much each tenant may send today and in a month.  Every one of those is
computed by the module that owns it (records, the Pulumi program, the PowerMTA renderer, warmup
status) for both fleets and compared here, so the review cannot disagree with what is deployed.

Pure: two fleets (the base may be None: a new stack), their offline Pulumi plans (computed by the
caller, which owns running the program under mocks) and a date in; a :class:`StackDiff` out.
"""

from __future__ import annotations

import datetime
import difflib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel

from mailplane.cloud.plan import UNKNOWN, PlannedResource
from mailplane.model import records as rec
from mailplane.model.problems import format_path
from mailplane.model.stack import Fleet
from mailplane.mta.render import render_host
from mailplane.warmup.status import TenantCapacity, tenant_capacity

LATER_DAYS = 30
"""Capacity is compared today and this many days later: a warmup edit often shows only ahead."""

ItemAction = Literal["add", "remove", "change"]
RecordAction = Literal["publish", "remove", "update"]
ResourceAction = Literal["create", "update", "replace", "delete"]
ITEM_KINDS = ("setting", "warmup_plan", "mta_host", "tenant", "domain", "ip", "sender")
"""Order of the fleet changes in every format: the stack's own settings, then tenants' things."""

REPLACE_ON: dict[str, frozenset[str]] = {
    "aws:sesv2/emailIdentity:EmailIdentity": frozenset({"emailIdentity"}),
    "aws:sesv2/emailIdentityMailFromAttributes:EmailIdentityMailFromAttributes": frozenset({"emailIdentity"}),
    "aws:sesv2/configurationSet:ConfigurationSet": frozenset({"configurationSetName"}),
    "aws:sesv2/configurationSetEventDestination:ConfigurationSetEventDestination": frozenset(
        {"configurationSetName", "eventDestinationName"}),
    "aws:sesv2/dedicatedIpPool:DedicatedIpPool": frozenset({"poolName", "scalingMode"}),
    "aws:iam/user:User": frozenset({"name"}),
    "aws:iam/accessKey:AccessKey": frozenset({"user"}),
    "aws:iam/userPolicy:UserPolicy": frozenset({"name", "user"}),
    "aws:sns/topic:Topic": frozenset({"name"}),
    "aws:sns/topicPolicy:TopicPolicy": frozenset({"arn"}),
    "aws:sns/topicSubscription:TopicSubscription": frozenset({"topic", "protocol", "endpoint"}),
    "aws:route53/record:Record": frozenset({"zoneId", "name", "type"}),
    "tls:index/privateKey:PrivateKey": frozenset({"algorithm", "rsaBits", "ecdsaCurve"}),
    "pulumi:providers:aws": frozenset({"region"}),
}
"""Inputs the provider cannot change in place (its "forces replacement"), for the types the program
declares.  A best offline estimate: ``pulumi preview`` against the real state has the last word."""

PARENT = "(parent)"
"""Pseudo-input of a resource that moved to another parent (a domain moved to another tenant):
its URN changes, so without an alias Pulumi creates the new one and deletes the old."""


@dataclass(frozen=True)
class FieldChange:
    path: str
    """As users write it: ``warmup.plan``, ``schedule[3].daily``."""
    before: Any
    """JSON-like; None when absent or unset."""
    after: Any


@dataclass(frozen=True)
class ItemChange:
    """A tenant, domain, IP, sender, warmup plan, MTA host or fleet setting added, removed or changed."""

    kind: str
    name: str
    tenant: str | None
    """The owning tenant (the head's, or the base's for a removal); None for the stack's own things."""
    action: ItemAction
    fields: tuple[FieldChange, ...] = ()
    """For a change: every leaf that differs, before and after."""


@dataclass(frozen=True)
class DnsRecord:
    name: str
    type: str
    value: str
    ttl: int
    purpose: str
    domain: str
    tenant: str
    provider: str
    """``route53``: Pulumi publishes it; ``external``: a human publishes it at the DNS provider."""
    count: int = 1
    """Easy DKIM is one entry standing for SES's three CNAMEs, whose tokens come after apply."""
    known: bool = True
    """False when part of it (DKIM tokens, a BYODKIM public key) is known only after apply."""


@dataclass(frozen=True)
class RecordChange:
    action: RecordAction
    record: DnsRecord
    """The record as it will be; for a removal, as it was."""
    before: DnsRecord | None = None
    """For an update: the record as it was (value, TTL or provider differ)."""


@dataclass(frozen=True)
class InputChange:
    key: str
    before: Any
    after: Any
    forces_replacement: bool


@dataclass(frozen=True)
class ResourceChange:
    action: ResourceAction
    type: str
    name: str
    tenant: str | None
    parent: str | None
    inputs: dict[str, Any]
    """As planned: the head's, or the base's for a deletion."""
    changes: tuple[InputChange, ...] = ()


@dataclass(frozen=True)
class HostDiff:
    host: str
    action: ItemAction
    diff: str
    """Unified diff of the host's PowerMTA config, base (``a/``) to head (``b/``)."""
    added: int
    removed: int


@dataclass(frozen=True)
class Capacity:
    """A tenant's capacity (messages per day) today and :data:`LATER_DAYS` later, before and after."""

    tenant: str
    before: tuple[TenantCapacity, TenantCapacity] | None
    """None: the tenant is new."""
    after: tuple[TenantCapacity, TenantCapacity] | None
    """None: the tenant is removed."""

    @property
    def changed(self) -> bool:
        def key(caps: tuple[TenantCapacity, TenantCapacity] | None) -> object:
            return None if caps is None else [(c.daily, c.hourly, c.ip_daily) for c in caps]
        return key(self.before) != key(self.after)


@dataclass(frozen=True)
class StackDiff:
    stack: str
    on: datetime.date
    base_exists: bool
    items: tuple[ItemChange, ...]
    records: tuple[RecordChange, ...]
    resources: tuple[ResourceChange, ...]
    hosts: tuple[HostDiff, ...]
    capacity: tuple[Capacity, ...]
    """Every tenant of either side, changed or not (formats for people show the changed ones)."""

    @property
    def later(self) -> datetime.date:
        return self.on + datetime.timedelta(days=LATER_DAYS)

    @property
    def changed(self) -> bool:
        return bool(self.items or self.records or self.resources or self.hosts
                    or any(c.changed for c in self.capacity))


# --- fleet items ---------------------------------------------------------------------------------

def _flatten(value: Any, path: tuple[object, ...] = ()) -> Iterator[tuple[tuple[object, ...], Any]]:
    """Leaves of a dumped model.  A list of scalars (events, From addresses) is one leaf: its
    order and members read better whole; a list of mappings (a schedule) is walked by index."""
    if isinstance(value, dict) and value:
        for key, child in value.items():
            yield from _flatten(child, (*path, key))
    elif isinstance(value, list) and value and any(isinstance(v, dict | list) for v in value):
        for i, child in enumerate(value):
            yield from _flatten(child, (*path, i))
    elif not isinstance(value, dict):  # an empty mapping (no waivers) is no leaf: adding one shows its key
        yield path, value


def _dump(model: BaseModel | None, exclude: set[str] | None = None) -> dict[str, Any]:
    if model is None:
        return {}
    return model.model_dump(mode="json", by_alias=True, exclude=exclude)


def field_changes(before: dict[str, Any], after: dict[str, Any]) -> tuple[FieldChange, ...]:
    """Every leaf that differs, in the head's key order, then what only the base had."""
    old, new = dict(_flatten(before)), dict(_flatten(after))
    paths = list(new) + [p for p in old if p not in new]
    return tuple(FieldChange(format_path(p), old.get(p), new.get(p)) for p in paths if old.get(p) != new.get(p))


def _compare(kind: str, base: dict[Any, tuple[str | None, dict[str, Any]]],
             head: dict[Any, tuple[str | None, dict[str, Any]]], name: Any = str) -> list[ItemChange]:
    """Items keyed alike on both sides: (tenant, dumped fields) by key."""
    out = []
    for key in sorted(base.keys() | head.keys()):
        label = name(key)
        if key not in base:
            out.append(ItemChange(kind, label, head[key][0], "add"))
        elif key not in head:
            out.append(ItemChange(kind, label, base[key][0], "remove"))
        else:
            (old_tenant, old), (new_tenant, new) = base[key], head[key]
            fields = field_changes(old, new)
            if old_tenant != new_tenant:
                fields = (FieldChange("tenant", old_tenant, new_tenant), *fields)
            if fields:
                out.append(ItemChange(kind, label, new_tenant, "change", fields))
    return out


def _items(fleet: Fleet | None) -> dict[str, dict[Any, tuple[str | None, dict[str, Any]]]]:
    out: dict[str, dict[Any, tuple[str | None, dict[str, Any]]]] = {kind: {} for kind in ITEM_KINDS}
    if fleet is None:
        return out
    settings = fleet.settings
    for key in ("ses", "dns", "sender"):
        value = getattr(settings, key)
        if value is not None:
            out["setting"][key] = (None, _dump(value))
    out["warmup_plan"] = {name: (None, _dump(spec)) for name, spec in settings.warmup_plans.items()}
    out["mta_host"] = {name: (None, _dump(host)) for name, host in settings.mta_hosts.items()}
    for t in fleet.tenants:
        out["tenant"][t.name] = (None, _dump(t, {"name", "domains", "ips", "senders"}))
        out["domain"].update({d.name: (t.name, _dump(d, {"name"})) for d in t.domains})
        out["ip"].update({ip.address: (t.name, _dump(ip, {"address"})) for ip in t.ips})
        out["sender"].update({(t.name, s.name): (t.name, _dump(s, {"name"})) for s in t.senders})
    return out


def item_changes(base: Fleet | None, head: Fleet) -> list[ItemChange]:
    old, new = _items(base), _items(head)
    out: list[ItemChange] = []
    for kind in ITEM_KINDS:
        out += _compare(kind, old[kind], new[kind], (lambda k: k[1]) if kind == "sender" else str)
    return out


# --- DNS records ---------------------------------------------------------------------------------

def dns_records(fleet: Fleet | None) -> dict[tuple[str, str, str], DnsRecord]:
    """Every record the fleet's domains need, by (name, type, domain), as far as known offline:
    the static ones in full, a BYODKIM selector's TXT by name, Easy DKIM as its three CNAMEs to be."""
    if fleet is None:
        return {}
    region, ttl = fleet.settings.ses.region, fleet.settings.dns.ttl
    out: dict[tuple[str, str, str], DnsRecord] = {}
    for tenant in fleet.tenants:
        for domain in tenant.domains:
            provider = fleet.dns_provider(domain)
            found: list[tuple[rec.Record, int, bool]] = []
            if domain.dkim.mode == "byo":
                found.append((rec.Record(rec.byo_dkim_name(domain), "TXT", ttl, UNKNOWN, "dkim"), 1, False))
            else:
                token = rec.easy_dkim_records(domain.name, ["<token>"], ttl)[0]
                found.append((token, rec.EASY_DKIM_TOKENS, False))
            if rec.has_powermta_key(tenant, domain):
                found.append((rec.Record(rec.powermta_dkim_name(domain), "TXT", ttl, UNKNOWN, "dkim-powermta"), 1,
                              False))
            found += [(r, 1, True) for r in rec.static_records(tenant, domain, region, ttl)]
            for r, count, known in found:
                out[(r.name, r.type, domain.name)] = DnsRecord(
                    r.name, r.type, ", ".join(r.values), r.ttl, r.purpose, domain.name, tenant.name, provider, count,
                    known)
    return out


def record_changes(base: Fleet | None, head: Fleet) -> list[RecordChange]:
    old, new = dns_records(base), dns_records(head)
    out = []
    for key in sorted(old.keys() | new.keys(), key=lambda k: (k[2], k[0], k[1])):
        if key not in old:
            out.append(RecordChange("publish", new[key]))
        elif key not in new:
            out.append(RecordChange("remove", old[key]))
        else:
            a, b = old[key], new[key]
            if (a.value, a.ttl, a.provider) != (b.value, b.ttl, b.provider):
                out.append(RecordChange("update", b, a))
    return out


# --- Pulumi resources ----------------------------------------------------------------------------

def _inputs_changes(type_: str, old: dict[str, Any], new: dict[str, Any]) -> tuple[InputChange, ...]:
    forcing = REPLACE_ON.get(type_, frozenset())
    return tuple(InputChange(k, old.get(k), new.get(k), k in forcing)
                 for k in sorted(old.keys() | new.keys()) if old.get(k) != new.get(k))


def resource_changes(base: list[PlannedResource], head: list[PlannedResource]) -> list[ResourceChange]:
    """By (type, name), in the head plan's order then the base's deletions.  Components
    (``mailplane:*``) have no inputs of their own: their children show what happens.

    The plans mask secrets and values AWS computes, so two masked values compare equal: a change
    inside a secret input (a BYODKIM identity's signing attributes) is not visible offline.
    """
    old = {(r.type, r.name): r for r in base if not r.type.startswith("mailplane:")}
    new = {(r.type, r.name): r for r in head if not r.type.startswith("mailplane:")}
    out = []
    for key, r in new.items():
        before = old.get(key)
        if before is None:
            out.append(ResourceChange("create", r.type, r.name, r.tenant, r.parent, r.inputs))
            continue
        changes = _inputs_changes(r.type, before.inputs, r.inputs)
        if before.parent != r.parent:
            changes = (InputChange(PARENT, before.parent, r.parent, True), *changes)
        if changes:
            action: ResourceAction = "replace" if any(c.forces_replacement for c in changes) else "update"
            out.append(ResourceChange(action, r.type, r.name, r.tenant, r.parent, r.inputs, changes))
    out += [ResourceChange("delete", r.type, r.name, r.tenant, r.parent, r.inputs)
            for key, r in old.items() if key not in new]
    return out


# --- PowerMTA ------------------------------------------------------------------------------------

def _hosts(fleet: Fleet | None) -> set[str]:
    return set(fleet.settings.mta_hosts) if fleet is not None else set()


def host_diffs(base: Fleet | None, head: Fleet, on: datetime.date) -> list[HostDiff]:
    """Per MTA host whose config differs on ``on``: the unified diff (3 lines of context)."""
    out = []
    for host in sorted(_hosts(base) | _hosts(head)):
        old = render_host(base, host, on) if base is not None and host in _hosts(base) else ""
        new = render_host(head, host, on) if host in _hosts(head) else ""
        if old == new:
            continue
        lines = list(difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                          f"a/powermta/{host}.config", f"b/powermta/{host}.config"))
        body = [line for line in lines[2:] if not line.startswith("@@")]
        added = sum(line.startswith("+") for line in body)
        removed = sum(line.startswith("-") for line in body)
        action: ItemAction = "add" if not old else "remove" if not new else "change"
        text = "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines)
        out.append(HostDiff(host, action, text, added, removed))
    return out


# --- capacity ------------------------------------------------------------------------------------

def _capacities(fleet: Fleet | None, on: datetime.date,
                later: datetime.date) -> dict[str, tuple[TenantCapacity, TenantCapacity]]:
    if fleet is None:
        return {}
    return {t.name: (tenant_capacity(fleet, t, on), tenant_capacity(fleet, t, later)) for t in fleet.tenants}


def capacities(base: Fleet | None, head: Fleet, on: datetime.date) -> list[Capacity]:
    later = on + datetime.timedelta(days=LATER_DAYS)
    old, new = _capacities(base, on, later), _capacities(head, on, later)
    return [Capacity(name, old.get(name), new.get(name)) for name in sorted(old.keys() | new.keys())]


def compare(base: Fleet | None, head: Fleet, on: datetime.date, base_plan: Iterable[PlannedResource],
            head_plan: Iterable[PlannedResource]) -> StackDiff:
    """Everything the change from ``base`` to ``head`` does, as of ``on``."""
    return StackDiff(
        stack=head.stack, on=on, base_exists=base is not None,
        items=tuple(item_changes(base, head)),
        records=tuple(record_changes(base, head)),
        resources=tuple(resource_changes(list(base_plan), list(head_plan))),
        hosts=tuple(host_diffs(base, head, on)),
        capacity=tuple(capacities(base, head, on)),
    )
