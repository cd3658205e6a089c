"""The per-host view of the fleet: everything one MTA host's PowerMTA config is made of.

Pure: a function of the fleet, a host name and a date, no I/O.  Two renderers read it, the
Python one (:mod:`mailplane.mta.render`) and the Ansible role (through inventory host vars), and
both feed :meth:`HostView.to_vars` to the same template, so the view is where every decision
lives and the template only spells it.  Names come from :mod:`mailplane.model.names`, caps from
:mod:`mailplane.warmup.status`, provider numbers from :mod:`mailplane.mta.providers`: nothing
here computes a VMTA name or a warmup cap of its own.

The output is deterministic (VMTAs by tenant then address, pools by tenant, DKIM keys by domain)
and nothing in it depends on the date except the throttle numbers, so the diff between two days'
configs is exactly the warmup numbers that changed.
"""

from __future__ import annotations

import datetime
import ipaddress
import math
from dataclasses import dataclass
from typing import Any

from mailplane.model import names
from mailplane.model.routes import powermta_selector
from mailplane.model.stack import Fleet, IpRef
from mailplane.model.types import normalise_listener
from mailplane.mta import providers as pv
from mailplane.warmup.status import IpStatus, ip_status


@dataclass(frozen=True)
class Throttle:
    """One provider group's limits on one VMTA: a ``<domain>`` block inside the ``<virtual-mta>``."""

    group: str
    domain: str
    msg_per_hour: int
    """0: the IP may not send yet (rendered as :data:`~mailplane.mta.providers.NOTHING_RATE`)."""
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
    """One virtual MTA per dedicated IP."""

    name: str
    tenant: str
    address: str
    ptr: str
    status: IpStatus
    ceiling: int | None
    """PowerMTA's hourly ceiling for the IP (see :func:`ceiling`); None for an IP without a plan."""
    dkim: tuple[DkimKey, ...]
    """One key for every domain of the tenant, each for its own domain only (no ``*`` key)."""
    throttles: tuple[Throttle, ...]


@dataclass(frozen=True)
class Pool:
    """One pool per tenant present on the host: the name the sender puts in ``X-Virtual-MTA``."""

    name: str
    tenant: str
    vmtas: tuple[str, ...]


@dataclass(frozen=True)
class HostView:
    stack: str
    host: str
    listeners: tuple[str, ...]
    submit_from: tuple[str, ...]
    """Client addresses that may relay and choose a VMTA: where the sender service submits from."""
    deny: tuple[str, ...]
    """Everyone else: no relaying, no SMTP service, no management access."""
    http_mgmt_port: int
    http_admin: tuple[str, ...]
    providers: tuple[pv.Provider, ...]
    vmtas: tuple[Vmta, ...]
    pools: tuple[Pool, ...]

    def to_vars(self) -> dict[str, Any]:
        """The ``pmta`` variable of ``templates/powermta/config.j2``: plain JSON data, fixed order.

        Only str, int, list and dict (and null for an IP without a plan), so Ansible can carry it
        in inventory host vars and template it exactly as the Python renderer does.  Keys avoid
        the names of dict methods (``items``, ``keys``, ``values``): ``pmta.items`` in Jinja would
        be the method, not the data.
        """
        return {
            "stack": self.stack,
            "host": self.host,
            "listeners": list(self.listeners),
            "sources": {"submit_from": list(self.submit_from), "deny": list(self.deny)},
            "http_mgmt": {"port": self.http_mgmt_port, "admin": list(self.http_admin)},
            "backoff": {"pattern_list": pv.BACKOFF_PATTERN_LIST, "replies": list(pv.BACKOFF_REPLIES)},
            "providers": [
                {"group": p.group, "domain": p.domain, "rollup": list(p.rollup),
                 "max_msg_per_connection": p.max_msg_per_connection, "retry_after": p.retry_after,
                 "backoff_retry_after": p.backoff_retry_after,
                 "backoff_to_normal_after": p.backoff_to_normal_after}
                for p in self.providers
            ],
            "vmtas": [
                {"name": v.name, "tenant": v.tenant, "address": v.address, "ptr": v.ptr,
                 "plan": v.status.plan,
                 "started": v.status.started.isoformat() if v.status.started else None,
                 "dkim": [{"selector": k.selector, "domain": k.domain, "key_file": k.key_file} for k in v.dkim],
                 "throttles": [
                     {"group": t.group, "domain": t.domain, "max_msg_rate": pv.rate_text(t.msg_per_hour),
                      "backoff_max_msg_rate": pv.rate_text(t.backoff_msg_per_hour), "max_smtp_out": t.smtp_out}
                     for t in v.throttles
                 ]}
                for v in self.vmtas
            ],
            "pools": [{"name": p.name, "tenant": p.tenant, "vmtas": list(p.vmtas)} for p in self.pools],
        }


def ceiling(hourly_cap: int) -> int:
    """PowerMTA's hourly ceiling for an IP whose sender gate is ``hourly_cap`` messages an hour.

    ``ceil(hourly_cap * HEADROOM_FACTOR) + HEADROOM_EXTRA`` (factor 11/10, extra 2), or 0 when the
    cap is 0 (the plan has not started).  Strictly above the cap, so in normal operation the
    sender's gate is what paces mail and PowerMTA never defers it; only just above it, so if the
    gate fails (a bug, a second sender instance, a retry storm, mail injected by hand) PowerMTA
    alone holds the IP within about 10 % of its warmup cap instead of running at full speed.
    The ceiling is hourly: a day's cap is the sender's to keep, and PowerMTA's rates bound each
    rolled-up provider queue, while the ``*`` rate bounds each long-tail domain on its own.
    """
    if hourly_cap <= 0:
        return 0
    return math.ceil(hourly_cap * pv.HEADROOM_FACTOR) + pv.HEADROOM_EXTRA


def _ceil_div(a: int, b: int) -> int:
    """Integer ceiling of a / b: exact where float division is not, for any size of cap."""
    return -(-a // b)


def throttles(status: IpStatus) -> tuple[Throttle, ...]:
    """Per provider group of one IP on the status's date.

    - warming or warm with a plan: ``msg_per_hour = max(1, ceil(ceiling * share))`` for the
      group's share (:data:`~mailplane.mta.providers.PROVIDERS`); never 0 while the IP may send,
      and the groups together allow at least the ceiling, at most one message per group more;
    - ``backoff_msg_per_hour = max(1, ceil(msg_per_hour / BACKOFF_DIVISOR))``: a queue in backoff
      slows down, and because it is derived per VMTA it can never be above the normal rate (a
      static backoff rate on the provider block would raise a cold IP's ceiling);
    - ``smtp_out = min(provider.max_smtp_out, max(1, ceil(msg_per_hour / MSGS_PER_CONNECTION_HOUR)))``;
    - not started (hourly cap 0): rate 0, which renders as the nothing-rate, and
      ``NOT_STARTED_SMTP_OUT`` connections;
    - no plan (an IP declared warm): the provider's ``warm_msg_per_hour`` and ``max_smtp_out``.
    """
    out = []
    top = ceiling(status.hourly_cap) if status.hourly_cap is not None else None
    for provider in pv.PROVIDERS:
        if top is None:
            rate = provider.warm_msg_per_hour
        elif top == 0:
            rate = 0
        else:
            rate = max(1, math.ceil(top * provider.share))
        if rate == 0:
            backoff, smtp_out = 0, pv.NOT_STARTED_SMTP_OUT
        else:
            backoff = max(1, _ceil_div(rate, pv.BACKOFF_DIVISOR))
            smtp_out = min(provider.max_smtp_out, max(1, _ceil_div(rate, pv.MSGS_PER_CONNECTION_HOUR)))
        out.append(Throttle(provider.group, provider.domain, rate, backoff, smtp_out))
    return tuple(out)


def _address_key(ref: IpRef) -> tuple[str, int, int]:
    address = ipaddress.ip_address(ref.ip.address)
    return ref.tenant.name, address.version, int(address)


def _vmta(fleet: Fleet, ref: IpRef, on: datetime.date) -> Vmta:
    status = ip_status(ref.tenant, ref.ip, fleet.plan_for(ref.ip), on)
    keys = tuple(DkimKey(powermta_selector(d), d.name, names.dkim_key_file(powermta_selector(d), d.name))
                 for d in sorted(ref.tenant.domains, key=lambda d: d.name))
    return Vmta(
        name=names.vmta_name(ref.tenant.name, ref.ip.address),
        tenant=ref.tenant.name,
        address=ref.ip.address,
        ptr=ref.ip.hostname,
        status=status,
        ceiling=ceiling(status.hourly_cap) if status.hourly_cap is not None else None,
        dkim=keys,
        throttles=throttles(status),
    )


def _with_port(address: str, listener: str) -> str:
    """``address`` on the port of ``listener``, in the listener syntax (IPv6 in brackets)."""
    port = listener.rsplit(":", 1)[1]
    return normalise_listener(f"[{address}]:{port}" if ":" in address else f"{address}:{port}")


def host_view(fleet: Fleet, host: str, on: datetime.date) -> HostView:
    """The view of MTA host ``host`` (a key of ``mta_hosts``) on date ``on``.

    Listeners: the host's ``smtp_listener``, plus the same port on its ``private_address`` when it
    has one, since the sender may submit from that address and a loopback-only listener would
    not accept it.  Submit addresses: both loopbacks and the private address.
    """
    try:
        settings = fleet.settings.mta_hosts[host]
    except KeyError:
        raise KeyError(f"no MTA host {host!r} in stack {fleet.stack}") from None
    listeners = [settings.smtp_listener]
    submit = list(pv.LOOPBACK)
    if settings.private_address:
        listeners.append(_with_port(settings.private_address, settings.smtp_listener))
        submit.append(settings.private_address)
    refs = sorted(fleet.ips_by_host.get(host, ()), key=_address_key)
    vmtas = tuple(_vmta(fleet, ref, on) for ref in refs)
    tenants = sorted({v.tenant for v in vmtas})
    pools = tuple(Pool(names.pool_name(t), t, tuple(v.name for v in vmtas if v.tenant == t)) for t in tenants)
    return HostView(
        stack=fleet.stack,
        host=host,
        listeners=tuple(dict.fromkeys(listeners)),
        submit_from=tuple(dict.fromkeys(submit)),
        deny=pv.DENY_SOURCES,
        http_mgmt_port=pv.HTTP_MGMT_PORT,
        http_admin=pv.LOOPBACK,
        providers=pv.PROVIDERS,
        vmtas=vmtas,
        pools=pools,
    )
