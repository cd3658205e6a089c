"""Render PowerMTA configs and MailWizz delivery servers from the fleet, as Ansible would.

The template ``templates/powermta/config.j2`` has two users: this module and the Ansible role's
``ansible.builtin.template`` task.  Both give it the same two variables, ``pmta``
(:meth:`HostView.to_vars <mailplane.mta.view.HostView.to_vars>`) and ``paths`` (where things
live on the host), and this module sets Jinja up the way Ansible's template module does
(``trim_blocks=True``, ``lstrip_blocks=False``, no trailing-newline keeping, then the template's
own trailing newlines put back), so both produce the same bytes.  The environment is sandboxed,
undefined variables are errors and nothing is escaped: the output is a config file, not HTML.

Pure apart from reading the template: writing files is :mod:`mailplane.cli.render`'s job.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

from jinja2 import FileSystemLoader, StrictUndefined
from jinja2.sandbox import SandboxedEnvironment

from mailplane.model import names
from mailplane.model.stack import Fleet
from mailplane.model.tenant import Tenant
from mailplane.mta.view import host_view
from mailplane.warmup.status import ip_status, tenant_capacity

TEMPLATES_DIR = Path(__file__).resolve().parent.parent.parent / "templates"
CONFIG_TEMPLATE = "powermta/config.j2"

ANSIBLE_TRIM_BLOCKS = True
"""``ansible.builtin.template``'s default: the newline after a ``{% %}`` tag is dropped."""
ANSIBLE_LSTRIP_BLOCKS = False
"""Its other default: whitespace before a tag stays, so every tag in the template starts a line."""

DEFAULT_PATHS: Mapping[str, str] = MappingProxyType({
    "config_dir": "/etc/pmta",
    "dkim_dir": "/etc/pmta/dkim",
    "acct_file": "/var/log/pmta/acct.csv",
    "log_file": "/var/log/pmta/log",
    "spool_dir": "/var/spool/pmta",
})
"""PowerMTA's usual locations; the Ansible role builds the same keys from its role variables."""
PATH_KEYS = tuple(DEFAULT_PATHS)

X_VIRTUAL_MTA = "X-Virtual-MTA"
MAILWIZZ_STREAM = "marketing"
"""MailWizz sends campaigns: the tenant's marketing route (its first stream's if it has no marketing)."""


def template_environment(template_dir: Path = TEMPLATES_DIR, *, trim_blocks: bool = ANSIBLE_TRIM_BLOCKS,
                         lstrip_blocks: bool = ANSIBLE_LSTRIP_BLOCKS) -> SandboxedEnvironment:
    """A sandboxed, strict, unescaped Jinja environment with Ansible's whitespace settings.

    ``keep_trailing_newline`` is off as in Ansible's environment; :func:`render_template` then
    restores the template's trailing newlines the way Ansible's templar does.
    """
    return SandboxedEnvironment(
        loader=FileSystemLoader(str(template_dir)),
        undefined=StrictUndefined,
        autoescape=False,
        trim_blocks=trim_blocks,
        lstrip_blocks=lstrip_blocks,
        keep_trailing_newline=False,
        auto_reload=False,
    )


@lru_cache(maxsize=4)
def _environment(template_dir: Path) -> SandboxedEnvironment:
    """One compiled template per process: rendering 40 hosts should not parse it 40 times."""
    return template_environment(template_dir)


def _trailing_newlines(text: str) -> int:
    return len(text) - len(text.rstrip("\n"))


def render_template(env: SandboxedEnvironment, name: str, variables: Mapping[str, Any]) -> str:
    """Render ``name`` with ``variables``; the template's trailing newlines survive as in Ansible.

    Ansible renders with ``keep_trailing_newline=False`` and afterwards appends as many newlines
    as the template text ends with minus those the result already ends with.
    """
    assert env.loader is not None
    source = env.loader.get_source(env, name)[0]
    result = env.get_template(name).render(**variables)
    missing = _trailing_newlines(source) - _trailing_newlines(result)
    return result + "\n" * missing if missing > 0 else result


def check_paths(paths: Mapping[str, str]) -> dict[str, str]:
    """The ``paths`` variable, checked: exactly :data:`PATH_KEYS`, each an absolute path."""
    missing = [k for k in PATH_KEYS if k not in paths]
    extra = sorted(set(paths) - set(PATH_KEYS))
    if missing or extra:
        raise ValueError(f"paths needs exactly the keys {', '.join(PATH_KEYS)} "
                         f"(missing: {', '.join(missing) or 'none'}; unknown: {', '.join(extra) or 'none'})")
    relative = [k for k in PATH_KEYS if not str(paths[k]).startswith("/")]
    if relative:
        raise ValueError(f"paths must be absolute on the MTA host: {', '.join(relative)}")
    return {k: str(paths[k]) for k in PATH_KEYS}


def render_vars(pmta: Mapping[str, Any], paths: Mapping[str, str] = DEFAULT_PATHS,
                template_dir: Path = TEMPLATES_DIR) -> str:
    """The config text from the two template variables: exactly what the Ansible role renders."""
    env = _environment(template_dir)
    return render_template(env, CONFIG_TEMPLATE, {"pmta": pmta, "paths": check_paths(paths)})


def render_host(fleet: Fleet, host: str, on: datetime.date, paths: Mapping[str, str] = DEFAULT_PATHS) -> str:
    """PowerMTA's config for MTA host ``host`` on date ``on``."""
    return render_vars(host_view(fleet, host, on).to_vars(), paths)


# --- MailWizz ------------------------------------------------------------------------------------

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
    address, _, port = settings.smtp_listener.rpartition(":")
    address = address.strip("[]")
    if ipaddress.ip_address(address).is_unspecified:
        address = settings.ansible_host
    return address, int(port)


def mailwizz_servers(fleet: Fleet, on: datetime.date) -> dict[str, dict[str, Any]]:
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
                "additional_headers": [{"name": X_VIRTUAL_MTA, "value": pool}],
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
