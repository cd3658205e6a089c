"""MailWizz's delivery servers: the marketing route's capacity split over the tenant's MTA hosts."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from pathlib import Path

from mailplane.mailwizz import delivery_servers
from mailplane.model.loader import load_stack
from mailplane.model.stack import Fleet
from mailplane.warmup.status import ip_status, tenant_capacity

ROOT = Path(__file__).resolve().parent.parent
PROD = ROOT / "stacks" / "prod"
DAY = datetime.date(2026, 11, 25)


def test_each_tenant_gets_one_server_the_senders_listener_with_what_it_lets_through(fleet: Fleet) -> None:
    servers = delivery_servers(fleet, DAY)
    assert list(servers) == [t.name for t in fleet.tenants]
    service = fleet.settings.sender
    assert service is not None and service.submission_host == "smtp.mailplane.example.com"
    for tenant in fleet.tenants:
        described = servers[tenant.name]
        route = fleet.route(tenant.name, "marketing")
        assert described["stream"] == "marketing" and described["route"] == route.transport
        [server] = described["delivery_servers"]
        assert (server["hostname"], server["port"], server["protocol"]) == ("smtp.mailplane.example.com", 587, "tls")
        sender = tenant.senders[0].name
        assert server["username"] == f"{tenant.name}/{sender}"
        assert server["password"] == f"VAULT:mailplane_api_keys/{tenant.name}/{sender}"  # a pointer, no secret
        # the sender picks the route and the IP: MailWizz only says which stream
        assert server["additional_headers"] == [{"name": "X-Mailplane-Stream", "value": "marketing"}]
        if route.transport == "ses":  # globex: campaigns go through SES
            ses = fleet.settings.ses
            daily = min(tenant.daily_quota or ses.daily_quota, ses.daily_quota)
            assert (server["daily_quota"], server["hourly_quota"]) == (daily, min(daily, int(ses.max_send_rate * 3600)))
            continue
        statuses = [ip_status(tenant, ip, fleet.plan_for(ip), DAY) for ip in route.ips]
        capacity = tenant_capacity(fleet, tenant, DAY)
        assert capacity.daily is not None and capacity.hourly is not None
        route_daily = min(capacity.daily, sum(s.daily_cap or 0 for s in statuses))
        assert described["capacity"]["daily"] == route_daily == server["daily_quota"]
        route_hourly = min(route_daily, capacity.hourly, sum(s.hourly_cap or 0 for s in statuses))
        assert server["hourly_quota"] == max(route_hourly, 1)
        assert server["status"] == "active" and server["daily_quota"] > 0  # 0 means "no limit" to MailWizz
    # sos-expat's transactional IP (203.0.113.21) carries no campaign: only its marketing IPs count
    sos = servers["sos-expat"]["delivery_servers"][0]
    marketing = [ip for ip in fleet.tenant("sos-expat").ips if "marketing" in (ip.streams or ["marketing"])]
    assert sos["daily_quota"] <= sum(ip_status(fleet.tenant("sos-expat"), ip, fleet.plan_for(ip), DAY).daily_cap or 0
                                     for ip in marketing)


def test_a_tenants_mailwizz_sender_is_the_one_it_logs_in_as(stack_copy: Callable[[str], Path]) -> None:
    stack = stack_copy("prod")
    path = stack / "tenants" / "initech.yaml"
    text = path.read_text(encoding="utf-8")
    assert "senders:\n" in text
    added = "senders:\n  - name: mailwizz\n    from: ['*@initech.example.org']\n"
    path.write_text(text.replace("senders:\n", added, 1), encoding="utf-8")
    [server] = delivery_servers(load_stack(stack), DAY)["initech"]["delivery_servers"]
    assert (server["username"], server["from_email"]) == ("initech/mailwizz", "no-reply@initech.example.org")


def test_without_a_submission_host_no_server_and_why() -> None:
    fleet = load_stack(ROOT / "stacks" / "dev")
    assert fleet.settings.sender is None or fleet.settings.sender.submission_host is None
    described = delivery_servers(fleet, DAY)["acme"]
    assert described["delivery_servers"] == [] and "sender.submission_host" in described["missing"]


def test_an_ip_without_a_plan_lifts_no_limit_the_tenant_has(stack_copy: Callable[[str], Path]) -> None:
    stack = stack_copy("prod")
    globex = stack / "tenants" / "globex.yaml"  # no daily_quota: with a plan-less IP, no tenant total
    text = globex.read_text(encoding="utf-8").replace("    warmup: {plan: sparkpost-30d, started: 2026-10-12}\n", "")
    text = text.replace("streams: [transactional, marketing]", "streams: [transactional]")  # MailWizz: its IPs
    globex.write_text(text, encoding="utf-8")
    fleet = load_stack(stack)
    assert tenant_capacity(fleet, fleet.tenant("globex"), DAY).daily is None
    [server] = delivery_servers(fleet, DAY)["globex"]["delivery_servers"]
    assert (server["daily_quota"], server["status"]) == (0, "active")  # 0: no limit, as the sender has none


def test_a_tenant_whose_ips_send_nothing_that_day_is_inactive(stack_copy: Callable[[str], Path]) -> None:
    fleet = load_stack(ROOT / "stacks" / "prod")
    initech = fleet.tenant("initech")
    before = min(ip.warmup.started for ip in initech.ips if ip.warmup) - datetime.timedelta(days=1)
    [server] = delivery_servers(fleet, before)["initech"]["delivery_servers"]
    assert (server["status"], server["daily_quota"], server["hourly_quota"]) == ("inactive", 0, 0)
