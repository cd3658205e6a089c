"""DNS publishing behind one interface (``mailplane.cloud.dns``): each domain's records go where its
provider's publisher puts them, the publisher chosen by the provider name the model gives.

A Route53 domain's records are resources in its hosted zone and nowhere in ``external_dns_records``; an
external domain's are no resources and all listed there.  Swapping the providers of two domains swaps
where their records go, so the choice follows the model's name and nothing else; a name without a
publisher stops the program and the count, naming the name and the domain.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, get_args

import pulumi
import pytest
from cloud_mocks import ZONE_IDS, AwsMocks, tokens_for

from mailplane.cloud import dns
from mailplane.cloud.engine import Run, run
from mailplane.cloud.inventory import stack_count
from mailplane.model import records as rec
from mailplane.model.fleet import DnsProvider
from mailplane.model.loader import load_stack
from mailplane.model.stack import Fleet
from mailplane.model.tenant import Domain, Tenant

RECORD = "aws:route53/record:Record"
ROUTE53 = {"mail1.example.com", "news.example.com", "initech.example.org"}
EXTERNAL = {"globex.example.net"}
"""stacks/prod's domains by the provider their files name (or leave to the fleet's default)."""


class ZoneMocks(AwsMocks):
    """:class:`AwsMocks` with hosted zones of its own: the swapped stack's zone is not one of prod's."""

    def __init__(self, zones: dict[str, str]) -> None:
        super().__init__()
        self.zones = zones

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:
        if args.token == "aws:route53/getZone:getZone":
            return {"name": args.args["name"], "zoneId": self.zones[args.args["name"]]}
        return super().call(args)


def _expected(fleet: Fleet, tenant: Tenant, domain: Domain) -> list[tuple[str, str]]:
    """(type, name) of every record the domain needs, from the model and the mocks' DKIM tokens."""
    if domain.dkim.mode == "byo":
        dkim = [("TXT", rec.byo_dkim_name(domain))]
    else:
        dkim = [("CNAME", f"{t}._domainkey.{domain.name}") for t in tokens_for(domain.name)]
    if rec.has_powermta_key(tenant, domain):
        dkim.append(("TXT", rec.powermta_dkim_name(domain)))
    static = rec.static_records(tenant, domain, fleet.settings.ses.region, fleet.settings.dns.ttl)
    return sorted([*dkim, *((r.type, r.name) for r in static)])


def _declared(result: Run, domain: str) -> list[dict[str, Any]]:
    return [r.inputs for r in result.of_type(RECORD) if r.parent == f"mailplane:cloud:Domain::{domain}"]


def _listed(result: Run, domain: str) -> list[tuple[str, str]]:
    """(type, name) of the records ``external_dns_records`` leaves a human to publish for ``domain``."""
    return sorted((r["type"], r["name"]) for r in result.outputs["external_dns_records"]
                  if r["name"] == domain or r["name"].endswith("." + domain))


def _check(fleet: Fleet, result: Run, route53: set[str], external: set[str], zones: dict[str, str]) -> None:
    """Every domain's records went where its provider's publisher puts them, and only there."""
    seen = set()
    for tenant in fleet.tenants:
        for domain in tenant.domains:
            expected = _expected(fleet, tenant, domain)
            declared, listed = _declared(result, domain.name), _listed(result, domain.name)
            if domain.name in route53:
                assert sorted((r["type"], r["name"]) for r in declared) == expected, domain.name
                assert {r["zoneId"] for r in declared} == {zones[str(domain.dns.zone)]}, domain.name
                assert listed == [], f"{domain.name}: published in Route53, so none is left to a human"
            else:
                assert domain.name in external
                assert declared == [], f"{domain.name}: external DNS, so no Route53 record"
                assert listed == expected, domain.name
            seen.add(domain.name)
    assert seen == route53 | external


def test_every_provider_the_model_accepts_has_its_own_publisher() -> None:
    assert set(dns.PUBLISHERS) == set(get_args(DnsProvider))
    assert isinstance(dns.publisher("route53"), dns.Route53Publisher)
    assert isinstance(dns.publisher("external"), dns.ExternalPublisher)
    fleet = load_stack(Path(__file__).resolve().parents[2] / "stacks" / "prod")
    chosen = {d.name: type(dns.publisher_for(fleet, d)) for t in fleet.tenants for d in t.domains}
    assert chosen == {**dict.fromkeys(ROUTE53, dns.Route53Publisher), **dict.fromkeys(EXTERNAL, dns.ExternalPublisher)}


def test_route53_domains_are_declared_in_their_zone_and_external_ones_only_listed(
        stack_copy: Callable[[str], Path]) -> None:
    fleet = load_stack(stack_copy("prod"))
    result = run(fleet, AwsMocks(fleet.settings.ses.region))
    _check(fleet, result, ROUTE53, EXTERNAL, ZONE_IDS)
    # what each publisher declares is what the model-only count (mailplane.cloud.inventory) says it does
    for tenant in fleet.tenants:
        for domain in tenant.domains:
            count = dns.publisher_for(fleet, domain).resource_count(tenant, domain, fleet.settings.ses.region,
                                                                    fleet.settings.dns.ttl)
            assert count == len(_declared(result, domain.name)), domain.name


def test_swapping_two_domains_providers_swaps_where_their_records_go(stack_copy: Callable[[str], Path]) -> None:
    stack = stack_copy("prod")
    for name, old, new in [
        ("globex.yaml", "dns: {provider: external}", "dns: {provider: route53, zone: globex.example.net}"),
        ("initech.yaml", "dns: {provider: route53, zone: initech.example.org}", "dns: {provider: external}"),
    ]:
        path = stack / "tenants" / name
        assert old in path.read_text()
        path.write_text(path.read_text().replace(old, new))
    fleet = load_stack(stack)
    zones = {"example.com": ZONE_IDS["example.com"], "globex.example.net": "Z0GLOBEX"}
    result = run(fleet, ZoneMocks(zones))
    route53 = ROUTE53 - {"initech.example.org"} | {"globex.example.net"}
    _check(fleet, result, route53, {"initech.example.org"}, zones)
    assert stack_count(fleet) == len([r for r in result.resources if not r.type.startswith("mailplane:")])


def test_an_unknown_provider_fails_naming_it() -> None:
    with pytest.raises(dns.UnknownDnsProvider, match="unknown DNS provider 'cloudflare'") as err:
        dns.publisher("cloudflare")
    assert "external, route53" in str(err.value) and err.value.provider == "cloudflare"


def test_a_domain_of_an_unknown_provider_stops_the_program_and_the_count(
        stack_copy: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """The model accepts only the registered names; a provider it let through without a publisher
    must not leave the domain's records silently unpublished."""
    fleet = load_stack(stack_copy("prod"))
    model_says = fleet.dns_provider
    monkeypatch.setattr(fleet, "dns_provider",
                        lambda d: "cloudflare" if d.name == "initech.example.org" else model_says(d))
    message = "domain initech.example.org: unknown DNS provider 'cloudflare'"
    with pytest.raises(dns.UnknownDnsProvider, match=message):
        stack_count(fleet)
    with pytest.raises(dns.UnknownDnsProvider, match=message):
        run(fleet, AwsMocks(fleet.settings.ses.region))
