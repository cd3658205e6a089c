"""The validated model: normalisation, defaults and the look-ups consumers share."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailplane.model.loader import load_stack
from mailplane.model.names import powermta_selector, return_path_base
from mailplane.model.problems import StackError, format_path
from mailplane.model.routes import is_aligned, route_auth
from mailplane.model.types import normalise_domain, normalise_email, normalise_ip, normalise_listener

ROOT = Path(__file__).resolve().parents[2]
PROD = ROOT / "stacks" / "prod"


def test_example_stacks_load() -> None:
    for name in ("dev", "prod"):
        fleet = load_stack(ROOT / "stacks" / name)
        assert fleet.stack == name
        assert [t.name for t in fleet.tenants] == sorted(t.name for t in fleet.tenants)


def test_prod_example_covers_both_dkim_and_dns_modes() -> None:
    fleet = load_stack(PROD)
    domains = [d for t in fleet.tenants for d in t.domains]
    assert {d.dkim.mode for d in domains} == {"easy", "byo"}
    providers = {d.dns.provider or fleet.settings.dns.default_provider for d in domains}
    assert providers == {"route53", "external"}
    assert len(fleet.tenants) == 3 and len(fleet.settings.mta_hosts) >= 2


@pytest.mark.parametrize(("raw", "canonical"), [
    ("Mail1.Example.COM.", "mail1.example.com"),
    ("bücher.example", "xn--bcher-kva.example"),
    ("ÉCOLE.example.org", "école.example.org".encode("idna").decode()),  # stdlib IDNA 2003 agrees here
])
def test_domain_names_are_normalised(raw: str, canonical: str) -> None:
    assert normalise_domain(raw) == canonical


@pytest.mark.parametrize("raw", ["a..example", "-a.example", "a-.example", "single", "x" * 64 + ".example",
                                 "203.0.113.5", "a_b.example", "exa mple.com", "xn--.example"])
def test_invalid_domain_names_are_rejected(raw: str) -> None:
    with pytest.raises(ValueError):
        normalise_domain(raw)


def test_addresses_and_listeners_are_normalised() -> None:
    assert normalise_ip("2001:DB8:0::0:21") == "2001:db8::21"
    assert normalise_email("Team@Bücher.example") == "Team@xn--bcher-kva.example"
    assert normalise_listener("[2001:db8::1]:25") == "[2001:db8::1]:25"
    for bad in ("127.0.0.1", "::", "224.0.0.1", "fe80::1", "256.1.1.1", "2001:db8::g"):
        with pytest.raises(ValueError):
            normalise_ip(bad)
    for bad in ("127.0.0.1", "127.0.0.1:0", "::1:25", "host:25"):
        with pytest.raises(ValueError):
            normalise_listener(bad)


def test_unicode_domain_in_yaml_is_stored_as_a_label(prod_copy: Path) -> None:
    path = prod_copy / "tenants" / "initech.yaml"
    text = path.read_text().replace("initech.example.org", "bücher.example.org")
    path.write_text(text)
    fleet = load_stack(prod_copy)
    names = [d.name for d in fleet.tenant("initech").domains]
    assert names == ["xn--bcher-kva.example.org"]
    assert fleet.tenant("initech").senders[0].from_ == ["news@xn--bcher-kva.example.org"]


def test_defaults_fill_what_a_tenant_leaves_out() -> None:
    fleet = load_stack(PROD)
    globex = fleet.tenant("globex")
    assert globex.configuration_set == "globex"
    assert load_stack(PROD.parent / "dev").tenant("acme").streams == ["transactional"]
    assert fleet.tenant("sos-expat").configuration_set == "sos-expat"
    assert fleet.settings.dns.ttl == 300
    domain = fleet.domains["mail1.example.com"][1]
    assert (domain.dkim.powermta_selector, domain.return_path) == (None, None)
    assert (powermta_selector(domain), return_path_base(domain)) == ("pmta1", "rp.mail1.example.com")
    assert (domain.dmarc.dkim_alignment, domain.dmarc.spf_alignment) == ("relaxed", "relaxed")


def test_every_tenant_stream_has_one_route_ses_when_no_ip_carries_it() -> None:
    fleet = load_stack(PROD)
    routes = {key: (r.transport, r.addresses) for key, r in fleet.routes.items()}
    assert routes == {
        ("globex", "transactional"): ("pmta", ("198.51.100.31", "2001:db8:100::31")),
        ("globex", "marketing"): ("ses", ()),
        ("initech", "transactional"): ("ses", ()),
        ("initech", "marketing"): ("pmta", ("192.0.2.41", "192.0.2.42")),
        ("sos-expat", "transactional"): ("pmta", ("203.0.113.21",)),
        ("sos-expat", "marketing"): ("pmta", ("203.0.113.22", "203.0.113.23")),
    }
    assert fleet.route("globex", "marketing") is fleet.routes[("globex", "marketing")]


def test_route_auth_names_the_signing_key_and_return_path_of_each_route() -> None:
    fleet = load_stack(PROD)
    mail1 = fleet.domains["mail1.example.com"][1]
    news = fleet.domains["news.example.com"][1]
    pmta = route_auth(fleet.route("sos-expat", "marketing"), news)
    assert (pmta.dkim_domain, pmta.dkim_selector, pmta.return_path, pmta.spf_ips) == (
        "news.example.com", "s2026a", "marketing.rp.news.example.com", ("203.0.113.22", "203.0.113.23"))
    easy = route_auth(fleet.route("sos-expat", "transactional"), mail1)
    assert (easy.dkim_selector, easy.return_path) == ("pmta1", "transactional.rp.mail1.example.com")
    initech = fleet.domains["initech.example.org"][1]
    ses = route_auth(fleet.route("initech", "transactional"), initech)
    assert (ses.dkim_domain, ses.dkim_selector, ses.return_path, ses.spf_ips) == (
        "initech.example.org", None, "bounce.initech.example.org", ())


@pytest.mark.parametrize(("identifier", "mode", "aligned"), [
    ("example.com", "strict", True), ("rp.example.com", "strict", False), ("rp.example.com", "relaxed", True),
    ("example.net", "relaxed", False), ("badexample.com", "relaxed", False), ("EXAMPLE.COM.", "strict", True)])
def test_alignment_modes_of_rfc_7489(identifier: str, mode: str, aligned: bool) -> None:
    assert is_aligned(identifier, "example.com", mode) is aligned


def test_lookups_shared_by_consumers() -> None:
    fleet = load_stack(PROD)
    by_host = fleet.ips_by_host
    assert sorted(by_host) == sorted(fleet.settings.mta_hosts)
    assert sum(len(refs) for refs in by_host.values()) == len(list(fleet.ips()))
    for host, refs in by_host.items():
        assert all(ref.ip.host == host for ref in refs)
    tenant, domain = fleet.domains["news.example.com"]
    assert tenant.name == "sos-expat" and domain.dkim.selector == "s2026a"


def test_anchors_and_merge_keys_are_read(prod_copy: Path) -> None:
    path = prod_copy / "tenants" / "initech.yaml"
    text = path.read_text().replace(
        "    warmup: {plan: cautious-3w, started: 2026-11-12}",
        "    warmup: &ramp {plan: cautious-3w, started: 2026-11-12}",
    ).replace(
        "    warmup: {plan: pmta-6w, started: 2026-12-01}",
        "    warmup:\n      <<: *ramp\n      started: 2026-12-01",
    )
    path.write_text(text)
    fleet = load_stack(prod_copy)
    second = fleet.tenant("initech").ips[1].warmup
    assert second is not None
    assert (second.plan, second.started.isoformat()) == ("cautious-3w", "2026-12-01")


def test_overrides_validate_a_change_without_touching_disk(prod_copy: Path) -> None:
    path = prod_copy / "tenants" / "globex.yaml"
    before = path.read_bytes()
    broken = before.replace(b"host: mta2", b"host: mta9")
    with pytest.raises(StackError) as err:
        load_stack(prod_copy, overrides={path: broken})
    assert any("no MTA host 'mta9'" in p.message for p in err.value.problems)
    assert path.read_bytes() == before
    load_stack(prod_copy)


def test_paths_are_written_as_users_write_them() -> None:
    assert format_path(("domains", 0, "dkim", "mode")) == "domains[0].dkim.mode"
    assert format_path(("warmup_plans", "standard-45d", "schedule", 3)) == "warmup_plans.standard-45d.schedule[3]"
    assert format_path(("a.b",)) == "['a.b']"
    assert format_path(()) == "(document)"


def test_a_symlinked_tenant_file_keeps_its_own_name(prod_copy: Path, tmp_path: Path) -> None:
    target = tmp_path / "shared-globex-source.yaml"
    (prod_copy / "tenants" / "globex.yaml").rename(target)
    (prod_copy / "tenants" / "globex.yaml").symlink_to(target)
    fleet = load_stack(prod_copy)
    assert "globex" in [t.name for t in fleet.tenants]
    assert fleet.sources["globex"].file.endswith("globex.yaml")


def test_a_relative_override_replaces_the_file_on_disk(prod_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(prod_copy.parent)
    path = Path("prod/tenants/globex.yaml")
    changed = path.read_bytes().replace(b"display_name: Globex Corporation", b"display_name: Globex")
    fleet = load_stack(Path("prod"), overrides={path: changed})
    assert fleet.tenant("globex").display_name == "Globex"


def test_shared_names_are_stable_and_distinct() -> None:
    from mailplane.model.names import dkim_key_file, pool_name, vmta_name

    assert vmta_name("acme", "203.0.113.21") == "acme-203-0-113-21"
    assert vmta_name("acme", "2001:DB8::0:21") == "acme-2001-db8--21"
    fleet = load_stack(PROD)
    names = [vmta_name(r.tenant.name, r.ip.address) for r in fleet.ips()]
    assert len(names) == len(set(names))
    assert pool_name("acme", "marketing") == "acme-marketing-pool"
    assert dkim_key_file("s1", "example.com") == "s1.example.com.pem"
