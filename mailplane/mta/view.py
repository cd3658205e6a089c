"""The per-host view of the fleet: everything one MTA host's PowerMTA config is made of.

Pure: a function of the fleet, a host name and a date, no I/O.  Two renderers read it, the
Python one (:mod:`mailplane.mta.render`) and the Ansible role (through inventory host vars), and
both feed :meth:`HostView.to_vars` to the same template, so the view is where every decision
lives and the template only spells it.  Names come from :mod:`mailplane.model.names`, routes,
selectors and return paths from :mod:`mailplane.model.routes`, caps from
:mod:`mailplane.warmup.status`, provider numbers from :mod:`mailplane.mta.providers`: nothing
here computes a VMTA name, a route or a warmup cap of its own.

What the view decides, each in documented PowerMTA syntax (``docs/powermta.md``):

- an IP that may send today gets a VMTA with its PTR name, a DKIM key per domain of its tenant,
  a ceiling across all destination domains (``max-smtp-msg-rate``, the guide's VMTA-level limit)
  and inside it each provider group's share of that ceiling; an IP that may not send yet (its plan
  starts later, or its cap is 0) gets **no VMTA at all**, so no pool, header or route can reach it
  (the guide documents no switch that blocks a VMTA, and a rate of 0 is undefined);
- except an IP whose plan starts within the lead (fleet.yaml's ``powermta.vmta_lead_days``, default
  :data:`~mailplane.model.fleet.DEFAULT_VMTA_LEAD_DAYS`): the sender names an IP's VMTA from 00:00
  UTC of its first plan day, but the host's PowerMTA gets a new config only when that day's Ansible
  run reloads it, and a message naming a VMTA PowerMTA does not know is refused.  So the VMTA is
  deployed that many days ahead, with its keys and its first day's numbers, and in **no pool**: a
  VMTA outside every pool is idle, only the sender's source (``process-x-virtual-mta``) could pick
  it by header, and the sender does not name it before its first day;
- one pool per (tenant, stream) route with the route's VMTAs on this host that may send today, so
  marketing mail never leaves from a transactional IP;
- the return path domains of the routes with an IP here, and the feedback-loop addresses of their
  tenants, which PowerMTA accepts on port 25 of the host's IPs and parses (bounce and feedback-loop
  processors) into accounting records the sender reads.

The output is deterministic (VMTAs by tenant then address, pools by name, keys and domains sorted)
and nothing in it depends on the date except the throttle numbers, which IPs are deployed (from the
lead on) and which have begun (pool members), so the diff between two days' configs is the warmup
numbers that changed, plus a VMTA on the first day of its lead and its pool lines on its first day.
"""

from __future__ import annotations

import datetime
import ipaddress
import math
from dataclasses import dataclass
from typing import Any

from mailplane.model import names
from mailplane.model.addresses import format_listener, parse_listener
from mailplane.model.stack import Fleet, IpRef
from mailplane.mta import providers as pv
from mailplane.warmup.status import IpStatus, ip_status


@dataclass(frozen=True)
class Throttle:
    """One provider group's limits on one VMTA: a ``<domain>`` block inside the ``<virtual-mta>``."""

    group: str
    domain: str
    msg_per_hour: int
    backoff_msg_per_hour: int
    smtp_out: int


@dataclass(frozen=True)
class DkimKey:
    """A key PowerMTA signs with: ``domain-key SELECTOR,DOMAIN,KEYFILE`` (BYODKIM, or an Easy DKIM domain's own)."""

    selector: str
    domain: str
    key_file: str
    """File name only; the folder is the renderer's ``paths.dkim_dir``."""


@dataclass(frozen=True)
class Vmta:
    """One virtual MTA per dedicated IP that may send on the view's date or starts within the lead."""

    name: str
    tenant: str
    address: str
    ptr: str
    status: IpStatus
    """The status its numbers are for: on the view's date, or on ``starts`` for a VMTA deployed ahead."""
    ceiling: int | None
    """PowerMTA's hourly ceiling for the IP (see :func:`ceiling`); None for an IP without a plan."""
    max_msg_per_hour: int
    """The VMTA's own ``max-smtp-msg-rate``: the ceiling, or the providers' warm rates added up."""
    dkim: tuple[DkimKey, ...]
    """One key for every domain of the tenant, each for its own domain only (no ``*`` key)."""
    throttles: tuple[Throttle, ...]
    starts: datetime.date | None = None
    """The IP's first plan day when it is after the view's date (deployed ahead, within the lead):
    in no pool, and with that day's numbers, what it will send at; None when it may send today."""


@dataclass(frozen=True)
class HeldIp:
    """An IP of this host without a VMTA today, and why (shown in the config as a comment)."""

    tenant: str
    address: str
    reason: str


@dataclass(frozen=True)
class Pool:
    """One pool per (tenant, stream) route with an IP on the host that may send today."""

    name: str
    tenant: str
    stream: str
    vmtas: tuple[str, ...]


@dataclass(frozen=True)
class HostView:
    stack: str
    host: str
    postmaster: str | None
    listeners: tuple[str, ...]
    """Where the sender service submits (loopback, the private address)."""
    inbound_listeners: tuple[str, ...]
    """Port 25 of every dedicated IP of the host: remote bounces and feedback-loop reports arrive here."""
    submit_from: tuple[str, ...]
    """Client addresses that may relay and choose a VMTA: where the sender service submits from."""
    anyone: tuple[str, ...]
    """Everyone else: SMTP only to the return path domains (bounces, reports), no relaying, no VMTA choice."""
    http_mgmt_port: int
    http_admin: tuple[str, ...]
    providers: tuple[pv.Provider, ...]
    vmtas: tuple[Vmta, ...]
    held: tuple[HeldIp, ...]
    pools: tuple[Pool, ...]
    bounce_domains: tuple[str, ...]
    """Return path domains of the routes with an IP here: the bounce processor's addresses."""
    feedback_addresses: tuple[str, ...]
    """Feedback-loop addresses of the tenants with an IP here: the feedback-loop processor's."""
    vmta_lead_days: int
    """Days before its first plan day that an IP's VMTA is deployed (see the module's docstring)."""

    @property
    def relay_domains(self) -> tuple[str, ...]:
        """Domains PowerMTA accepts mail for from anyone: the return paths and the feedback-loop domains."""
        return tuple(sorted({*self.bounce_domains, *(a.rpartition("@")[2] for a in self.feedback_addresses)}))

    def to_vars(self) -> dict[str, Any]:
        """The ``pmta`` variable of ``templates/powermta/config.j2``: plain JSON data, fixed order.

        Only str, int, list and dict (and null: an IP without a plan, an IP not deployed ahead), so
        Ansible can carry it in inventory host vars and template it exactly as the Python renderer
        does.  Keys avoid the names of dict methods (``items``, ``keys``, ``values``): ``pmta.items``
        in Jinja would be the method, not the data.
        """
        return {
            "stack": self.stack,
            "host": self.host,
            "postmaster": self.postmaster,
            "vmta_lead_days": self.vmta_lead_days,
            "listeners": list(self.listeners),
            "inbound_listeners": list(self.inbound_listeners),
            "sources": {"submit_from": list(self.submit_from), "anyone": list(self.anyone),
                        "default_vmta": pv.UNROUTED_VMTA},
            "http_mgmt": {"port": self.http_mgmt_port, "admin": list(self.http_admin)},
            "backoff": {"pattern_list": pv.BACKOFF_PATTERN_LIST,
                        "replies": [{"provider": r.provider, "pattern": r.pattern} for r in pv.BACKOFF_REPLIES]},
            "rollups": [{"mx": m.pattern, "name": p.domain, "option": "rollup-by-ip" if m.by_ip else ""}
                        for p in self.providers for m in p.mx],
            "providers": [
                {"group": p.group, "domain": p.domain,
                 "max_msg_per_connection": p.max_msg_per_connection, "retry_after": p.retry_after,
                 "backoff_retry_after": p.backoff_retry_after,
                 "backoff_to_normal_after": p.backoff_to_normal_after}
                for p in self.providers
            ],
            "vmtas": [
                {"name": v.name, "tenant": v.tenant, "address": v.address, "ptr": v.ptr,
                 "plan": v.status.plan,
                 "started": v.status.started.isoformat() if v.status.started else None,
                 "starts": v.starts.isoformat() if v.starts else None,
                 "max_smtp_msg_rate": pv.rate_text(v.max_msg_per_hour),
                 "max_smtp_out": sum(t.smtp_out for t in v.throttles),
                 "dkim": [{"selector": k.selector, "domain": k.domain, "key_file": k.key_file} for k in v.dkim],
                 "throttles": [
                     {"group": t.group, "domain": t.domain, "max_msg_rate": pv.rate_text(t.msg_per_hour),
                      "backoff_max_msg_rate": pv.rate_text(t.backoff_msg_per_hour), "max_smtp_out": t.smtp_out}
                     for t in v.throttles
                 ]}
                for v in self.vmtas
            ],
            "held": [{"tenant": h.tenant, "address": h.address, "reason": h.reason} for h in self.held],
            "pools": [{"name": p.name, "tenant": p.tenant, "stream": p.stream, "vmtas": list(p.vmtas)}
                      for p in self.pools],
            "inbound": {"bounce_domains": list(self.bounce_domains),
                        "feedback_addresses": list(self.feedback_addresses),
                        "relay_domains": list(self.relay_domains)},
        }


def ceiling(hourly_cap: int) -> int:
    """PowerMTA's hourly ceiling for an IP whose sender gate is ``hourly_cap`` messages an hour.

    ``ceil(hourly_cap * HEADROOM_FACTOR) + HEADROOM_EXTRA`` (factor 11/10, extra 2), or 0 when the
    cap is 0 (the plan has not started).  Strictly above the cap, so in normal operation the
    sender's gate is what paces mail and PowerMTA never defers it; only just above it, so if the
    gate fails (a bug, a second sender instance, a retry storm, mail injected by hand) PowerMTA
    alone holds the IP within about 10 % of its warmup cap instead of running at full speed.
    The VMTA's ``max-smtp-msg-rate`` applies it across all destination domains; the provider
    groups' rates divide it, and the ``*`` rate bounds each long-tail domain within it.
    """
    if hourly_cap <= 0:
        return 0
    return math.ceil(hourly_cap * pv.HEADROOM_FACTOR) + pv.HEADROOM_EXTRA


def _ceil_div(a: int, b: int) -> int:
    """Integer ceiling of a / b: exact where float division is not, for any size of cap."""
    return -(-a // b)


def throttles(status: IpStatus) -> tuple[Throttle, ...]:
    """Per provider group of one IP that may send, on the status's date.

    - warming or warm with a plan: ``msg_per_hour = max(1, ceil(ceiling * share))`` for the
      group's share (:data:`~mailplane.mta.providers.PROVIDERS`); never 0, and the groups together
      allow at least the ceiling, at most one message per group more (the VMTA's own rate is the
      ceiling itself, so the groups' rounding never lets the IP past it);
    - ``backoff_msg_per_hour = max(1, ceil(msg_per_hour / BACKOFF_DIVISOR))``: a queue in backoff
      slows down, and because it is derived per VMTA it can never be above the normal rate (a
      static backoff rate on the provider block would raise a cold IP's ceiling);
    - ``smtp_out = min(provider.max_smtp_out, max(1, ceil(msg_per_hour / MSGS_PER_CONNECTION_HOUR)))``;
    - no plan (an IP declared warm): the provider's ``warm_msg_per_hour`` and ``max_smtp_out``.
    """
    top = ceiling(status.hourly_cap) if status.hourly_cap is not None else None
    if top == 0:
        raise ValueError(f"{status.address} may not send (day {status.day}): it gets no VMTA, hence no throttles")
    out = []
    for provider in pv.PROVIDERS:
        rate = provider.warm_msg_per_hour if top is None else max(1, math.ceil(top * provider.share))
        backoff = max(1, _ceil_div(rate, pv.BACKOFF_DIVISOR))
        smtp_out = min(provider.max_smtp_out, max(1, _ceil_div(rate, pv.MSGS_PER_CONNECTION_HOUR)))
        out.append(Throttle(provider.group, provider.domain, rate, backoff, smtp_out))
    return tuple(out)


def _address_key(ref: IpRef) -> tuple[str, int, int]:
    address = ipaddress.ip_address(ref.ip.address)
    return ref.tenant.name, address.version, int(address)


def may_send(status: IpStatus) -> bool:
    """An IP gets a VMTA when its cap today is above 0 (or it has no plan: declared warm)."""
    return status.hourly_cap is None or status.hourly_cap > 0


def deployed_ahead(status: IpStatus, on: datetime.date, lead: int) -> datetime.date | None:
    """The IP's first plan day when it is 1 to ``lead`` days after ``on``: its VMTA goes out ahead.

    The sender names the VMTA from 00:00 UTC of that day, hours before that day's Ansible run
    reloads PowerMTA; configs rendered the ``lead`` days before already carry it.
    """
    if status.state != "scheduled" or status.started is None:
        return None
    return status.started if 0 < (status.started - on).days <= lead else None


def _vmta(ref: IpRef, status: IpStatus, starts: datetime.date | None = None) -> Vmta:
    keys = tuple(DkimKey(selector, d.name, names.dkim_key_file(selector, d.name))
                 for d in sorted(ref.tenant.domains, key=lambda d: d.name)
                 for selector in [names.powermta_selector(d)])
    top = ceiling(status.hourly_cap) if status.hourly_cap is not None else None
    found = throttles(status)
    return Vmta(
        name=names.vmta_name(ref.tenant.name, ref.ip.address),
        tenant=ref.tenant.name,
        address=ref.ip.address,
        ptr=ref.ip.hostname,
        status=status,
        ceiling=top,
        max_msg_per_hour=top if top is not None else sum(t.msg_per_hour for t in found),
        dkim=keys,
        throttles=found,
        starts=starts,
    )


def _held(ref: IpRef, status: IpStatus, lead: int) -> HeldIp:
    if status.started and status.day < 1:
        deployed = status.started - datetime.timedelta(days=lead)
        reason = (f"warmup plan {status.plan} starts on {status.started.isoformat()}; its VMTA is deployed "
                  f"from {deployed.isoformat()} (vmta_lead_days {lead})")
    else:
        reason = f"its cap today is 0 ({status.state})"
    return HeldIp(ref.tenant.name, ref.ip.address, reason)


def _ip_vmta(fleet: Fleet, ref: IpRef, on: datetime.date, lead: int) -> Vmta | HeldIp:
    """The IP's VMTA on ``on``: with today's numbers, or deployed ahead with its first day's; else why not."""
    plan = fleet.plan_for(ref.ip)
    status = ip_status(ref.tenant, ref.ip, plan, on)
    if may_send(status):
        return _vmta(ref, status)
    starts = deployed_ahead(status, on, lead)
    if starts is not None:
        first = ip_status(ref.tenant, ref.ip, plan, starts)
        if may_send(first):
            return _vmta(ref, first, starts)
        return HeldIp(ref.tenant.name, ref.ip.address, f"its cap on its first plan day, {starts.isoformat()}, is 0")
    return _held(ref, status, lead)


def host_view(fleet: Fleet, host: str, on: datetime.date) -> HostView:
    """The view of MTA host ``host`` (a key of ``mta_hosts``) on date ``on``.

    Listeners: the host's ``smtp_listener``, plus the same port on its ``private_address`` when it
    has one, since the sender may submit from that address and a loopback-only listener would
    not accept it; and port 25 of each of the host's dedicated IPs, for bounces and reports.
    Submit addresses: both loopbacks and the private address.  An IP whose plan starts within
    the fleet's VMTA lead gets its VMTA now, in no pool (:func:`deployed_ahead`).
    """
    try:
        settings = fleet.settings.mta_hosts[host]
    except KeyError:
        raise KeyError(f"no MTA host {host!r} in stack {fleet.stack}") from None
    listeners = [settings.smtp_listener]
    submit = list(pv.LOOPBACK)
    if settings.private_address:
        listeners.append(format_listener(settings.private_address, parse_listener(settings.smtp_listener)[1]))
        submit.append(settings.private_address)
    refs = sorted(fleet.ips_by_host.get(host, ()), key=_address_key)
    lead = fleet.settings.vmta_lead_days
    vmtas: list[Vmta] = []
    held: list[HeldIp] = []
    for ref in refs:
        found = _ip_vmta(fleet, ref, on, lead)
        if isinstance(found, Vmta):
            vmtas.append(found)
        else:
            held.append(found)
    sending = {(v.tenant, v.address): v.name for v in vmtas if v.starts is None}  # pool members
    here = {(ref.tenant.name, ref.ip.address) for ref in refs}
    pools, bounce, feedback = [], set(), set()
    for (tenant_name, stream), route in fleet.routes.items():
        on_host = [ip.address for ip in route.ips if (tenant_name, ip.address) in here]
        if not on_host:
            continue
        tenant = fleet.tenant(tenant_name)
        for domain in tenant.domains:
            bounce.add(names.return_path_domain(domain, stream))
            feedback.add(names.feedback_address(domain))
            assert names.return_path_base(domain) == names.feedback_address(domain).rpartition("@")[2]
        members = tuple(sending[(tenant_name, a)] for a in sorted(on_host, key=_ip_key)
                        if (tenant_name, a) in sending)
        if members:
            pools.append(Pool(names.pool_name(tenant_name, stream), tenant_name, stream, members))
    return HostView(
        stack=fleet.stack,
        host=host,
        postmaster=fleet.settings.powermta.postmaster if fleet.settings.powermta else None,
        listeners=tuple(dict.fromkeys(listeners)),
        inbound_listeners=tuple(format_listener(ref.ip.address, pv.INBOUND_PORT) for ref in refs),
        submit_from=tuple(dict.fromkeys(submit)),
        anyone=pv.DENY_SOURCES,
        http_mgmt_port=pv.HTTP_MGMT_PORT,
        http_admin=pv.LOOPBACK,
        providers=pv.PROVIDERS,
        vmtas=tuple(vmtas),
        held=tuple(held),
        pools=tuple(sorted(pools, key=lambda p: p.name)),
        bounce_domains=tuple(sorted(bounce)),
        feedback_addresses=tuple(sorted(feedback)),
        vmta_lead_days=lead,
    )


def _ip_key(address: str) -> tuple[int, int]:
    parsed = ipaddress.ip_address(address)
    return parsed.version, int(parsed)
