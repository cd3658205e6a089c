"""PowerMTA configs rendered from the fleet: the per-host view, the template and ``mailplane render``
(MailWizz's servers: tests/test_mailwizz.py).

Golden files: ``tests/golden/powermta/<host>.config`` hold the configs of stacks/prod on
2026-11-25.  After a deliberate change to the view, the template or the provider numbers,
regenerate them with

    MAILPLANE_UPDATE_GOLDEN=1 .venv/bin/pytest tests/mta/test_render.py

and read the diff before committing it.
"""

from __future__ import annotations

import datetime
import difflib
import json
import math
import os
import re
import subprocess
import sys
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any, NamedTuple

import jinja2
import pytest
from jinja2 import meta
from typer.testing import CliRunner

import mailplane.cli.render as cli_render
from mailplane.cli import app
from mailplane.mailwizz import delivery_servers
from mailplane.model import names
from mailplane.model.fleet import DEFAULT_VMTA_LEAD_DAYS
from mailplane.model.loader import load_stack
from mailplane.model.stack import Fleet
from mailplane.mta import providers as pv
from mailplane.mta.deployed import parse as parse_deployed
from mailplane.mta.render import (
    CONFIG_TEMPLATE,
    DEFAULT_PATHS,
    TEMPLATES_DIR,
    render_host,
    render_template,
    render_vars,
    template_environment,
)
from mailplane.mta.view import ceiling, host_view
from mailplane.sender.db.store import Store
from mailplane.sender.delivery.pacing import Pacer
from mailplane.warmup.status import ip_status

ROOT = Path(__file__).resolve().parents[2]
PROD = ROOT / "stacks" / "prod"
GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "powermta"
DAY = datetime.date(2026, 11, 25)
WARMUP_DIRECTIVES = {"max-smtp-msg-rate", "max-msg-rate", "backoff-max-msg-rate", "max-smtp-out"}
"""The directives whose numbers follow the warmup plans: the only lines that change by date."""


# --- a small reader of the rendered text, so assertions are about the config, not the view ----

Entry = tuple[tuple[tuple[str, str], ...], str, str]


def entries(text: str) -> list[Entry]:
    """``(enclosing blocks, directive, value)`` of every directive line; blocks as (tag, arg)."""
    stack: list[tuple[str, str]] = []
    out: list[Entry] = []
    for line in text.splitlines():
        item = line.strip()
        if not item or item.startswith("#"):
            continue
        if item.startswith("</"):
            assert stack and stack[-1][0] == item[2:-1], f"unbalanced {item}"
            stack.pop()
        elif item.startswith("<"):
            tag, _, arg = item[1:-1].partition(" ")
            stack.append((tag, arg))
            out.append((tuple(stack), "", ""))
        else:
            directive, _, value = item.partition(" ")
            out.append((tuple(stack), directive, value))
    assert not stack, f"unclosed {stack}"
    return out


def blocks(text: str, tag: str) -> dict[str, list[tuple[str, str]]]:
    """Top-level ``<tag ARG>`` blocks by ARG: their own directives (not nested blocks')."""
    found: dict[str, list[tuple[str, str]]] = {}
    for where, directive, value in entries(text):
        if where and where[0][0] == tag:
            body = found.setdefault(where[0][1], [])
            if len(where) == 1 and directive:
                body.append((directive, value))
    return found


def vmta_throttles(text: str) -> dict[str, dict[str, dict[str, str]]]:
    """VMTA name -> provider domain -> directive -> value, from the ``<domain>`` blocks in VMTAs."""
    out: dict[str, dict[str, dict[str, str]]] = {}
    for where, directive, value in entries(text):
        if len(where) == 2 and where[0][0] == "virtual-mta" and where[1][0] == "domain":
            domain = out.setdefault(where[0][1], {}).setdefault(where[1][1], {})
            if directive:
                domain[directive] = value
    return out


def top(text: str, directive: str) -> list[str]:
    return [value for where, d, value in entries(text) if not where and d == directive]


# --- the view: VMTAs, pools, DKIM, sources, management --------------------------------------------

def test_each_ip_that_may_send_has_exactly_one_vmta_with_its_ip_and_ptr(fleet: Fleet) -> None:
    held = 0
    for host, refs in fleet.ips_by_host.items():
        text = render_host(fleet, host, DAY)
        vmtas = blocks(text, "virtual-mta")
        assert pv.UNROUTED_VMTA in vmtas
        sending = [r for r in refs if ip_status(r.tenant, r.ip, fleet.plan_for(r.ip), DAY).hourly_cap != 0]
        held += len(refs) - len(sending)
        expected = {names.vmta_name(r.tenant.name, r.ip.address): (r.ip.address, r.ip.hostname) for r in sending}
        assert set(vmtas) - {pv.UNROUTED_VMTA} == set(expected), host
        for name, (address, ptr) in expected.items():
            assert [v for d, v in vmtas[name] if d == "smtp-source-host"] == [f"{address} {ptr}"]
        sources = [v.split()[0] for body in vmtas.values() for d, v in body if d == "smtp-source-host"]
        assert len(sources) == len(set(sources)) == len(sending)
        assert not [v for d, v in vmtas[pv.UNROUTED_VMTA] if d == "smtp-source-host"]
    assert {h: len(r) for h, r in fleet.ips_by_host.items()} == {"mta1": 2, "mta2": 3, "mta3": 2}
    assert held == 1  # initech 192.0.2.42 starts on 2026-12-01


def test_pools_per_tenant_and_stream_list_exactly_the_routes_vmtas_on_that_host(fleet: Fleet) -> None:
    on = datetime.date(2026, 12, 3)  # every IP of fleet sends
    for host in fleet.ips_by_host:
        pools = blocks(render_host(fleet, host, on), "virtual-mta-pool")
        expected: dict[str, set[str]] = {}
        for (tenant, stream), route in fleet.routes.items():
            for ip in route.ips:
                if ip.host == host:
                    expected.setdefault(names.pool_name(tenant, stream), set()).add(names.vmta_name(tenant, ip.address))
        assert {name: {v for d, v in body if d == "virtual-mta"} for name, body in pools.items()} == expected
        assert all(d == "virtual-mta" for body in pools.values() for d, _ in body)
    # sos-expat's marketing IPs are on mta1 and mta2, its transactional one on mta1: no pool mixes them
    mta1 = blocks(render_host(fleet, "mta1", on), "virtual-mta-pool")
    assert mta1["sos-expat-transactional-pool"] == [("virtual-mta", "sos-expat-203-0-113-21")]
    assert mta1["sos-expat-marketing-pool"] == [("virtual-mta", "sos-expat-203-0-113-22")]
    mta2 = blocks(render_host(fleet, "mta2", on), "virtual-mta-pool")
    assert mta2["sos-expat-marketing-pool"] == [("virtual-mta", "sos-expat-203-0-113-23")]
    assert "globex-marketing-pool" not in mta2  # globex's marketing goes by SES


def _expected_rates(hourly_cap: int) -> dict[str, int]:
    """The documented rule, computed here from the sender's hourly cap (not by the view)."""
    ceiling = -(-hourly_cap * 11 // 10) + 2
    return {p.domain: max(1, math.ceil(ceiling * p.share)) for p in pv.PROVIDERS}


@pytest.mark.parametrize("day", [DAY, datetime.date(2026, 11, 2), datetime.date(2026, 12, 20),
                                 datetime.date(2027, 6, 1)])
def test_rates_follow_the_warmup_caps_just_above_the_senders_gate(fleet: Fleet, day: datetime.date) -> None:
    for host, refs in fleet.ips_by_host.items():
        text = render_host(fleet, host, day)
        throttles = vmta_throttles(text)
        vmtas = blocks(text, "virtual-mta")
        for r in refs:
            status = ip_status(r.tenant, r.ip, fleet.plan_for(r.ip), day)
            if status.day < 1:
                continue  # not started: see test_an_ip_not_yet_started_has_no_vmta_and_is_in_no_pool
            own = dict(vmtas[names.vmta_name(r.tenant.name, r.ip.address)])
            got = throttles[names.vmta_name(r.tenant.name, r.ip.address)]
            assert list(got) == [p.domain for p in pv.PROVIDERS]
            hourly = status.hourly_cap
            assert hourly is not None and hourly > 0
            rates = {domain: int(d["max-msg-rate"].removesuffix("/h")) for domain, d in got.items()}
            assert all(d["max-msg-rate"].endswith("/h") for d in got.values())
            assert rates == _expected_rates(hourly)
            assert all(rate >= 1 for rate in rates.values())
            ceiling = math.ceil(Fraction(hourly) * Fraction(11, 10)) + 2
            # the sum over the provider groups is PowerMTA's hourly ceiling for the IP: strictly
            # above the sender's gate, and only by 10 % plus a few messages of rounding
            assert hourly < ceiling <= sum(rates.values()) <= ceiling + len(pv.PROVIDERS)
            # ... and the VMTA's own rate is the ceiling itself, across every destination domain
            assert own["max-smtp-msg-rate"] == f"{ceiling}/h"
            assert int(own["max-smtp-out"]) == sum(int(d["max-smtp-out"]) for d in got.values())
            for domain, d in got.items():
                rate = rates[domain]
                assert 1 <= int(d["backoff-max-msg-rate"].removesuffix("/h")) <= rate
                provider = next(p for p in pv.PROVIDERS if p.domain == domain)
                assert int(d["max-smtp-out"]) == min(provider.max_smtp_out, max(1, math.ceil(rate / 300)))


def test_the_ceiling_is_strictly_but_only_just_above_any_hourly_cap() -> None:
    assert ceiling(0) == 0
    for hourly in range(1, 20_000):
        assert hourly < ceiling(hourly) <= hourly + hourly // 10 + 3


def test_an_ip_not_yet_started_has_no_vmta_and_is_in_no_pool(fleet: Fleet) -> None:
    initech = fleet.tenant("initech")
    ip = next(i for i in initech.ips if i.address == "192.0.2.42")  # pmta-6w from 2026-12-01
    assert ip_status(initech, ip, fleet.plan_for(ip), DAY).state == "scheduled"
    text = render_host(fleet, "mta2", DAY)
    vmta = names.vmta_name("initech", ip.address)
    assert vmta not in blocks(text, "virtual-mta")
    assert vmta not in text  # no pool, no route, no header can reach it
    assert "smtp-source-host 192.0.2.42" not in text
    assert "# initech 192.0.2.42: no VMTA today, so nothing can send from it: warmup plan pmta-6w starts on " \
           "2026-12-01; its VMTA is deployed from 2026-11-29 (vmta_lead_days 2)." in text
    # on its first day it may send: the smallest real rates
    first = vmta_throttles(render_host(fleet, "mta2", datetime.date(2026, 12, 1)))[vmta]
    status = ip_status(initech, ip, fleet.plan_for(ip), datetime.date(2026, 12, 1))
    assert status.hourly_cap is not None
    assert {d: int(v["max-msg-rate"].removesuffix("/h")) for d, v in first.items()} == _expected_rates(
        status.hourly_cap)
    assert all(v["max-smtp-out"] == "1" for v in first.values())
    assert "/h" in pv.rate_text(1) and "0/h" not in text
    with pytest.raises(ValueError, match="no PowerMTA rate"):
        pv.rate_text(0)


# --- the lead: an IP's VMTA is deployed before its first plan day ---------------------------------

INITECH_B = ("initech", "192.0.2.42", "mta2", datetime.date(2026, 12, 1))
"""initech's IP on mta2 and its first day of pmta-6w."""


def _set_lead(stack: Path, lead: int) -> None:
    fleet = stack / "fleet.yaml"
    text = fleet.read_text(encoding="utf-8")
    assert "\npowermta:\n  postmaster: " in text
    fleet.write_text(text.replace("\npowermta:\n", f"\npowermta:\n  vmta_lead_days: {lead}\n"), encoding="utf-8")


def test_an_ip_starting_within_the_lead_has_its_vmta_with_keys_and_first_day_rates_in_no_pool(fleet: Fleet) -> None:
    """The sender names the VMTA from 00:00 UTC of the first day; the config of any of the
    ``vmta_lead_days`` days before already has it, so a reload later that morning (or a missed run)
    never leaves PowerMTA refusing it."""
    tenant_name, address, host, first_day = INITECH_B
    tenant = fleet.tenant(tenant_name)
    ip = next(i for i in tenant.ips if i.address == address)
    vmta = names.vmta_name(tenant_name, address)
    lead = fleet.settings.vmta_lead_days
    assert lead == 2
    first = ip_status(tenant, ip, fleet.plan_for(ip), first_day)
    assert first.day == 1 and first.hourly_cap is not None
    on_the_day = render_host(fleet, host, first_day)
    for before in range(1, lead + 1):
        day = first_day - datetime.timedelta(days=before)
        assert ip_status(tenant, ip, fleet.plan_for(ip), day).state == "scheduled"
        text = render_host(fleet, host, day)
        own = dict(blocks(text, "virtual-mta")[vmta])
        assert own["smtp-source-host"] == f"{address} {ip.hostname}"
        ceiling_ = math.ceil(Fraction(first.hourly_cap) * Fraction(11, 10)) + 2
        assert own["max-smtp-msg-rate"] == f"{ceiling_}/h"
        assert [v for d, v in blocks(text, "virtual-mta")[vmta] if d == "domain-key"] == [
            "pmta1,initech.example.org,/etc/pmta/dkim/pmta1.initech.example.org.pem"]
        throttles = vmta_throttles(text)[vmta]
        assert {d: int(v["max-msg-rate"].removesuffix("/h")) for d, v in throttles.items()} == _expected_rates(
            first.hourly_cap)
        assert throttles == vmta_throttles(on_the_day)[vmta], "the first day's numbers, not 0 and not another day's"
        assert vmta not in pool_members(text), "idle until its first day: no pool may pick it"
        assert f"# Deployed ahead of its first plan day ({first_day.isoformat()})" in text
        assert f"# {tenant_name} {address}: no VMTA today" not in text
        view = host_view(fleet, host, day)
        found = next(v for v in view.vmtas if v.name == vmta)
        assert found.starts == first_day and found.status.day == 1
        assert next(v for v in view.to_vars()["vmtas"] if v["name"] == vmta)["starts"] == first_day.isoformat()
        assert pytest.importorskip("mailplane.mta.lint").lint(text, f"{host}.config") == []
    assert vmta in pool_members(on_the_day) and "# Deployed ahead" not in on_the_day
    assert all(v["starts"] is None for v in host_view(fleet, host, first_day).to_vars()["vmtas"])
    too_early = render_host(fleet, host, first_day - datetime.timedelta(days=lead + 1))
    assert vmta not in blocks(too_early, "virtual-mta") and vmta not in too_early
    assert f"# {tenant_name} {address}: no VMTA today, so nothing can send from it: warmup plan pmta-6w starts " \
           f"on 2026-12-01; its VMTA is deployed from 2026-11-29 (vmta_lead_days 2)." in too_early


@pytest.mark.parametrize("lead", [0, 5])
def test_vmta_lead_days_sets_how_early_the_vmta_appears(stack_copy: Callable[[str], Path], lead: int) -> None:
    stack = stack_copy("prod")
    _set_lead(stack, lead)
    fleet = load_stack(stack)
    assert fleet.settings.vmta_lead_days == lead
    tenant_name, address, host, first_day = INITECH_B
    vmta = names.vmta_name(tenant_name, address)
    for before in range(-1, lead + 3):
        day = first_day - datetime.timedelta(days=before)
        text = render_host(fleet, host, day)
        assert (vmta in blocks(text, "virtual-mta")) == (before <= lead), (lead, day)
        assert (vmta in pool_members(text)) == (before <= 0), (lead, day)
    assert f"(vmta_lead_days {lead})" in render_host(fleet, host, first_day - datetime.timedelta(days=lead + 1))


def test_without_a_powermta_section_the_lead_is_the_default(stack_copy: Callable[[str], Path]) -> None:
    stack = stack_copy("dev")
    fleet_file = stack / "fleet.yaml"
    text = fleet_file.read_text(encoding="utf-8")
    fleet_file.write_text(text[:text.index("powermta:")], encoding="utf-8")
    fleet = load_stack(stack)
    assert fleet.settings.powermta is None and fleet.settings.vmta_lead_days == DEFAULT_VMTA_LEAD_DAYS == 2
    started = datetime.date(2026, 11, 16)  # acme's IP
    assert "acme-192-0-2-21" in blocks(render_host(fleet, "mta-dev", started - datetime.timedelta(days=2)),
                                       "virtual-mta")
    assert "acme-192-0-2-21" not in render_host(fleet, "mta-dev", started - datetime.timedelta(days=3))


# --- a fake clock: what the sender names each day is in the config PowerMTA runs ----------------

class GeneratedIp(NamedTuple):
    tenant: str
    address: str
    host: str
    started: datetime.date | None


VMTA_LINE = re.compile(r"^<virtual-mta ([^\s>]+)>$", re.MULTILINE)
"""A VMTA as PowerMTA loads it, read from the rendered text (pools are ``<virtual-mta-pool``)."""


def _named_by_sender(pacer: Pacer, fleet: Fleet, day: datetime.date) -> dict[str, set[str]]:
    """Per host, the VMTAs the sender may name in X-Virtual-MTA on ``day``: its own gate, cap above 0 or none."""
    out: dict[str, set[str]] = {host: set() for host in fleet.settings.mta_hosts}
    for ref in fleet.ips():
        gate = pacer.ip_gate(ref.tenant, ref.ip, day)
        if gate.daily_cap is None or gate.daily_cap > 0:
            out[ref.ip.host].add(names.vmta_name(ref.tenant.name, ref.ip.address))
    return out


def _simulate(fleet: Fleet, store: Store, first: datetime.date, days: int) -> tuple[list[str], int]:
    """Day by day from ``first``: every VMTA the sender names on D missing from the config of D-1
    (what PowerMTA runs from 00:00 until D's Ansible run) or of D-k, k in 0..lead (runs missed);
    and how many first days (a VMTA named on D, not on D-1) the window saw."""
    pacer = Pacer(store, fleet)
    lead = fleet.settings.vmta_lead_days
    texts: dict[tuple[str, datetime.date], str] = {}

    def config(host: str, day: datetime.date) -> str:
        if (host, day) not in texts:
            texts[host, day] = render_host(fleet, host, day)
        return texts[host, day]

    misses: list[str] = []
    firsts = 0
    for offset in range(days):
        day = first + datetime.timedelta(days=offset)
        named = _named_by_sender(pacer, fleet, day)
        before = _named_by_sender(pacer, fleet, day - datetime.timedelta(days=1))
        for host, vmtas in named.items():
            firsts += len(vmtas - before[host])
            for k in sorted({1, *range(lead + 1)}):
                rendered = day - datetime.timedelta(days=k)
                missing = vmtas - set(VMTA_LINE.findall(config(host, rendered)))
                misses += [f"{host} {name}: named on {day}, not in the config of {rendered}"
                           for name in sorted(missing)]
            # the other way round: no pool lists a VMTA the sender does not name on that day
            assert pool_members(config(host, day)) <= vmtas, (host, day)
    return misses, firsts


def _generated_stack(root: Path, ips: list[GeneratedIp]) -> Path:
    """Two hosts, two tenants, IPs starting on different days (None: no plan, declared warm); no
    ``powermta:`` section, so the default lead."""
    stack = root / "generated"
    (stack / "tenants").mkdir(parents=True)
    (stack / "fleet.yaml").write_text(
        "ses: {region: eu-west-1, max_send_rate: 10, daily_quota: 10000}\n"
        "dns: {default_provider: external}\n"
        "warmup_plans:\n"
        "  ramp:\n"
        "    schedule: [{day: 1, daily: 20}, {day: 2, daily: 40}, {day: 4, daily: 200}, {day: 9, daily: 2000}]\n"
        "mta_hosts:\n"
        "  mta-a: {ansible_host: 198.51.100.1}\n"
        "  mta-b: {ansible_host: 198.51.100.2}\n", encoding="utf-8")
    for tenant in sorted({ip.tenant for ip in ips}):
        lines = [f"name: {tenant}", "streams: [transactional, marketing]",
                 f"domains: [{{name: {tenant}.example.com, dkim: {{mode: easy}}}}]", "ips:"]
        for n, ip in enumerate(ips):
            if ip.tenant == tenant:
                warmup = f", warmup: {{plan: ramp, started: {ip.started.isoformat()}}}" if ip.started else ""
                lines.append(f"  - {{address: '{ip.address}', hostname: o{n}.{tenant}.example.com, "
                             f"host: {ip.host}{warmup}}}")
        lines.append(f"senders: [{{name: app, from: [app@{tenant}.example.com]}}]")
        (stack / "tenants" / f"{tenant}.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return stack


GENERATED = [
    GeneratedIp("north", "192.0.2.1", "mta-a", datetime.date(2027, 3, 1)),
    GeneratedIp("north", "192.0.2.2", "mta-b", datetime.date(2027, 3, 2)),
    GeneratedIp("south", "192.0.2.3", "mta-a", datetime.date(2027, 3, 2)),
    GeneratedIp("south", "192.0.2.4", "mta-a", datetime.date(2027, 3, 4)),
    GeneratedIp("north", "192.0.2.5", "mta-b", datetime.date(2027, 3, 11)),
    GeneratedIp("south", "192.0.2.6", "mta-b", datetime.date(2027, 3, 12)),
    GeneratedIp("north", "192.0.2.7", "mta-a", datetime.date(2026, 1, 1)),  # warm long since
    GeneratedIp("south", "192.0.2.8", "mta-b", None),  # no plan: declared warm
    GeneratedIp("south", "2001:db8::9", "mta-b", datetime.date(2027, 3, 20)),
]


def test_every_vmta_the_sender_names_is_in_the_config_powermta_runs(fleet: Fleet, tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'sender.db'}")
    try:
        misses, firsts = _simulate(fleet, store, datetime.date(2026, 10, 1), 70)  # every fleet IP's start
        assert misses == []
        assert firsts == len(list(fleet.ips())) == 7
        generated = load_stack(_generated_stack(tmp_path, GENERATED))
        assert generated.settings.powermta is None and len(list(generated.ips())) == len(GENERATED)
        misses, firsts = _simulate(generated, store, datetime.date(2027, 2, 10), 60)
        assert misses == []
        assert firsts == len([ip for ip in GENERATED if ip.started and ip.started.year == 2027]) == 7
    finally:
        store.close()


def test_the_fake_clock_finds_the_gap_a_config_made_on_the_first_day_leaves(
        stack_copy: Callable[[str], Path], tmp_path: Path) -> None:
    """With no lead (a VMTA only from its first day's run on) the same simulation finds every first
    day: the check above is not vacuous."""
    stack = stack_copy("prod")
    _set_lead(stack, 0)
    fleet = load_stack(stack)
    store = Store(f"sqlite:///{tmp_path / 'sender.db'}")
    try:
        misses, firsts = _simulate(fleet, store, datetime.date(2026, 10, 1), 70)
    finally:
        store.close()
    expected = sorted(f"{r.ip.host} {names.vmta_name(r.tenant.name, r.ip.address)}: named on {r.ip.warmup.started}, "
                      f"not in the config of {r.ip.warmup.started - datetime.timedelta(days=1)}"
                      for r in fleet.ips() if r.ip.warmup)
    assert sorted(misses) == expected and firsts == 7


def test_an_ip_without_a_plan_gets_generous_fixed_rates(stack_copy: Callable[[str], Path]) -> None:
    stack = stack_copy("dev")
    tenant = stack / "tenants" / "acme.yaml"
    text = tenant.read_text(encoding="utf-8")
    tenant.write_text(text.replace("    warmup: {plan: pmta-6w, started: 2026-11-16}\n", ""), encoding="utf-8")
    fleet = load_stack(stack)
    vmta = host_view(fleet, "mta-dev", DAY).vmtas[0]
    assert vmta.status.state == "unplanned" and vmta.ceiling is None
    throttles = vmta_throttles(render_host(fleet, "mta-dev", DAY))["acme-192-0-2-21"]
    for provider in pv.PROVIDERS:
        assert throttles[provider.domain]["max-msg-rate"] == f"{provider.warm_msg_per_hour}/h"
        assert throttles[provider.domain]["max-smtp-out"] == str(provider.max_smtp_out)
        assert provider.warm_msg_per_hour >= 5_000
    assert "no warmup plan" in render_host(fleet, "mta-dev", DAY)


def test_every_domain_of_the_tenant_gets_a_domain_key_in_each_of_its_vmtas(fleet: Fleet) -> None:
    """BYODKIM: the key SES signs with too; Easy DKIM: the domain's own PowerMTA key at ``pmta1`` (or its override)."""
    paths = {**DEFAULT_PATHS, "dkim_dir": "/srv/keys"}
    for host, refs in fleet.ips_by_host.items():
        text = render_host(fleet, host, DAY, paths)
        vmtas = blocks(text, "virtual-mta")
        for r in refs:
            if names.vmta_name(r.tenant.name, r.ip.address) not in vmtas:
                continue  # not started on DAY: no VMTA
            keys = [v for d, v in vmtas[names.vmta_name(r.tenant.name, r.ip.address)] if d == "domain-key"]
            expected = []
            for d in sorted(r.tenant.domains, key=lambda d: d.name):
                selector = d.dkim.selector if d.dkim.mode == "byo" else "pmta1"
                assert selector
                expected.append(f"{selector},{d.name},/srv/keys/{names.dkim_key_file(selector, d.name)}")
            assert keys == expected
        assert not top(text, "domain-key"), "keys belong to their tenant's VMTAs, not to every VMTA"
        assert "*," not in text.replace("<domain *>", ""), "no wildcard key: each signs its own domain"
    mta1 = blocks(render_host(fleet, "mta1", DAY), "virtual-mta")
    assert ("domain-key", "s2026a,news.example.com,/etc/pmta/dkim/s2026a.news.example.com.pem") in mta1[
        "sos-expat-203-0-113-21"]
    assert ("domain-key", "pmta1,mail1.example.com,/etc/pmta/dkim/pmta1.mail1.example.com.pem") in mta1[
        "sos-expat-203-0-113-21"]


def test_powermta_selector_override_names_the_key(stack_copy: Callable[[str | Path], Path]) -> None:
    stack = stack_copy("prod")
    path = stack / "tenants" / "initech.yaml"
    path.write_text(path.read_text().replace("dkim: {mode: easy}", "dkim: {mode: easy, powermta_selector: mk2027}"))
    fleet = load_stack(stack)
    mta3 = blocks(render_host(fleet, "mta3", DAY), "virtual-mta")
    assert [v for d, v in mta3["initech-192-0-2-41"] if d == "domain-key"] == [
        "mk2027,initech.example.org,/etc/pmta/dkim/mk2027.initech.example.org.pem"]


def test_only_the_submit_addresses_may_relay_or_pick_a_vmta(fleet: Fleet) -> None:
    for host, settings in fleet.settings.mta_hosts.items():
        text = render_host(fleet, host, DAY)
        sources = {arg: dict(body) for arg, body in blocks(text, "source").items()}
        submit = {"127.0.0.1", "::1"} | ({settings.private_address} if settings.private_address else set())
        relaying = {a for a, d in sources.items() if d.get("always-allow-relaying") == "yes"}
        choosing = {a for a, d in sources.items() if d.get("process-x-virtual-mta") == "yes"}
        assert relaying == choosing == submit
        assert all(sources[a]["default-virtual-mta"] == pv.UNROUTED_VMTA for a in submit)
        for everyone in ("0/0", "::/0"):  # may hand in bounces and reports for the relay domains only
            assert sources[everyone] == {"always-allow-relaying": "no", "process-x-virtual-mta": "no",
                                         "smtp-service": "yes"}
        assert set(sources) == submit | {"0/0", "::/0"}
        listeners = top(text, "smtp-listener")
        assert listeners[0] == settings.smtp_listener
        inbound = [_port25(ref.ip.address) for ref in sorted(fleet.ips_by_host[host], key=_ip_order)]
        if settings.private_address:
            assert listeners[1:] == [f"{settings.private_address}:{settings.smtp_listener.rsplit(':', 1)[1]}",
                                     *inbound]
        else:
            assert listeners[1:] == inbound
        # what anyone may send to: the return paths of the host's routes and the feedback domains
        relay = set(top(text, "relay-domain"))
        expected = set()
        for (tenant, stream), route in fleet.routes.items():
            if any(ip.host == host for ip in route.ips):
                for domain in fleet.tenant(tenant).domains:
                    expected |= {f"{stream}.rp.{domain.name}", f"rp.{domain.name}"}
        assert relay == expected and relay


def _port25(address: str) -> str:
    return f"[{address}]:25" if ":" in address else f"{address}:25"


def _ip_order(ref: Any) -> tuple[str, int, int]:
    import ipaddress

    address = ipaddress.ip_address(ref.ip.address)
    return ref.tenant.name, address.version, int(address)


def test_bounces_and_feedback_reports_become_accounting_records(fleet: Fleet) -> None:
    text = render_host(fleet, "mta1", DAY)
    assert dict(blocks(text, "acct-file")[DEFAULT_PATHS["acct_file"]])["records"] == "d,b,t,tq,rb,f"
    found = entries(text)
    bounce = {f"{d} {v}" for where, d, v in found
              if [t for t, _ in where] == ["bounce-processor", "address-list"] and d}
    feedback = {f"{d} {v}" for where, d, v in found
                if [t for t, _ in where] == ["feedback-loop-processor", "address-list"] and d}
    sos = fleet.tenant("sos-expat")
    assert bounce == {f"domain {stream}.rp.{d.name}" for d in sos.domains for stream in sos.streams}
    assert feedback == {f"address fbl@rp.{d.name}" for d in sos.domains}
    for processor in ("bounce-processor", "feedback-loop-processor"):
        assert dict(blocks(text, processor)[""]) == {"deliver-unmatched-email": "no", "deliver-matched-email": "no"}
    domains = {arg: dict(body) for arg, body in blocks(text, "domain").items()}
    for relay in top(text, "relay-domain"):  # an unparsed report goes nowhere, never back out by MX
        assert domains[relay] == {"type": "discard"}


def test_http_management_is_for_loopback_only(fleet: Fleet) -> None:
    for host in fleet.settings.mta_hosts:
        text = render_host(fleet, host, DAY)
        assert top(text, "http-mgmt-port") == [str(pv.HTTP_MGMT_PORT)]
        access = [value.split() for value in top(text, "http-access")]
        assert {a for a, level in access if level != "none"} == {"127.0.0.1", "::1"}
        assert all(level in ("admin", "none") for _, level in access)
        assert {a for a, level in access if level == "none"} == {"0/0", "::/0"}


def test_providers_are_grouped_by_mx_with_backoff_and_starttls(fleet: Fleet) -> None:
    text = render_host(fleet, "mta1", DAY)
    rollups = [v for where, d, v in entries(text) if where and where[0][0] == "mx-rollup-list" and d]
    assert "mx gmail-smtp-in.l.google.com gmail.rollup" in [f"mx {v}" for v in rollups]
    assert "aspmx.l.google.com gmail.rollup" in rollups  # Google Workspace domains join gmail's queue
    assert "*.mail.protection.outlook.com microsoft.rollup rollup-by-ip" in rollups  # and Microsoft 365's
    assert all(v.split()[1].endswith(".rollup") for v in rollups)
    assert all(v.endswith("rollup-by-ip") for v in rollups if v.startswith("*"))  # a wildcard MX needs it
    assert "mx-rollup" not in top(text, "mx-rollup") and "\n  mx-rollup " not in text
    domains = {arg: dict(body) for arg, body in blocks(text, "domain").items()}
    for provider in pv.PROVIDERS:
        block = domains[provider.domain]
        assert block["use-starttls"] == "yes"
        assert block["retry-after"] == provider.retry_after
        assert block["backoff-retry-after"] == provider.backoff_retry_after
        assert block["backoff-to-normal-after"] == provider.backoff_to_normal_after
        assert block["smtp-pattern-list"] == pv.BACKOFF_PATTERN_LIST
        assert "max-msg-rate" not in block and "backoff-max-msg-rate" not in block, (
            "a provider-wide rate would let backoff or the default raise a cold IP's ceiling")
    patterns = [line.strip() for line in text.split(f"<smtp-pattern-list {pv.BACKOFF_PATTERN_LIST}>")[1]
                .split("</smtp-pattern-list>")[0].strip().splitlines()]
    assert patterns == [f"reply {r.pattern} mode=backoff" for r in pv.BACKOFF_REPLIES]


def _pattern_list(text: str) -> list[re.Pattern[str]]:
    """The rendered backoff patterns as PowerMTA reads them: PCRE between slashes, case-insensitive."""
    body = text.split(f"<smtp-pattern-list {pv.BACKOFF_PATTERN_LIST}>")[1].split("</smtp-pattern-list>")[0]
    out = []
    for line in body.strip().splitlines():
        match = re.fullmatch(r"reply /(.*)/ mode=backoff", line.strip())
        assert match, line
        out.append(re.compile(match.group(1), re.IGNORECASE))
    return out


def test_each_listed_provider_reply_switches_its_queue_to_backoff_and_ordinary_4xx_do_not(fleet: Fleet) -> None:
    patterns = _pattern_list(render_host(fleet, "mta1", DAY))
    for reply in pv.BACKOFF_REPLIES:
        for example in reply.examples:
            assert any(p.search(example) for p in patterns), f"{reply.provider}: {example}"
    for ordinary in pv.ORDINARY_DEFERRALS:
        assert not any(p.search(ordinary) for p in patterns), ordinary
    providers = {r.provider for r in pv.BACKOFF_REPLIES}
    assert {"gmail", "yahoo", "microsoft", "apple"} <= providers
    seen = " ".join(e for r in pv.BACKOFF_REPLIES for e in r.examples)
    for code in ("[TSS04]", "[TSS05]", "[TSS09]", "4.7.651", "S3114", "RP-003", "421-4.7.0"):
        assert code in seen, f"{code} is one of the replies the backoff must catch"


def test_a_host_without_ips_still_gets_a_complete_config(stack_copy: Callable[[str], Path]) -> None:
    stack = stack_copy("dev")
    fleet_file = stack / "fleet.yaml"
    fleet_file.write_text(fleet_file.read_text(encoding="utf-8").replace(
        "mta_hosts:\n", "mta_hosts:\n  mta-spare:\n    ansible_host: 192.0.2.11\n"), encoding="utf-8")
    text = render_host(load_stack(stack), "mta-spare", DAY)
    assert "# No dedicated IP of this host may send today." in text
    assert set(blocks(text, "virtual-mta")) == {pv.UNROUTED_VMTA} and not blocks(text, "virtual-mta-pool")
    assert blocks(text, "source")["0/0"]
    assert not blocks(text, "bounce-processor") and not top(text, "relay-domain")
    with pytest.raises(KeyError, match="no MTA host 'nope'"):
        host_view(load_stack(stack), "nope", DAY)


# --- output properties: golden files, determinism, day-to-day diffs --------------------------------

@pytest.mark.parametrize("host", ["mta1", "mta2", "mta3"])
def test_golden_config(fleet: Fleet, host: str) -> None:
    """Regenerate with: MAILPLANE_UPDATE_GOLDEN=1 .venv/bin/pytest tests/mta/test_render.py"""
    text = render_host(fleet, host, DAY)
    golden = GOLDEN / f"{host}.config"
    if os.environ.get("MAILPLANE_UPDATE_GOLDEN") == "1":
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text, encoding="utf-8")
    expected = golden.read_text(encoding="utf-8")
    if text != expected:
        diff = "".join(difflib.unified_diff(expected.splitlines(keepends=True), text.splitlines(keepends=True),
                                            f"tests/golden/powermta/{host}.config", f"render_host({host!r})"))
        pytest.fail(f"rendered config differs from the golden file (if the change is intended: "
                    f"MAILPLANE_UPDATE_GOLDEN=1 .venv/bin/pytest tests/mta/test_render.py):\n{diff}")


def test_golden_files_are_exactly_the_prod_hosts(fleet: Fleet) -> None:
    assert sorted(p.stem for p in GOLDEN.glob("*.config")) == sorted(fleet.settings.mta_hosts)


def test_rendering_twice_gives_identical_bytes(fleet: Fleet) -> None:
    again = load_stack(PROD)
    for host in fleet.settings.mta_hosts:
        first = render_host(fleet, host, DAY)
        assert first == render_host(fleet, host, DAY) == render_host(again, host, DAY)
        assert first.endswith("\n") and not first.endswith("\n\n")
        assert "2026-11-25" not in first, "no render date in the output"
    assert delivery_servers(fleet, DAY) == delivery_servers(again, DAY)


def _changed_lines(old: str, new: str) -> list[tuple[str, str]]:
    """Line pairs that differ, compared position by position.

    The configs of two days have the same lines in the same places, and only numbers differ, so
    any minimal diff (git's, GNU diff's) shows exactly these pairs.  difflib's matcher is not
    minimal: on runs of repeated lines (``</domain>``) it can shift a hunk, hence no difflib here.
    """
    before, after = old.splitlines(), new.splitlines()
    assert len(before) == len(after), "a day's config must have the same lines as the day before"
    return [(a, b) for a, b in zip(before, after, strict=True) if a != b]


def pool_members(text: str) -> set[str]:
    """Every VMTA some ``<virtual-mta-pool>`` of the rendered config lists."""
    return {value for body in blocks(text, "virtual-mta-pool").values() for d, value in body if d == "virtual-mta"}


def test_consecutive_days_differ_only_in_warmup_numbers(fleet: Fleet) -> None:
    """Day to day only the throttles move, except around an IP's first plan day: its VMTA appears
    ``vmta_lead_days`` before it (with that day's numbers, in no pool) and joins its pools on the day."""
    lead = fleet.settings.vmta_lead_days
    assert lead == 2  # prod's fleet.yaml sets none: the default
    start = datetime.date(2026, 10, 1)  # before every plan's lead, through initech's start on 12-01
    changed_days = deployed = joined = 0
    seen: set[str] = set()
    for host, refs in fleet.ips_by_host.items():
        previous = render_host(fleet, host, start)
        for offset in range(1, 100):
            day = start + datetime.timedelta(days=offset)
            text = render_host(fleet, host, day)
            ahead = [r for r in refs if r.ip.warmup and r.ip.warmup.started == day + datetime.timedelta(days=lead)]
            for r in ahead:
                vmta = names.vmta_name(r.tenant.name, r.ip.address)
                assert vmta not in blocks(previous, "virtual-mta") and vmta in blocks(text, "virtual-mta")
                assert f"# {r.tenant.name} {r.ip.address}: no VMTA today" in previous
                assert f"# {r.tenant.name} {r.ip.address}: no VMTA today" not in text
                assert vmta not in pool_members(text)
                deployed += 1
            starting = [r for r in refs if r.ip.warmup and r.ip.warmup.started == day]
            for r in starting:
                vmta = names.vmta_name(r.tenant.name, r.ip.address)
                assert vmta not in pool_members(previous) and vmta in pool_members(text)
                # deployed ahead with the first day's numbers: nothing of it changes on the day but the pools
                assert vmta_throttles(previous)[vmta] == vmta_throttles(text)[vmta]
                assert blocks(previous, "virtual-mta")[vmta] == blocks(text, "virtual-mta")[vmta]
                joined += 1
            if ahead or starting:
                previous = text
                continue
            pairs = _changed_lines(previous, text)
            for before, after in pairs:
                directive, value = after.split()
                assert before.split()[0] == directive and directive in WARMUP_DIRECTIVES, (host, day, before, after)
                assert re.fullmatch(r"\d+(/h)?", value) and before.startswith("  "), (host, day, after)
                seen.add(directive)
            changed_days += bool(pairs)
            previous = text
    assert changed_days > 60  # not vacuous: the plans move most days
    assert deployed == joined == len([r for r in fleet.ips() if r.ip.warmup and r.ip.warmup.started > start])
    assert seen == WARMUP_DIRECTIVES


# --- the template: its interface and Ansible's whitespace rules ------------------------------------

def test_template_reads_only_pmta_and_paths() -> None:
    env = template_environment()
    source = (TEMPLATES_DIR / CONFIG_TEMPLATE).read_text(encoding="utf-8")
    assert meta.find_undeclared_variables(env.parse(source)) == {"pmta", "paths"}
    assert not list(meta.find_referenced_templates(env.parse(source))), "no includes: one file for both renderers"
    assert "\t" not in source
    for number, line in enumerate(source.splitlines(), 1):
        if "{%" in line:  # with lstrip_blocks off, indentation before a tag would reach the output
            assert line.startswith("{%") and line.endswith("%}"), f"config.j2:{number}: a tag must be a line of its own"


def test_to_vars_is_plain_json_in_a_fixed_order(fleet: Fleet) -> None:
    def plain(value: Any) -> bool:
        if isinstance(value, dict):
            return all(isinstance(k, str) and plain(v) for k, v in value.items())
        if isinstance(value, list):
            return all(plain(v) for v in value)
        return value is None or type(value) in (str, int)

    for host in fleet.settings.mta_hosts:
        pmta = host_view(fleet, host, DAY).to_vars()
        assert plain(pmta)
        assert json.loads(json.dumps(pmta)) == pmta
        assert json.dumps(pmta) == json.dumps(host_view(fleet, host, DAY).to_vars())
        assert render_vars(json.loads(json.dumps(pmta))) == render_host(fleet, host, DAY)


def test_the_whitespace_settings_ansible_uses_give_the_same_bytes(fleet: Fleet) -> None:
    """A plain (non-sandboxed) Jinja environment set up as Ansible's template module sets it up,
    with and without lstrip_blocks, renders what the Python renderer renders."""
    variables = {"pmta": host_view(fleet, "mta1", DAY).to_vars(), "paths": dict(DEFAULT_PATHS)}
    ours = render_host(fleet, "mta1", DAY)
    for lstrip in (False, True):
        env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)), trim_blocks=True,
                                 lstrip_blocks=lstrip, keep_trailing_newline=False, undefined=jinja2.StrictUndefined,
                                 autoescape=False)
        assert render_template(env, CONFIG_TEMPLATE, variables) == ours  # type: ignore[arg-type]
    # without trim_blocks every tag line would leave an empty line: the setting matters
    loose = template_environment(trim_blocks=False)
    assert render_template(loose, CONFIG_TEMPLATE, variables) != ours


ANSIBLE = Path(sys.executable).parent / "ansible"


@pytest.mark.skipif(not ANSIBLE.exists(), reason="ansible-core is not installed in the virtualenv")
def test_ansible_template_module_renders_the_same_bytes(fleet: Fleet, tmp_path: Path) -> None:
    """The real thing: ``ansible.builtin.template`` with the role's two variables from extra vars."""
    paths = {**DEFAULT_PATHS, "dkim_dir": "/etc/pmta/keys"}
    variables = {"pmta": host_view(fleet, "mta2", DAY).to_vars(), "paths": paths}
    (tmp_path / "vars.json").write_text(json.dumps(variables), encoding="utf-8")
    dest = tmp_path / "config"
    env = {**os.environ, "ANSIBLE_LOCAL_TEMP": str(tmp_path / "local"), "ANSIBLE_REMOTE_TEMP": str(tmp_path / "remote"),
           "ANSIBLE_NOCOLOR": "1", "ANSIBLE_CONFIG": str(tmp_path / "none.cfg")}
    proc = subprocess.run(
        [str(ANSIBLE), "localhost", "-i", "localhost,", "-c", "local",
         "-e", f"ansible_python_interpreter={sys.executable}", "-e", f"@{tmp_path / 'vars.json'}",
         "-m", "ansible.builtin.template",
         "-a", f"src={TEMPLATES_DIR / CONFIG_TEMPLATE} dest={dest}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert dest.read_bytes() == render_host(fleet, "mta2", DAY, paths).encode("utf-8")


def test_rendered_configs_pass_pmta_lint(fleet: Fleet) -> None:
    lint = pytest.importorskip("mailplane.mta.lint")
    for day in (DAY, datetime.date(2026, 10, 1), datetime.date(2027, 3, 1)):
        for host in fleet.settings.mta_hosts:
            assert lint.lint(render_host(fleet, host, day), f"{host}.config") == [], (host, day)


# --- mailplane render ------------------------------------------------------------------------------

def _render(*args: str | Path) -> Any:
    return CliRunner().invoke(app, ["render", *(str(a) for a in args)])


def test_render_command_writes_every_host_and_tenant_atomically(
        fleet: Fleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "build"
    written: list[Path] = []
    real = cli_render.write_atomic

    def spy(path: Path, data: str | bytes) -> None:
        written.append(path)
        real(path, data)

    monkeypatch.setattr(cli_render, "write_atomic", spy)
    (out / "powermta").mkdir(parents=True)
    (out / "powermta" / "mta1.config").write_text("old\n", encoding="utf-8")
    (out / "powermta" / "mta1.config").chmod(0o600)
    result = _render(PROD, "--out", out, "--date", "2026-11-25")
    assert result.exit_code == 0, result.output
    expected = {Path("powermta") / f"{h}{suffix}" for h in ("mta1", "mta2", "mta3")
                for suffix in (".config", ".deployed.json")}
    expected |= {Path("mailwizz") / f"{t}.json" for t in ("globex", "initech", "sos-expat")}
    files = {p.relative_to(out) for p in out.rglob("*") if p.is_file()}
    assert files == expected, "exactly these files, and no temporary file left behind"
    assert sorted(written) == sorted(out / p for p in expected)
    for host in ("mta1", "mta2", "mta3"):
        assert (out / "powermta" / f"{host}.config").read_text(encoding="utf-8") == render_host(fleet, host, DAY)
    assert (out / "powermta" / "mta1.config").stat().st_mode & 0o777 == 0o600, "write_atomic keeps the mode"
    assert (out / "powermta" / "mta1.config").read_bytes() == (GOLDEN / "mta1.config").read_bytes()
    servers = delivery_servers(fleet, DAY)
    for tenant in ("globex", "initech", "sos-expat"):
        assert json.loads((out / "mailwizz" / f"{tenant}.json").read_text(encoding="utf-8")) == servers[tenant]
    for host in ("mta1", "mta2", "mta3"):  # the record of each config: the VMTAs it runs and their DKIM domains
        deployed = parse_deployed((out / "powermta" / f"{host}.deployed.json").read_text(encoding="utf-8"))
        assert (deployed.stack, deployed.host) == ("prod", host)
        assert sorted(deployed.vmtas) == sorted(v.name for v in host_view(fleet, host, DAY).vmtas)
    assert "wrote 3 PowerMTA configs (each with its deployed record) and 3 MailWizz server files" in result.stdout


def test_render_command_refuses_an_invalid_stack_and_writes_nothing(
        stack_copy: Callable[[str], Path], tmp_path: Path) -> None:
    stack = stack_copy("prod")
    globex = stack / "tenants" / "globex.yaml"
    globex.write_text(globex.read_text(encoding="utf-8").replace("mode: byo", "mode: byoo")
                      .replace("policy: reject,", "policy: rejekt,"), encoding="utf-8")
    out = tmp_path / "out"
    result = _render(stack, "--out", out, "--date", "2026-11-25")
    assert result.exit_code == 1
    located = [line for line in result.stderr.splitlines() if re.search(r"tenants/globex\.yaml:\d+:\d+: ", line)]
    assert len(located) == 2, result.stderr
    assert any("domains[0].dkim.mode" in line for line in located)
    assert any("domains[0].dmarc.policy" in line for line in located)
    assert result.stderr.rstrip().endswith("2 errors")
    assert not out.exists()


@pytest.mark.parametrize("bad", ["2026-13-01", "tomorrow", "20261125x"])
def test_render_command_rejects_a_bad_date_with_exit_2(tmp_path: Path, bad: str) -> None:
    result = _render(PROD, "--out", tmp_path / "out", "--date", bad)
    assert result.exit_code == 2
    assert "is not a date" in result.output
    assert not (tmp_path / "out").exists()


def test_render_command_defaults_to_today(tmp_path: Path) -> None:
    result = _render(ROOT / "stacks" / "dev", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    assert datetime.date.today().isoformat() in result.stdout
    assert (tmp_path / "powermta" / "mta-dev.config").is_file()
