"""MailWizz's SMTP delivery servers for each tenant, from the fleet: how campaigns reach PowerMTA.

Not PowerMTA's config (that is :mod:`mailplane.mta.render`): MailWizz is a separate sender whose
servers carry the pool name in ``X-Virtual-MTA`` and share the tenant's warmup capacity between
its MTA hosts.  Pure: writing the files is :mod:`mailplane.cli.render`'s job.
"""

from __future__ import annotations

import datetime
import ipaddress
from typing import Any

from mailplane.model import names
from mailplane.model.addresses import parse_listener
from mailplane.model.stack import Fleet
from mailplane.model.tenant import Tenant
from mailplane.warmup.status import ip_status, tenant_capacity

MAILWIZZ_STREAM = "marketing"
"""MailWizz sends campaigns: the tenant's marketing route (its first stream's if it has no marketing)."""


def _split(total: int | None, weights: dict[str, int]) -> dict[str, int | None]:
    """``total`` shared in proportion to ``weights``, rounded down so the parts never add up to
    more than the whole; None (no limit) stays None."""
    if total is None:
        return dict.fromkeys(weights)
    whole = sum(weights.values())
    if whole == 0:
        return dict.fromkeys(weights, 0)
    return {key: total * weight // whole for key, weight in weights.items()}


def _weights(values: dict[str, list[int | None]]) -> dict[str, int]:
    """Per host, the sum of its IPs' caps; when any IP has no cap (no plan), the number of its IPs
    that may send instead, since caps and "no limit" do not add up."""
    if any(v is None for caps in values.values() for v in caps):
        return {host: sum(1 for v in caps if v is None or v > 0) for host, caps in values.items()}
    return {host: sum(v for v in caps if v is not None) for host, caps in values.items()}


def _host_caps(values: dict[str, list[int | None]]) -> dict[str, int | None]:
    """Per host, what its IPs may send together: the sum of their caps, None if one has none."""
    return {host: None if any(v is None for v in caps) else sum(v for v in caps if v is not None)
            for host, caps in values.items()}


def _sum(caps: dict[str, list[int | None]]) -> int | None:
    """All the caps together; None (no limit) if one has none."""
    values = [v for host in caps.values() for v in host]
    return None if any(v is None for v in values) else sum(v for v in values if v is not None)


def _min(a: int | None, b: int | None) -> int | None:
    """The smaller limit, None being no limit."""
    return b if a is None else a if b is None else min(a, b)


def _limits(total: int | None, caps: dict[str, list[int | None]]) -> dict[str, int | None]:
    """Per host: its share of the tenant's ``total``, within what the host's IPs may send."""
    shares, own = _split(total, _weights(caps)), _host_caps(caps)
    return {host: _min(shares[host], own[host]) for host in caps}


def _mailwizz_quota(value: int | None) -> int:
    """MailWizz reads a quota of 0 as "no limit"."""
    return 0 if value is None else value


def _from_email(tenant: Tenant) -> str | None:
    """The tenant's first sender address; a ``*@domain`` wildcard becomes ``no-reply@domain``."""
    if not tenant.senders:
        return None
    local, _, domain = tenant.senders[0].from_[0].rpartition("@")
    return f"{'no-reply' if local == '*' else local}@{domain}"


def _submit_address(fleet: Fleet, host: str) -> tuple[str, int]:
    """Where MailWizz hands mail to PowerMTA: the listener's address and port, or the host's
    ``ansible_host`` when the listener is on every address (0.0.0.0 or ::)."""
    settings = fleet.settings.mta_hosts[host]
    address, port = parse_listener(settings.smtp_listener)
    if ipaddress.ip_address(address).is_unspecified:
        address = settings.ansible_host
    return address, port


def delivery_servers(fleet: Fleet, on: datetime.date) -> dict[str, dict[str, Any]]:
    """Per tenant (sorted by name), its MailWizz SMTP delivery servers on date ``on``.

    One server per MTA host the tenant has IPs on: a pool lives on one host, so one server per
    tenant could reach only part of its IPs.  The tenant's capacity (``tenant_capacity``: the sum
    of its IPs' warmup caps within its own daily quota) is split over its servers in proportion
    to the caps of its IPs on each host, rounded down, and no server gets more than its host's
    IPs may send together (that matters when the tenant's total is unlimited because one of its
    IPs has no plan): MailWizz can send no more than the tenant or any IP may.

    MailWizz reads a quota of 0 as "no limit", so a server that may send nothing that day is
    ``inactive``, and an hourly share that rounds down to 0 on an active server becomes 1.
    ``X-Virtual-MTA`` names the pool of the tenant's marketing route (campaigns are marketing mail;
    a tenant without that stream: its first stream's), and only that route's IPs count towards
    the quotas.  A tenant whose route goes by SES gets no PowerMTA server (``route: ses``).  No
    password or user name: PowerMTA relays for the submit addresses, and any SMTP secret comes from
    the vault.  Field names follow
    MailWizz's delivery-server form (unconfirmed against its API).
    """
    out: dict[str, dict[str, Any]] = {}
    for tenant in fleet.tenants:
        capacity = tenant_capacity(fleet, tenant, on)
        daily_caps: dict[str, list[int | None]] = {}
        hourly_caps: dict[str, list[int | None]] = {}
        stream = MAILWIZZ_STREAM if MAILWIZZ_STREAM in tenant.streams else tenant.streams[0]
        route = fleet.route(tenant.name, stream)
        for ip in route.ips:  # only the route's IPs: campaign mail never leaves from a transactional IP
            status = ip_status(tenant, ip, fleet.plan_for(ip), on)
            daily_caps.setdefault(ip.host, []).append(status.daily_cap)
            hourly_caps.setdefault(ip.host, []).append(status.hourly_cap)
        # what the route's IPs may send, within the tenant's own limits
        total_daily = _min(capacity.daily, _sum(daily_caps)) if daily_caps else 0
        total_hourly = _min(capacity.hourly, _sum(hourly_caps)) if hourly_caps else 0
        daily = _limits(total_daily, daily_caps)
        hourly = _limits(total_hourly, hourly_caps)
        pool = names.pool_name(tenant.name, stream)
        servers = []
        for host in sorted(daily_caps):
            address, port = _submit_address(fleet, host)
            active = daily[host] != 0
            host_hourly = hourly[host]
            if active and host_hourly == 0:
                host_hourly = 1
            servers.append({
                "name": f"{tenant.name}-{host}",
                "type": "smtp",
                "mta_host": host,
                "hostname": address,
                "port": port,
                "from_email": _from_email(tenant),
                "from_name": tenant.display_name or tenant.name,
                "hourly_quota": _mailwizz_quota(host_hourly) if active else 0,
                "daily_quota": _mailwizz_quota(daily[host]) if active else 0,
                "status": "active" if active else "inactive",
                "additional_headers": [{"name": names.VMTA_HEADER, "value": pool}],
            })
        out[tenant.name] = {
            "tenant": tenant.name,
            "stream": stream,
            "route": route.transport,
            "pool": pool if route.transport == "pmta" else None,
            "capacity": {"daily": total_daily, "hourly": total_hourly},
            "delivery_servers": servers,
        }
    return out
