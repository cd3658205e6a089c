"""MailWizz's SMTP delivery servers for each tenant, from the fleet: campaigns go through the sender service.

MailWizz submits to the sender's SMTP listener (fleet.yaml's ``sender.submission_host``) as one of
the tenant's senders, so campaign mail gets what API mail gets: the suppression list, the daily and
hourly caps of warmup and of the tenant, the shared SES pacing, the one-click unsubscribe headers.
MailWizz chooses no virtual MTA or pool: the sender does.  Pure: writing the files is
:mod:`mailplane.cli.render`'s job.

The quotas are what the sender lets through for the tenant's campaign route that day, so MailWizz
does not queue what would only wait in mailplane's queue: on PowerMTA, the caps of the route's IPs
within the tenant's daily quota; on SES, the tenant's quota within the account's.  MailWizz reads a
quota of 0 as "no limit", so a server that may send nothing that day is ``inactive``, and an hourly
quota that rounds down to 0 on an active server becomes 1.  Render again each day (``--on``): warmup
caps grow.

The password is a placeholder naming the vault entry (the sender's API key), never a secret.
Field names follow MailWizz's delivery-server form (unconfirmed against its API).
"""

from __future__ import annotations

import datetime
from typing import Any

from mailplane.model.names import STREAM_HEADER
from mailplane.model.stack import Fleet
from mailplane.model.tenant import Tenant
from mailplane.warmup.status import ip_status, tenant_capacity

MAILWIZZ_STREAM = "marketing"
"""MailWizz sends campaigns: the tenant's marketing route (its first stream's if it has no marketing)."""
MAILWIZZ_SENDER = "mailwizz"
"""The sender MailWizz logs in as when the tenant has one by this name; else its first sender."""


def vault_placeholder(login: str) -> str:
    """What stands for the API key of ``tenant/sender`` in a rendered file: the vault entry to fill it from."""
    return f"VAULT:mailplane_api_keys/{login}"


def _min(a: int | None, b: int | None) -> int | None:
    """The smaller limit, None being no limit."""
    return b if a is None else a if b is None else min(a, b)


def _sum(values: list[int | None]) -> int | None:
    """All the caps together; None (no limit) if one has none."""
    return None if any(v is None for v in values) else sum(v for v in values if v is not None)


def _mailwizz_quota(value: int | None) -> int:
    """MailWizz reads a quota of 0 as "no limit"."""
    return 0 if value is None else value


def route_limits(fleet: Fleet, tenant: Tenant, stream: str, on: datetime.date) -> tuple[int | None, int | None]:
    """(daily, hourly) the sender lets through for the tenant's ``stream`` on ``on``; None: no limit."""
    route = fleet.route(tenant.name, stream)
    if route.transport == "ses":
        ses = fleet.settings.ses
        daily = _min(tenant.daily_quota, ses.daily_quota)
        return daily, _min(daily, int(ses.max_send_rate * 3600))
    capacity = tenant_capacity(fleet, tenant, on)
    statuses = [ip_status(tenant, ip, fleet.plan_for(ip), on) for ip in route.ips]
    daily = _min(capacity.daily, _sum([s.daily_cap for s in statuses]))
    return daily, _min(daily, _min(capacity.hourly, _sum([s.hourly_cap for s in statuses])))


def _sender(tenant: Tenant) -> tuple[str, str] | None:
    """(sender name, From address) MailWizz uses: ``mailwizz`` or the first sender; a ``*@domain`` wildcard
    becomes ``no-reply@domain``."""
    if not tenant.senders:
        return None
    sender = next((s for s in tenant.senders if s.name == MAILWIZZ_SENDER), tenant.senders[0])
    local, _, domain = sender.from_[0].rpartition("@")
    return sender.name, f"{'no-reply' if local == '*' else local}@{domain}"


def delivery_servers(fleet: Fleet, on: datetime.date) -> dict[str, dict[str, Any]]:
    """Per tenant (sorted by name), its MailWizz SMTP delivery server on date ``on``: the sender's listener.

    No server where fleet.yaml names no ``sender.submission_host`` or the tenant has no sender
    (``missing`` says which).
    """
    service = fleet.settings.sender
    out: dict[str, dict[str, Any]] = {}
    for tenant in fleet.tenants:
        stream = MAILWIZZ_STREAM if MAILWIZZ_STREAM in tenant.streams else tenant.streams[0]
        daily, hourly = route_limits(fleet, tenant, stream, on)
        described: dict[str, Any] = {"tenant": tenant.name, "stream": stream,
                                     "route": fleet.route(tenant.name, stream).transport,
                                     "capacity": {"daily": daily, "hourly": hourly}, "delivery_servers": []}
        out[tenant.name] = described
        sender = _sender(tenant)
        if service is None or service.submission_host is None:
            described["missing"] = "fleet.yaml: sender.submission_host (the sender's SMTP listener)"
            continue
        if sender is None:
            described["missing"] = f"tenants/{tenant.name}.yaml: a sender for MailWizz to log in as"
            continue
        name, from_email = sender
        active = daily != 0
        if active and hourly == 0:
            hourly = 1
        login = f"{tenant.name}/{name}"
        described["delivery_servers"].append({
            "name": f"{tenant.name}-mailplane",
            "type": "smtp",
            "hostname": service.submission_host,
            "port": service.submission_port,
            "protocol": "tls" if service.submission_tls == "starttls" else "ssl",
            "username": login,
            "password": vault_placeholder(login),
            "from_email": from_email,
            "from_name": tenant.display_name or tenant.name,
            "hourly_quota": _mailwizz_quota(hourly) if active else 0,
            "daily_quota": _mailwizz_quota(daily) if active else 0,
            "status": "active" if active else "inactive",
            "additional_headers": [{"name": STREAM_HEADER, "value": stream}],
        })
    return out
