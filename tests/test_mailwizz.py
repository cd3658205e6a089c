"""MailWizz's delivery servers: the marketing route's capacity split over the tenant's MTA hosts."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from pathlib import Path

import pytest

from mailplane.mailwizz import delivery_servers
from mailplane.model import names
from mailplane.model.loader import load_stack
from mailplane.model.stack import Fleet
from mailplane.warmup.status import ip_status, tenant_capacity

ROOT = Path(__file__).resolve().parent.parent
PROD = ROOT / "stacks" / "prod"
DAY = datetime.date(2026, 11, 25)


@pytest.fixture(scope="module")
def prod() -> Fleet:
    return load_stack(PROD)


def test_mailwizz_servers_carry_the_marketing_routes_capacity_and_pool(prod: Fleet) -> None:
    servers = delivery_servers(prod, DAY)
    assert list(servers) == [t.name for t in prod.tenants]
    for tenant in prod.tenants:
        described = servers[tenant.name]
        route = prod.route(tenant.name, "marketing")
        assert described["stream"] == "marketing" and described["route"] == route.transport
        if route.transport == "ses":  # globex: campaigns go through SES, never from a transactional IP
            assert described["delivery_servers"] == [] and described["pool"] is None
            continue
        statuses = [ip_status(tenant, ip, prod.plan_for(ip), DAY) for ip in route.ips]
        capacity = tenant_capacity(prod, tenant, DAY)
        assert capacity.daily is not None and capacity.hourly is not None
        route_daily = min(capacity.daily, sum(s.daily_cap or 0 for s in statuses))
        assert described["capacity"]["daily"] == route_daily
        assert described["pool"] == names.pool_name(tenant.name, "marketing")
        hosts = sorted({ip.host for ip in route.ips})
        assert [s["mta_host"] for s in described["delivery_servers"]] == hosts
        active = [s for s in described["delivery_servers"] if s["status"] == "active"]
        # split over the hosts, never more than the route may send in all
        assert route_daily - len(active) <= sum(s["daily_quota"] for s in active) <= route_daily
        for server in described["delivery_servers"]:
            settings = prod.settings.mta_hosts[server["mta_host"]]
            address, _, port = settings.smtp_listener.rpartition(":")
            assert (server["hostname"], server["port"]) == (address.strip("[]"), int(port))
            assert server["type"] == "smtp"
            assert server["additional_headers"] == [
                {"name": "X-Virtual-MTA", "value": names.pool_name(tenant.name, "marketing")}]
            assert server["from_email"] == tenant.senders[0].from_[0]
            assert "password" not in server
            caps = [s for s, ip in zip(statuses, route.ips, strict=True) if ip.host == server["mta_host"]]
            assert server["daily_quota"] <= sum(s.daily_cap or 0 for s in caps)
            if server["status"] == "active":
                assert server["daily_quota"] > 0 and server["hourly_quota"] > 0  # 0 means "no limit" to MailWizz
    # initech's mta2 IP has not started: its server is off, the whole capacity goes to mta3
    initech = {s["mta_host"]: s for s in servers["initech"]["delivery_servers"]}
    assert initech["mta2"]["status"] == "inactive"
    assert (initech["mta3"]["daily_quota"], initech["mta3"]["hourly_quota"]) == (
        servers["initech"]["capacity"]["daily"], servers["initech"]["capacity"]["hourly"])
    # sos-expat's transactional IP (203.0.113.21) carries no campaign: mta1's server is its marketing IP's
    sos = {s["mta_host"]: s for s in servers["sos-expat"]["delivery_servers"]}
    marketing_ip = prod.tenant("sos-expat").ips[1]
    assert sos["mta1"]["daily_quota"] <= ip_status(prod.tenant("sos-expat"), marketing_ip,
                                                   prod.plan_for(marketing_ip), DAY).daily_cap


def test_an_ip_without_a_plan_does_not_lift_the_caps_of_the_tenants_other_hosts(
        stack_copy: Callable[[str], Path]) -> None:
    stack = stack_copy("prod")
    globex = stack / "tenants" / "globex.yaml"  # no daily_quota: with a plan-less IP, no tenant total
    text = globex.read_text(encoding="utf-8").replace("    warmup: {plan: sparkpost-30d, started: 2026-10-12}\n", "")
    text = text.replace("streams: [transactional, marketing]", "streams: [transactional]")  # MailWizz: its IPs
    globex.write_text(text, encoding="utf-8")
    fleet = load_stack(stack)
    tenant = fleet.tenant("globex")
    assert tenant_capacity(fleet, tenant, DAY).daily is None
    servers = {s["mta_host"]: s for s in delivery_servers(fleet, DAY)["globex"]["delivery_servers"]}
    warming = next(ip for ip in tenant.ips if ip.host == "mta3")
    status = ip_status(tenant, warming, fleet.plan_for(warming), DAY)
    assert (servers["mta3"]["daily_quota"], servers["mta3"]["hourly_quota"]) == (status.daily_cap, status.hourly_cap)
    assert (servers["mta2"]["daily_quota"], servers["mta2"]["status"]) == (0, "active")  # 0: no limit


def test_a_single_host_tenant_gets_exactly_its_capacity() -> None:
    fleet = load_stack(ROOT / "stacks" / "dev")
    acme = fleet.tenant("acme")
    for day in (datetime.date(2026, 11, 16), DAY, datetime.date(2027, 1, 1)):
        (server,) = delivery_servers(fleet, day)["acme"]["delivery_servers"]
        capacity = tenant_capacity(fleet, acme, day)
        assert (server["daily_quota"], server["hourly_quota"]) == (capacity.daily, capacity.hourly)
        assert server["from_email"] == "no-reply@dev.example.org"
