"""``mailplane dns check`` against a real DNS server (knotd on loopback) serving the example stacks.

The good zone passes every check; each broken variant fails exactly the checks of the record it
breaks and nothing else (a record receivers evaluate to permerror also fails the SPF evaluation
of the IPs it covers); each accepted variant -- the same policy written otherwise, a key in its
other DER form, a difference that still works -- passes or only warns.  The zone is built with
mailplane.model.records, so a variant changes one record the way a person publishing DNS by hand
could.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from dns_server import DnsTestData, KnotServer, Zone, easy_dkim_tokens, good_zone, public_pem, stack_outputs
from typer.testing import CliRunner

from mailplane.cli import app
from mailplane.dns.checks import SpfWalk, plan_checks, run_checks
from mailplane.dns.lookup import Answer, BoundedLookup, Lookup
from mailplane.dns.resolver import DnsLookup, make_resolver, parse_nameserver
from mailplane.model import records as rec
from mailplane.model.loader import load_stack
from mailplane.model.routes import Route, powermta_return_paths
from mailplane.model.stack import Fleet
from mailplane.model.tenant import Domain, Tenant

ROOT = Path(__file__).resolve().parents[2]
RESULT_KEYS = {"tenant", "domain", "ip", "check", "name", "status", "message"}


def dns_check(stack: str | Path, server: str, *args: str) -> tuple[int, str, str]:
    stack_dir = stack if isinstance(stack, Path) else ROOT / "stacks" / stack
    result = CliRunner().invoke(app, ["dns", "check", str(stack_dir), "--nameserver", server, *args])
    return result.exit_code, result.stdout, result.stderr


def json_check(stack: str | Path, server: str, *args: str) -> tuple[int, list[dict[str, Any]]]:
    code, out, err = dns_check(stack, server, "--format", "json", *args)
    assert "Traceback" not in out + err
    return code, json.loads(out)


def key(r: dict[str, Any]) -> tuple[str, str, str]:
    return (r["domain"] or r["ip"], r["check"], r["name"])


def not_ok(results: list[dict[str, Any]]) -> set[tuple[str, str, str, str]]:
    """Everything that is not ok or skipped: what a variant must narrow down to its broken record."""
    return {(*key(r), r["status"]) for r in results if r["status"] not in ("ok", "skip")}


# --- what the variants break, found in the fleet rather than spelled out -------------------------

def _domain(fleet: Fleet, test: Callable[[Domain], bool]) -> Domain:
    return next(d for t in fleet.tenants for d in t.domains if test(d))


def easy(fleet: Fleet) -> Domain:
    return _domain(fleet, lambda d: d.dkim.mode == "easy" and d.mail_from is not None and d.dmarc is not None)


def byo(fleet: Fleet) -> Domain:
    return _domain(fleet, lambda d: d.dkim.mode == "byo")


def with_spf(fleet: Fleet) -> Domain:
    return _domain(fleet, lambda d: d.spf is not None and bool(d.spf.include))


def ip_of(fleet: Fleet, version: int, index: int = 0) -> tuple[str, str]:
    ips = [ref.ip for ref in fleet.ips() if ipaddress.ip_address(ref.ip.address).version == version]
    return ips[index].address, ips[index].hostname


def return_path(fleet: Fleet, ips: int = 2) -> tuple[Tenant, Domain, Route, str]:
    """A domain's return path on a PowerMTA route of at least ``ips`` IPs, and that route."""
    return next((t, d, route, name) for t in fleet.tenants for d in t.domains
                for route, name in powermta_return_paths(t, d) if len(route.ips) >= ips)


def easy_pmta(fleet: Fleet) -> Domain:
    """An Easy DKIM domain with a key of its own for PowerMTA (its tenant has a PowerMTA route)."""
    return next(d for t in fleet.tenants for d in t.domains if rec.has_powermta_key(t, d))


def expected_checks(tenant: Tenant, domain: Domain) -> set[str]:
    """The checks the good zone gives a domain: the records the fleet declares for it."""
    return ({"dkim"} | ({"dkim-powermta"} if rec.has_powermta_key(tenant, domain) else set())
            | {"dmarc"}  # declared, compared; undeclared, the published record's reports still judged
            | ({"mail-from-mx", "mail-from-spf"} if domain.mail_from else set())
            | ({"spf", "spf-lookups", "spf-void-lookups", "spf-eval"} if domain.spf else set())
            | ({"return-path-mx", "return-path-spf", "return-path-spf-eval"}
               if powermta_return_paths(tenant, domain) else set()))


def pkcs1_value(private_pem: str) -> str:
    """A DKIM key record whose p= is the PKCS#1 RSAPublicKey DER of the key, not its SubjectPublicKeyInfo."""
    key = serialization.load_pem_public_key(public_pem(private_pem).encode())
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    return f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode()}"


# --- the good zone ------------------------------------------------------------------------------

@pytest.mark.parametrize("stack", ["prod", "dev"])
def test_every_check_passes_on_the_good_zone(stack: str, dns_data: DnsTestData, good_dns: KnotServer) -> None:
    code, results = json_check(stack, good_dns.address, "--outputs", str(dns_data.outputs_files[stack]))
    assert code == 0
    assert [r for r in results if r["status"] != "ok"] == []
    fleet = dns_data.fleets[stack]
    for tenant in fleet.tenants:
        for domain in tenant.domains:
            checks = {r["check"] for r in results if r["domain"] == domain.name}
            assert checks == expected_checks(tenant, domain), domain.name
            dkim = [r for r in results if r["domain"] == domain.name and r["check"] == "dkim"]
            assert len(dkim) == (1 if domain.dkim.mode == "byo" else rec.EASY_DKIM_TOKENS)
            # SPF evaluated per IP: the tenant's at the domain, each PowerMTA route's at its return path
            evals = [(r["name"], r["message"].split()[0]) for r in results
                     if r["domain"] == domain.name and r["check"].endswith("spf-eval")]
            assert sorted(evals) == sorted(
                [(domain.name, ip.address) for ip in tenant.ips if domain.spf]
                + [(name, ip.address) for route, name in powermta_return_paths(tenant, domain) for ip in route.ips])
        for ip in tenant.ips:
            assert {(r["check"], r["tenant"]) for r in results if r["ip"] == ip.address} == {
                ("ptr", tenant.name), ("fcrdns", tenant.name)}


def test_json_is_a_list_of_results_with_domain_or_ip(dns_data: DnsTestData, good_dns: KnotServer) -> None:
    _, results = json_check("prod", good_dns.address, "--outputs", str(dns_data.outputs_files["prod"]))
    assert isinstance(results, list) and results
    for r in results:
        assert set(r) == RESULT_KEYS
        assert (r["domain"] is None) != (r["ip"] is None)
        assert r["status"] in ("ok", "skip", "warn", "fail", "error") and r["message"]
    spf = next(r for r in results if r["check"] == "spf-lookups")
    assert "include:amazonses.com (1)" in spf["message"]


def test_without_outputs_easy_dkim_is_skipped_and_byodkim_key_size_checked(good_dns: KnotServer) -> None:
    code, results = json_check("prod", good_dns.address)
    assert code == 0
    dkim = {r["domain"]: r for r in results if r["check"] == "dkim"}
    fleet = load_stack(ROOT / "stacks" / "prod")
    assert dkim[easy(fleet).name]["status"] == "skip"
    assert dkim[easy(fleet).name]["message"] == "skipped: no stack outputs (--outputs gives the Easy DKIM tokens)"
    assert dkim[byo(fleet).name]["status"] == "ok" and "RSA 2048-bit key" in dkim[byo(fleet).name]["message"]
    powermta = {r["domain"]: r for r in results if r["check"] == "dkim-powermta"}
    assert powermta[easy_pmta(fleet).name]["status"] == "ok"
    assert "RSA 2048-bit key (not compared" in powermta[easy_pmta(fleet).name]["message"]
    assert {r["status"] for r in results} == {"ok", "skip"}


def test_tenant_filter_checks_only_that_tenants_domains_and_ips(dns_data: DnsTestData,
                                                                good_dns: KnotServer) -> None:
    code, results = json_check("prod", good_dns.address, "--tenant", "globex",
                               "--outputs", str(dns_data.outputs_files["prod"]))
    globex = dns_data.fleets["prod"].tenant("globex")
    assert code == 0 and {r["tenant"] for r in results} == {"globex"}
    assert {r["domain"] for r in results} - {None} == {d.name for d in globex.domains}
    assert {r["ip"] for r in results} - {None} == {ip.address for ip in globex.ips}


def test_text_output_lists_every_result_and_a_summary(dns_data: DnsTestData, good_dns: KnotServer) -> None:
    code, out, _ = dns_check("dev", good_dns.address, "--outputs", str(dns_data.outputs_files["dev"]))
    lines = out.splitlines()
    assert code == 0
    assert lines[0] == f"DNS check of dev ({good_dns.address})"
    assert lines[1].split() == ["STATUS", "TENANT", "DOMAIN/IP", "CHECK", "NAME", "MESSAGE"]
    assert lines[-1] == f"{len(lines) - 3} results: {len(lines) - 3} ok"


def test_terminal_output_is_a_summary_table(dns_data: DnsTestData, good_dns: KnotServer,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("mailplane.cli.common.is_terminal", lambda: True)
    zone_args = ("--outputs", str(dns_data.outputs_files["prod"]))
    _, results = json_check("prod", good_dns.address, *zone_args)
    code, out, _ = dns_check("prod", good_dns.address, *zone_args)
    assert code == 0
    assert f"DNS check of prod ({good_dns.address})" in out
    fleet = dns_data.fleets["prod"]
    assert all(d.name in out for t in fleet.tenants for d in t.domains)
    assert "✓ ok" in out and "Not ok" not in out and out.rstrip().endswith(f"{len(results)} results: {len(results)} ok")


# --- variants: each gives exactly the results of the record it changes -----------------------------

Broken = tuple[str, str, str] | set[tuple[str, str, str, str]]
"""What a variant breaks: (domain or IP, check, name) failing, or every (…, status) that is not ok."""


def _expected(broken: Broken) -> set[tuple[str, str, str, str]]:
    return {(*broken, "fail")} if isinstance(broken, tuple) else broken


def _replace(zone: Zone, name: str, old: str, new: str, rtype: str = "TXT") -> None:
    (value,) = zone.get(name, rtype)
    assert old in value, (name, value)
    zone.set(name, rtype, value.replace(old, new, 1))


def _remove_easy_cname(zone: Zone, fleet: Fleet, data: DnsTestData) -> Broken:
    domain = easy(fleet)
    record = rec.easy_dkim_records(domain.name, easy_dkim_tokens(domain.name), 300)[1]
    zone.set(record.name, "CNAME")
    return domain.name, "dkim", record.name


def _remove_byo_txt(zone: Zone, fleet: Fleet, data: DnsTestData) -> Broken:
    domain = byo(fleet)
    zone.set(rec.byo_dkim_name(domain), "TXT")
    return domain.name, "dkim", rec.byo_dkim_name(domain)


def _other_byo_key(zone: Zone, fleet: Fleet, data: DnsTestData) -> Broken:
    domain = byo(fleet)
    zone.set(rec.byo_dkim_name(domain), "TXT", rec.byo_dkim_record(domain, public_pem(data.other_key), 300).value)
    return domain.name, "dkim", rec.byo_dkim_name(domain)


def _byo_key_sha1_only(zone: Zone, fleet: Fleet, data: DnsTestData) -> Broken:
    domain = byo(fleet)
    _replace(zone, rec.byo_dkim_name(domain), "k=rsa;", "k=rsa; h=sha1;")
    return domain.name, "dkim", rec.byo_dkim_name(domain)


def _powermta_other_key(zone: Zone, fleet: Fleet, data: DnsTestData) -> Broken:
    """The Easy DKIM domain's PowerMTA key swapped for another valid key: PowerMTA's signatures fail."""
    domain = easy_pmta(fleet)
    name = rec.powermta_dkim_name(domain)
    zone.set(name, "TXT", rec.powermta_dkim_record(domain, public_pem(data.other_key), 300).value)
    return domain.name, "dkim-powermta", name


def _powermta_key_not_for_email(zone: Zone, fleet: Fleet, data: DnsTestData) -> Broken:
    domain = easy_pmta(fleet)
    _replace(zone, rec.powermta_dkim_name(domain), "k=rsa;", "k=rsa; s=tlsrpt;")
    return domain.name, "dkim-powermta", rec.powermta_dkim_name(domain)


def _powermta_key_revoked(zone: Zone, fleet: Fleet, data: DnsTestData) -> Broken:
    domain = easy_pmta(fleet)
    zone.set(rec.powermta_dkim_name(domain), "TXT", "v=DKIM1; k=rsa; p=")
    return domain.name, "dkim-powermta", rec.powermta_dkim_name(domain)


def _powermta_key_removed(zone: Zone, fleet: Fleet, data: DnsTestData) -> Broken:
    domain = easy_pmta(fleet)
    zone.set(rec.powermta_dkim_name(domain), "TXT")
    return domain.name, "dkim-powermta", rec.powermta_dkim_name(domain)


def _two_spf_records(zone: Zone, fleet: Fleet, data: DnsTestData) -> Broken:
    """Receivers' evaluation is a permerror: the IPs' SPF evaluation fails too (it used to be unchecked)."""
    domain = with_spf(fleet)
    zone.add(domain.name, "TXT", "v=spf1 ip4:192.0.2.0/24 -all")
    return {(domain.name, "spf", domain.name, "fail"), (domain.name, "spf-eval", domain.name, "fail")}


def _eleven_lookups(zone: Zone, fleet: Fleet, data: DnsTestData) -> Broken:
    """The fleet's record has 2 lookups (amazonses.com and its own include); the include grows to 12.

    The host has an A and an AAAA record, so no lookup is void for either client family.  The
    tenant's IPs come before the includes, so their evaluation still passes.
    """
    domain = with_spf(fleet)
    target = domain.spf.include[0]  # type: ignore[union-attr]
    host, mx = f"host.{target}", f"mx.{target}"
    zone.add(host, "A", "192.0.2.1")
    zone.add(host, "AAAA", "2001:db8::1")
    zone.add(mx, "MX", f"10 {host}")
    zone.set(target, "TXT", f"v=spf1 include:l1.{target} include:l2.{target} -all")           # 2 → 4
    zone.set(f"l1.{target}", "TXT", f"v=spf1 a:{host} mx:{mx} include:l3.{target} ~all")      # → 7
    zone.set(f"l3.{target}", "TXT", f"v=spf1 a:{host} mx:{mx} ~all")                          # → 9
    zone.set(f"l2.{target}", "TXT", f"v=spf1 a:{host} exists:{host} mx:{mx} ~all")            # → 12
    return domain.name, "spf-lookups", domain.name


def _three_void_lookups(zone: Zone, fleet: Fleet, data: DnsTestData) -> Broken:
    domain = with_spf(fleet)
    target = domain.spf.include[0]  # type: ignore[union-attr]
    # two names that do not exist (NXDOMAIN) and one that has no A/AAAA (NODATA): 3 voids, 5 lookups
    zone.set(target, "TXT", f"v=spf1 a:gone1.{target} mx:gone2.{target} a:{target} ~all")
    return domain.name, "spf-void-lookups", domain.name


def _apex_plus_all(zone: Zone, fleet: Fleet, data: DnsTestData) -> Broken:
    """+all lets every host pass: the tenant's IPs still pass, the record fails."""
    domain = with_spf(fleet)
    _replace(zone, domain.name, " -all", " +all")
    return domain.name, "spf", domain.name


def _return_path_question_all(zone: Zone, fleet: Fleet, data: DnsTestData) -> Broken:
    _, domain, _, name = return_path(fleet)
    _replace(zone, name, " -all", " ?all")
    return domain.name, "return-path-spf", name


def _mail_from_bare_all(zone: Zone, fleet: Fleet, data: DnsTestData) -> Broken:
    domain = easy(fleet)
    zone.set(domain.mail_from, "TXT", "v=spf1 include:amazonses.com all")  # type: ignore[arg-type]
    return domain.name, "mail-from-spf", domain.mail_from  # type: ignore[return-value]


def _include_names_an_invalid_domain(zone: Zone, fleet: Fleet, data: DnsTestData) -> Broken:
    """The fleet's include target names a domain with an empty label: a located failure, never a traceback."""
    domain = with_spf(fleet)
    target = domain.spf.include[0]  # type: ignore[union-attr]
    zone.set(target, "TXT", f"v=spf1 include:spf..{target} ip4:192.0.2.0/24 -all")
    return domain.name, "spf", domain.name


def _redirect_to_a_64_octet_label(zone: Zone, fleet: Fleet, data: DnsTestData) -> Broken:
    """pyspf finds no record at a name that cannot be asked: permerror for every route IP."""
    _, domain, _, name = return_path(fleet)
    zone.set(name, "TXT", f"v=spf1 redirect={'x' * 64}.{domain.name}")
    return {(domain.name, "return-path-spf", name, "fail"), (domain.name, "return-path-spf-eval", name, "fail")}


def _invalid_macro(zone: Zone, fleet: Fleet, data: DnsTestData) -> Broken:
    domain = with_spf(fleet)
    _replace(zone, domain.name, " -all", " exists:%{q}.example.org -all")
    return {(domain.name, "spf", domain.name, "fail"), (domain.name, "spf-eval", domain.name, "fail")}


def _duplicate_redirect(zone: Zone, fleet: Fleet, data: DnsTestData) -> Broken:
    _, domain, _, name = return_path(fleet)
    zone.set(f"_spf.{name}", "TXT", zone.get(name, "TXT")[0])
    zone.set(name, "TXT", f"v=spf1 redirect=_spf.{name} redirect=_spf.{name}")
    return {(domain.name, "return-path-spf", name, "fail"), (domain.name, "return-path-spf-eval", name, "fail")}


def _return_path_spf_lacks_an_ip(zone: Zone, fleet: Fleet, data: DnsTestData) -> Broken:
    """The route's second IP is not listed: its SPF evaluation fails, and so does the record's content check."""
    _, domain, route, name = return_path(fleet)
    zone.set(name, "TXT", f"v=spf1 {rec.spf_ip_terms([route.ips[0].address])[0]} -all")
    return {(domain.name, "return-path-spf", name, "fail"), (domain.name, "return-path-spf-eval", name, "fail")}


def _return_path_mx_removed(zone: Zone, fleet: Fleet, data: DnsTestData) -> Broken:
    _, domain, _, name = return_path(fleet)
    zone.set(name, "MX")
    return domain.name, "return-path-mx", name


def _return_path_mx_lacks_a_host(zone: Zone, fleet: Fleet, data: DnsTestData) -> Broken:
    _, domain, route, name = return_path(fleet)
    zone.set(name, "MX", f"10 {sorted(ip.hostname for ip in route.ips)[0]}")
    return domain.name, "return-path-mx", name


def _dmarc_syntax_error(zone: Zone, fleet: Fleet, data: DnsTestData) -> Broken:
    domain = easy(fleet)
    name = f"_dmarc.{domain.name}"
    zone.set(name, "TXT", zone.get(name, "TXT")[0].replace("v=DMARC1;", "v=DMARC1"))  # a missing ";"
    return domain.name, "dmarc", name


def _dmarc_weaker_policy(zone: Zone, fleet: Fleet, data: DnsTestData) -> Broken:
    domain = _domain(fleet, lambda d: d.dmarc is not None and d.dmarc.policy != "none")
    name = f"_dmarc.{domain.name}"
    zone.set(name, "TXT", zone.get(name, "TXT")[0].replace(f"p={domain.dmarc.policy}", "p=none"))  # type: ignore
    return domain.name, "dmarc", name


def _dmarc_extra_rua_unauthorised(zone: Zone, fleet: Fleet, data: DnsTestData) -> Broken:
    """A rua the fleet does not declare, in another organisation without authorisation: the reports are lost."""
    domain = easy(fleet)
    name = f"_dmarc.{domain.name}"
    _replace(zone, name, "rua=", "rua=mailto:agg@reports.example.net,")
    auth = rec.dmarc_report_auth_name(domain.name, "reports.example.net")
    return {(domain.name, "dmarc", name, "warn"), (domain.name, "dmarc-report-auth", auth, "fail")}


def _dmarc_ruf_unauthorised(zone: Zone, fleet: Fleet, data: DnsTestData) -> Broken:
    domain = easy(fleet)
    name = f"_dmarc.{domain.name}"
    zone.set(name, "TXT", zone.get(name, "TXT")[0] + "; ruf=mailto:forensic@forensics.example.com")
    auth = rec.dmarc_report_auth_name(domain.name, "forensics.example.com")
    return {(domain.name, "dmarc", name, "warn"), (domain.name, "dmarc-report-auth", auth, "fail")}


def _mail_from_mx_elsewhere(zone: Zone, fleet: Fleet, data: DnsTestData) -> Broken:
    domain = easy(fleet)
    zone.set(domain.mail_from, "MX", "10 feedback-smtp.us-east-1.amazonses.com")  # type: ignore[arg-type]
    return domain.name, "mail-from-mx", domain.mail_from  # type: ignore[return-value]


def _ptr_elsewhere(zone: Zone, fleet: Fleet, data: DnsTestData) -> Broken:
    address, _ = ip_of(fleet, 4)
    reverse = ipaddress.ip_address(address).reverse_pointer
    zone.set(reverse, "PTR", "mta9.elsewhere.example.com")
    return address, "ptr", reverse


def _a_elsewhere(zone: Zone, fleet: Fleet, data: DnsTestData) -> Broken:
    address, hostname = ip_of(fleet, 4, 1)
    zone.set(hostname, "A", "203.0.113.99")
    return address, "fcrdns", hostname


def _aaaa_elsewhere(zone: Zone, fleet: Fleet, data: DnsTestData) -> Broken:
    address, hostname = ip_of(fleet, 6)
    zone.set(hostname, "AAAA", "2001:db8:ffff::99")
    return address, "fcrdns", hostname


VARIANTS = {
    "easy-dkim-cname-removed": _remove_easy_cname,
    "byodkim-txt-removed": _remove_byo_txt,
    "byodkim-other-key": _other_byo_key,
    "byodkim-h-sha1-only": _byo_key_sha1_only,
    "powermta-dkim-other-key": _powermta_other_key,
    "powermta-dkim-not-for-email": _powermta_key_not_for_email,
    "powermta-dkim-revoked": _powermta_key_revoked,
    "powermta-dkim-removed": _powermta_key_removed,
    "two-spf-records": _two_spf_records,
    "spf-over-10-lookups": _eleven_lookups,
    "spf-3-void-lookups": _three_void_lookups,
    "spf-plus-all": _apex_plus_all,
    "return-path-question-all": _return_path_question_all,
    "mail-from-bare-all": _mail_from_bare_all,
    "spf-include-invalid-domain": _include_names_an_invalid_domain,
    "return-path-redirect-invalid-domain": _redirect_to_a_64_octet_label,
    "spf-invalid-macro": _invalid_macro,
    "return-path-duplicate-redirect": _duplicate_redirect,
    "return-path-spf-lacks-an-ip": _return_path_spf_lacks_an_ip,
    "return-path-mx-removed": _return_path_mx_removed,
    "return-path-mx-lacks-a-host": _return_path_mx_lacks_a_host,
    "dmarc-syntax-error": _dmarc_syntax_error,
    "dmarc-weaker-policy": _dmarc_weaker_policy,
    "dmarc-extra-rua-unauthorised": _dmarc_extra_rua_unauthorised,
    "dmarc-ruf-unauthorised": _dmarc_ruf_unauthorised,
    "mail-from-mx-elsewhere": _mail_from_mx_elsewhere,
    "ptr-elsewhere": _ptr_elsewhere,
    "a-not-the-ip": _a_elsewhere,
    "aaaa-not-the-ip": _aaaa_elsewhere,
}

MESSAGES = {
    "byodkim-other-key": ("dkim", ["p= is not the public key of the stack's private key"]),
    "byodkim-h-sha1-only": ("dkim", ["h=sha1", "RFC 8301"]),
    "powermta-dkim-other-key": ("dkim-powermta", ["not the public key of the stack's private key", "PowerMTA signs"]),
    "powermta-dkim-not-for-email": ("dkim-powermta", ["s=tlsrpt", "not for email"]),
    "powermta-dkim-revoked": ("dkim-powermta", ["empty p=", "revoked"]),
    "powermta-dkim-removed": ("dkim-powermta", ["missing (NXDOMAIN)"]),
    "two-spf-records": ("spf-eval", ["SPF permerror, not pass"]),
    "spf-plus-all": ("spf", ["'+all'", "every host passes"]),
    "return-path-question-all": ("return-path-spf", ["'?all'", "neutral"]),
    "mail-from-bare-all": ("mail-from-spf", ["a bare 'all' is '+all'"]),
    "spf-include-invalid-domain": ("spf", ["'include:spf..spf.example.org' in spf.example.org",
                                           "is not a valid domain name (empty label)"]),
    "return-path-redirect-invalid-domain": ("return-path-spf", ["label of 64 octets, more than 63"]),
    "spf-invalid-macro": ("spf", ["'exists:%{q}.example.org' in globex.example.net", "'q' is not a macro letter"]),
    "return-path-duplicate-redirect": ("return-path-spf", ["redirect= appears twice"]),
    "return-path-spf-lacks-an-ip": ("return-path-spf", ["ip6:2001:db8:100::31 is not listed"]),
    "return-path-mx-removed": ("return-path-mx", ["missing (no MX record)", "bounces to this return path are lost"]),
    "return-path-mx-lacks-a-host": ("return-path-mx", ["expected MX 10 out6.globex-infra.example.org"]),
    "spf-over-10-lookups": ("spf-lookups", ["12 DNS-querying terms, over the limit of 10"]),
    "spf-3-void-lookups": ("spf-void-lookups", ["3 void lookups, over the limit of 2", "NXDOMAIN", "no A record"]),
    "dmarc-extra-rua-unauthorised": ("dmarc-report-auth", ["reports.example.net has not authorised reports"]),
    "dmarc-ruf-unauthorised": ("dmarc-report-auth", ["forensics.example.com has not authorised reports"]),
}
"""What the failing result of a variant must say (its check, and parts of its message)."""


def _pkcs1_byodkim(zone: Zone, fleet: Fleet, data: DnsTestData) -> Broken:
    """The same BYODKIM key as PKCS#1 RSAPublicKey DER: verifiers accept it, so does the check."""
    domain = byo(fleet)
    zone.set(rec.byo_dkim_name(domain), "TXT", pkcs1_value(data.keys[domain.name]))
    return set()


def _pkcs1_powermta(zone: Zone, fleet: Fleet, data: DnsTestData) -> Broken:
    domain = easy_pmta(fleet)
    zone.set(rec.powermta_dkim_name(domain), "TXT", pkcs1_value(data.keys[domain.name]))
    return set()


def _return_path_by_redirect(zone: Zone, fleet: Fleet, data: DnsTestData) -> Broken:
    """The return path's record moved behind redirect=: the same policy."""
    _, _, _, name = return_path(fleet)
    zone.set(f"_spf.{name}", "TXT", zone.get(name, "TXT")[0])
    zone.set(name, "TXT", f"v=spf1 redirect=_spf.{name}")
    return set()


def _return_path_by_include(zone: Zone, fleet: Fleet, data: DnsTestData) -> Broken:
    """The route's IPs listed in an included record: they pass as before, nothing else does."""
    _, _, _, name = return_path(fleet)
    zone.set(f"_ips.{name}", "TXT", zone.get(name, "TXT")[0])
    zone.set(name, "TXT", f"v=spf1 include:_ips.{name} -all")
    return set()


def _apex_rewritten(zone: Zone, fleet: Fleet, data: DnsTestData) -> Broken:
    """The apex record in another order, with explicit prefix lengths and upper case: the same policy."""
    domain = with_spf(fleet)
    tenant = next(t for t in fleet.tenants if domain in t.domains)
    v4, v6 = (ip.address for ip in tenant.ips)
    zone.set(domain.name, "TXT", f"V=SPF1  +ip6:{v6}/128 include:{domain.spf.include[0]} "  # type: ignore[union-attr]
                                 f"IP4:{v4}/32 Include:amazonses.com -all ")
    return set()


def _report_auth_by_wildcard(zone: Zone, fleet: Fleet, data: DnsTestData) -> Broken:
    """An extra rua whose domain authorises every domain's reports with a DNS wildcard: only the rua differs."""
    broken = _dmarc_extra_rua_unauthorised(zone, fleet, data)
    zone.add("*._report._dmarc.reports.example.net", "TXT", "v=DMARC1")
    return {r for r in broken if r[1] == "dmarc"}  # type: ignore[union-attr]


def _return_path_extra_mx(zone: Zone, fleet: Fleet, data: DnsTestData) -> Broken:
    _, domain, _, name = return_path(fleet)
    zone.add(name, "MX", "20 backup-mx.example.net")
    return {(domain.name, "return-path-mx", name, "warn")}


def _dkim_testing_flag(zone: Zone, fleet: Fleet, data: DnsTestData) -> Broken:
    domain = byo(fleet)
    _replace(zone, rec.byo_dkim_name(domain), "k=rsa;", "k=rsa; t=y;")
    return {(domain.name, "dkim", rec.byo_dkim_name(domain), "warn")}


def _dmarc_stricter_alignment(zone: Zone, fleet: Fleet, data: DnsTestData) -> Broken:
    domain = easy(fleet)
    name = f"_dmarc.{domain.name}"
    _replace(zone, name, "; rua=", "; aspf=s; rua=")
    return {(domain.name, "dmarc", name, "warn")}


ACCEPTED = {
    "byodkim-pkcs1-key": _pkcs1_byodkim,
    "powermta-dkim-pkcs1-key": _pkcs1_powermta,
    "return-path-spf-by-redirect": _return_path_by_redirect,
    "return-path-spf-by-include": _return_path_by_include,
    "spf-rewritten": _apex_rewritten,
    "dmarc-report-auth-wildcard": _report_auth_by_wildcard,
    "return-path-extra-mx": _return_path_extra_mx,
    "dkim-testing-flag": _dkim_testing_flag,
    "dmarc-stricter-alignment": _dmarc_stricter_alignment,
}
"""Records that differ from the fleet's but work: ok, or a warning; never a failure."""

ACCEPTED_MESSAGES = {
    "byodkim-pkcs1-key": ("dkim", "p= is the public key of the stack's private key"),
    "powermta-dkim-pkcs1-key": ("dkim-powermta", "p= is the public key of the stack's private key"),
    "return-path-spf-by-redirect": ("return-path-spf", "the fleet's policy, written otherwise"),
    "return-path-spf-by-include": ("return-path-spf", "the fleet's policy, written otherwise"),
    "spf-rewritten": ("spf", "the fleet's policy, written otherwise"),
    "dmarc-report-auth-wildcard": ("dmarc-report-auth", "reports.example.net accepts DMARC reports about"),
    "return-path-extra-mx": ("return-path-mx", "and also 20 backup-mx.example.net"),
    "dkim-testing-flag": ("dkim", "t=y"),
    "dmarc-stricter-alignment": ("dmarc", "aspf=s is stricter than the fleet's relaxed alignment"),
}


@pytest.fixture(scope="module")
def variants(dns_data: DnsTestData, tmp_path_factory: pytest.TempPathFactory,
             ) -> Iterator[dict[str, tuple[KnotServer, set[tuple[str, str, str, str]]]]]:
    """One knotd per variant, all started at once (each mostly waits to be ready)."""
    built = {}
    for name, mutate in {**VARIANTS, **ACCEPTED}.items():
        zone = dns_data.zone.copy()
        expected = _expected(mutate(zone, dns_data.fleets["prod"], dns_data))
        built[name] = (KnotServer(zone, tmp_path_factory.mktemp(f"knot-{name}")), expected)
    try:
        KnotServer.start_all(server for server, _ in built.values())
    except RuntimeError as err:
        pytest.fail(str(err), pytrace=False)
    yield built
    for server, _ in built.values():
        server.stop()


def _run_variant(variant: str, dns_data: DnsTestData,
                 variants: dict[str, tuple[KnotServer, set[tuple[str, str, str, str]]]],
                 ) -> tuple[int, list[dict[str, Any]], set[tuple[str, str, str, str]]]:
    server, expected = variants[variant]
    code, results = json_check("prod", server.address, "--outputs", str(dns_data.outputs_files["prod"]))
    return code, results, expected


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_broken_record_fails_its_check_and_nothing_else(
        variant: str, dns_data: DnsTestData,
        variants: dict[str, tuple[KnotServer, set[tuple[str, str, str, str]]]]) -> None:
    code, results, expected = _run_variant(variant, dns_data, variants)
    assert not_ok(results) == expected
    assert code == 1
    failed = [r for r in results if r["status"] == "fail"]
    assert failed and all(r["message"] for r in failed)
    if variant in MESSAGES:
        check, parts = MESSAGES[variant]
        messages = [r["message"] for r in failed if r["check"] == check]
        assert messages and all(part in messages[0] for part in parts), messages
    if variant == "two-spf-records":
        skipped = {r["check"] for r in results if r["status"] == "skip"}
        assert skipped == {"spf-lookups", "spf-void-lookups"}
    if variant == "spf-over-10-lookups":
        assert next(r for r in failed if r["check"] == "spf-lookups")["message"].startswith(
            "12 DNS-querying terms, over the limit of 10")
    if variant == "spf-3-void-lookups":
        assert next(r for r in failed if r["check"] == "spf-void-lookups")["message"].startswith(
            "3 void lookups, over the limit of 2")
    if variant == "return-path-spf-lacks-an-ip":
        _, _, route, name = return_path(dns_data.fleets["prod"])
        evals = {r["message"].split()[0]: r for r in results if r["check"] == "return-path-spf-eval"
                 and r["name"] == name}
        assert evals[route.ips[0].address]["status"] == "ok"
        dropped = evals[route.ips[1].address]
        assert dropped["status"] == "fail"
        assert dropped["message"].startswith(f"{route.ips[1].address} ({route.ips[1].hostname}) sending as "
                                             f"postmaster@{name}: SPF fail, not pass (SPF fail - not authorized)")


@pytest.mark.parametrize("variant", ACCEPTED)
def test_an_equivalent_or_merely_different_record_is_accepted(
        variant: str, dns_data: DnsTestData,
        variants: dict[str, tuple[KnotServer, set[tuple[str, str, str, str]]]]) -> None:
    code, results, expected = _run_variant(variant, dns_data, variants)
    assert not_ok(results) == expected
    assert code == 0
    check, part = ACCEPTED_MESSAGES[variant]
    messages = [r["message"] for r in results if r["check"] == check and part in r["message"]]
    assert messages, [r["message"] for r in results if r["check"] == check]


def test_missing_external_report_authorisation_fails(dns_data: DnsTestData, stack_copy: Callable[[str], Path],
                                                     serve_zone: Callable[[Zone], KnotServer]) -> None:
    """A rua mailbox in another organisation must publish <domain>._report._dmarc.<its domain>."""
    stack = stack_copy("prod")
    fleet = load_stack(stack)
    domain, tenant = easy(fleet), next(t for t in fleet.tenants if easy(fleet) in t.domains)
    path = stack / "tenants" / f"{tenant.name}.yaml"
    rua = domain.dmarc.rua[0]  # type: ignore[union-attr]
    path.write_text(path.read_text().replace(f"rua: {rua}}}", f"rua: [{rua}, mailto:agg@reports.example.net]}}", 1))
    fleet = load_stack(stack)
    outputs = stack_outputs(fleet, dns_data.keys)
    outputs_file = stack.parent / "outputs.json"
    outputs_file.write_text(json.dumps(outputs))
    zone = good_zone([fleet], {fleet.stack: outputs})
    auth = rec.dmarc_report_auth_name(domain.name, "reports.example.net")
    assert zone.get(auth, "TXT") == ["v=DMARC1"]

    code, results = json_check(stack, serve_zone(zone).address, "--outputs", str(outputs_file))
    assert code == 0
    assert [r["status"] for r in results if r["check"] == "dmarc-report-auth"] == ["ok"]

    zone.set(auth, "TXT")
    code, results = json_check(stack, serve_zone(zone).address, "--outputs", str(outputs_file))
    assert code == 1
    assert not_ok(results) == {(domain.name, "dmarc-report-auth", auth, "fail")}


def test_a_domain_without_declared_dmarc_still_has_the_published_records_reports_authorised(
        dns_data: DnsTestData, stack_copy: Callable[[str], Path], serve_zone: Callable[[Zone], KnotServer]) -> None:
    """DMARC kept outside the tenant file (dmarc-published waived): its rua and ruf mailboxes are judged alike."""
    stack = stack_copy("prod")
    fleet = load_stack(stack)
    domain, tenant = easy(fleet), next(t for t in fleet.tenants if easy(fleet) in t.domains)
    path = stack / "tenants" / f"{tenant.name}.yaml"
    text = path.read_text()
    line = next(x for x in text.splitlines() if x.strip().startswith("dmarc:") and x in text.split(domain.name, 1)[1])
    path.write_text(text.replace(line + "\n", "", 1))
    fleet = load_stack(stack)
    assert next(d for t in fleet.tenants for d in t.domains if d.name == domain.name).dmarc is None
    outputs = stack_outputs(fleet, dns_data.keys)
    outputs_file = stack.parent / "outputs.json"
    outputs_file.write_text(json.dumps(outputs))
    zone = good_zone([fleet], {fleet.stack: outputs})
    name = f"_dmarc.{domain.name}"
    assert zone.get(name, "TXT") == []

    code, results = json_check(stack, serve_zone(zone).address, "--outputs", str(outputs_file))
    assert code == 0
    assert [(r["status"], r["message"]) for r in results if r["check"] == "dmarc" and r["name"] == name] == [
        ("skip", "not declared in the tenant file; no DMARC record published")]

    zone.add(name, "TXT", "v=DMARC1; p=none; rua=mailto:agg@reports.example.net,mailto:d@" + domain.name
             + "; ruf=mailto:f@forensics.example.com")
    agg, forensic = (rec.dmarc_report_auth_name(domain.name, h)
                     for h in ("reports.example.net", "forensics.example.com"))
    zone.add(agg, "TXT", "v=DMARC1")
    code, results = json_check(stack, serve_zone(zone).address, "--outputs", str(outputs_file))
    assert code == 1
    assert not_ok(results) == {(domain.name, "dmarc-report-auth", forensic, "fail")}
    assert {(r["name"], r["status"]) for r in results if r["check"] == "dmarc-report-auth"} == {
        (agg, "ok"), (forensic, "fail")}
    assert [r["status"] for r in results if r["check"] == "dmarc" and r["name"] == name] == ["skip"]


def test_warnings_are_printed_but_exit_0(dns_data: DnsTestData, serve_zone: Callable[[Zone], KnotServer]) -> None:
    zone = dns_data.zone.copy()
    domain = _domain(dns_data.fleets["prod"], lambda d: d.dmarc is not None and d.dmarc.policy == "quarantine")
    name = f"_dmarc.{domain.name}"
    zone.set(name, "TXT", zone.get(name, "TXT")[0].replace("p=quarantine", "p=reject"))
    code, results = json_check("prod", serve_zone(zone).address, "--outputs", str(dns_data.outputs_files["prod"]))
    assert code == 0
    assert not_ok(results) == {(domain.name, "dmarc", name, "warn")}
    warning = next(r for r in results if r["status"] == "warn")
    assert "p=reject is stricter than the fleet's p=quarantine" in warning["message"]


# --- a nameserver that does not answer ----------------------------------------------------------------

@pytest.fixture
def black_hole() -> Iterator[str]:
    """A UDP port on loopback that receives and never answers: every question times out."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"127.0.0.1:{sock.getsockname()[1]}"


def test_unreachable_nameserver_is_an_error_per_check_and_exit_1(dns_data: DnsTestData, good_dns: KnotServer,
                                                                 black_hole: str) -> None:
    outputs = ("--outputs", str(dns_data.outputs_files["prod"]))
    _, good = json_check("prod", good_dns.address, *outputs)
    code, results = json_check("prod", black_hole, "--timeout", "0.2", *outputs)
    assert code == 1
    assert {key(r) for r in results} == {key(r) for r in good}
    assert {r["status"] for r in results} == {"error"}
    assert all("timeout" in r["message"] for r in results)


def test_text_output_of_an_unreachable_nameserver_has_no_traceback(black_hole: str) -> None:
    code, out, err = dns_check("dev", black_hole, "--timeout", "0.2")
    assert code == 1
    assert "Traceback" not in out + err
    assert out.splitlines()[-1].endswith("error") and "1 skip" in out.splitlines()[-1]


@pytest.mark.parametrize("args", [
    ("--format", "yaml"), ("--tenant", "nobody"), ("--nameserver", "127.0.0.1:99999"),
    ("--nameserver", "[::1"), ("--outputs", "/nonexistent/outputs.json"), ("--concurrency", "0"),
])
def test_usage_errors_exit_2(args: tuple[str, ...], good_dns: KnotServer) -> None:
    result = CliRunner().invoke(app, ["dns", "check", str(ROOT / "stacks" / "dev"), "--nameserver",
                                      good_dns.address, *args])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output


def test_outputs_that_are_not_pulumi_json_are_a_usage_error(tmp_path: Path, good_dns: KnotServer) -> None:
    bad = tmp_path / "outputs.json"
    bad.write_text('{"domains": {"dev.example.org": {"dkim_selectors": "abc"}}}')
    code, _, err = dns_check("dev", good_dns.address, "--outputs", str(bad))
    assert code == 2 and "dkim_selectors is not a list of text" in err


# --- the pieces -------------------------------------------------------------------------------------

def test_nameserver_forms() -> None:
    assert parse_nameserver("127.0.0.1") == ("127.0.0.1", 53)
    assert parse_nameserver("127.0.0.1:5353") == ("127.0.0.1", 5353)
    assert parse_nameserver("[::1]:5353") == ("::1", 5353)
    assert parse_nameserver("::1") == ("::1", 53)
    assert parse_nameserver("localhost:53")[1] == 53
    for bad in ("127.0.0.1:0", "127.0.0.1:x", "[::1", ":53"):
        with pytest.raises(ValueError):
            parse_nameserver(bad)


class CountingLookup:
    """Counts questions in flight on the way to the real server; each takes a little longer to overlap."""

    def __init__(self, inner: Lookup) -> None:
        self.inner = inner
        self.in_flight = 0
        self.most = 0
        self.asked: list[tuple[str, str]] = []

    async def query(self, name: str, rdtype: str) -> Answer:
        self.in_flight += 1
        self.asked.append((name, rdtype))
        self.most = max(self.most, self.in_flight)
        try:
            await asyncio.sleep(0.005)
            return await self.inner.query(name, rdtype)
        finally:
            self.in_flight -= 1


@pytest.mark.parametrize("concurrency", [1, 3])
def test_concurrency_bounds_questions_in_flight(concurrency: int, dns_data: DnsTestData,
                                                good_dns: KnotServer) -> None:
    from mailplane.dns.checks import StackOutputs

    fleet = dns_data.fleets["prod"]
    checks = plan_checks(fleet, StackOutputs.from_json(dns_data.outputs["prod"]))
    counting = CountingLookup(DnsLookup(make_resolver(parse_nameserver(good_dns.address), 2.0)))
    results = asyncio.run(run_checks(checks, counting, concurrency))
    assert {r.status for r in results} == {"ok"}
    assert counting.most == concurrency
    assert len(counting.asked) == len(set(counting.asked))  # each question once per run (cache)


def test_bounded_lookup_holds_questions_over_the_limit(good_dns: KnotServer) -> None:
    counting = CountingLookup(DnsLookup(make_resolver(parse_nameserver(good_dns.address), 2.0)))
    bounded = BoundedLookup(counting, 4)

    async def ask_all() -> list[Answer]:
        return await asyncio.gather(*(bounded.query(f"n{i}.example.com", "A") for i in range(20)))

    answers = asyncio.run(ask_all())
    assert counting.most == 4 and len(counting.asked) == 20
    assert all(a.nxdomain and a.void for a in answers)


def test_spf_walk_reports_an_include_loop_without_following_it_forever() -> None:
    """The rules run over any Lookup: here a dict, to show a loop the test server need not serve."""
    records = {"a.example": "v=spf1 include:b.example -all", "b.example": "v=spf1 include:a.example -all"}

    class Dict:
        async def query(self, name: str, rdtype: str) -> Answer:
            value = records.get(name)
            return Answer(name, rdtype, (value,) if value and rdtype == "TXT" else (), nxdomain=value is None)

    walk = SpfWalk(Dict())
    asyncio.run(walk.run("a.example", records["a.example"]))
    assert walk.errors == ["loop: a.example → b.example → a.example"]
    assert len(walk.lookups) == 2 and walk.voids == []


def test_dmarc_alignment_must_be_as_strict_as_the_fleet_declares(
        dns_data: DnsTestData, stack_copy: Callable[[str], Path], serve_zone: Callable[[Zone], KnotServer]) -> None:
    """A domain declaring strict DKIM alignment publishes adkim=s; a record without it is weaker: it fails."""
    stack = stack_copy("prod")
    fleet = load_stack(stack)
    domain = easy(fleet)
    tenant = next(t for t in fleet.tenants if domain in t.domains)
    path = stack / "tenants" / f"{tenant.name}.yaml"
    text = path.read_text()
    assert "dmarc: {policy: quarantine," in text
    path.write_text(text.replace("dmarc: {policy: quarantine,", "dmarc: {policy: quarantine, dkim_alignment: strict,",
                                 1))
    fleet = load_stack(stack)
    outputs = stack_outputs(fleet, dns_data.keys)
    outputs_file = stack.parent / "outputs.json"
    outputs_file.write_text(json.dumps(outputs))
    zone = good_zone([fleet], {fleet.stack: outputs})
    name = f"_dmarc.{domain.name}"
    assert "adkim=s" in zone.get(name, "TXT")[0]

    code, results = json_check(stack, serve_zone(zone).address, "--outputs", str(outputs_file))
    assert code == 0 and not_ok(results) == set()

    zone.set(name, "TXT", zone.get(name, "TXT")[0].replace("; adkim=s", ""))
    code, results = json_check(stack, serve_zone(zone).address, "--outputs", str(outputs_file))
    assert code == 1
    assert not_ok(results) == {(domain.name, "dmarc", name, "fail")}
    failed = next(r for r in results if r["status"] == "fail")
    assert "adkim=r (relaxed, the default) where the fleet declares strict (adkim=s)" in failed["message"]


# --- SPF and DKIM rules on their own ----------------------------------------------------------------

class DictLookup:
    """Answers from a dict of (name, type) → records: the rules over any Lookup, without a server."""

    def __init__(self, records: dict[tuple[str, str], tuple[str, ...]]) -> None:
        self.records = records
        self.asked: list[tuple[str, str]] = []

    async def query(self, name: str, rdtype: str) -> Answer:
        self.asked.append((name, rdtype))
        if (name, rdtype) in self.records:
            return Answer(name, rdtype, self.records[(name, rdtype)])
        return Answer(name, rdtype, nxdomain=not any(n == name for n, _ in self.records))


@pytest.mark.parametrize(("record", "error"), [
    ("v=spf1 exists:%{x}.example.org -all",
     "'exists:%{x}.example.org' in a.example: %{x...}: 'x' is not a macro letter"),
    ("v=spf1 a:%{c}.example.org -all", "the macro letters c, r and t are allowed only in exp text"),
    ("v=spf1 exists:foo%.example.org -all", "'%' followed by '.'"),
    ("v=spf1 redirect=b.example redirect=b.example", "'redirect=b.example' in a.example: redirect= appears twice"),
    ("v=spf1 -all exp=e.example exp=f.example", "exp= appears twice"),
    ("v=spf1 include:b..example -all", "'include:b..example' in a.example: 'b..example' is not a valid domain name "
                                       "(empty label)"),
    ("v=spf1 a:foo-bar -all", "'foo-bar' is not a domain name with a dot (or a macro) at its end"),
    ("v=spf1 ip4:192.0.2.1/33 -all", "/33 is not an IPv4 prefix length"),
    ("v=spf1 a/24/64 -all", "a takes [:domain][/ip4-prefix][//ip6-prefix]"),
    ("v=spf1 ip4:192.0.2.1\rinclude:b.example -all", "U+000D is not allowed"),
    ("v=spf1 -all moo", "'moo' in a.example: unknown mechanism 'moo'"),
])
def test_spf_syntax_errors_are_located(record: str, error: str) -> None:
    walk = SpfWalk(DictLookup({("b.example", "TXT"): ("v=spf1 -all",)}))
    asyncio.run(walk.run("a.example", record))
    assert any(error in e for e in walk.errors), walk.errors


def test_spf_walk_stops_at_all_and_expands_the_domain_macro() -> None:
    """Terms after all are never evaluated (not counted); %{d} is known without a message: it is followed."""
    lookup = DictLookup({("a.example", "TXT"): ("v=spf1 include:_s.%{d} -all include:never.example",),
                         ("_s.a.example", "TXT"): ("v=spf1 ip4:192.0.2.1 -all",)})
    walk = SpfWalk(lookup)
    asyncio.run(walk.run("a.example", "v=spf1 include:_s.%{d} -all include:never.example"))
    assert walk.errors == [] and walk.unexpanded == []
    assert [term for _, term, _ in walk.lookups] == ["include:_s.%{d}"]
    assert ("never.example", "TXT") not in lookup.asked


def test_void_lookups_are_counted_per_client_family() -> None:
    """a: of a host with only an A record is void for IPv6 clients, as pyspf counts it for them."""
    lookup = DictLookup({("h.example", "A"): ("192.0.2.1",)})
    walk = SpfWalk(lookup)
    asyncio.run(walk.run("a.example", "v=spf1 a:h.example a:h.example a:h.example -all"))
    assert len(walk.void_by_family[4]) == 0 and len(walk.void_by_family[6]) == 3
    assert walk.permerrors() == ["3 void lookups for IPv6 clients, over the limit of 2 (RFC 7208 4.6.4): "
                                 + ", ".join(["a:h.example in a.example (no AAAA record)"] * 3)]


def test_pyspf_asks_the_runs_lookup_and_leaves_its_module_alone(good_dns: KnotServer) -> None:
    """Two evaluations at once, each through its own lookup; pyspf's module-level resolver is not replaced."""
    import spf

    from mailplane.dns.spfeval import evaluate

    before = spf.DNSLookup
    one = DictLookup({("a.example", "TXT"): ("v=spf1 ip4:192.0.2.1 -all",)})
    two = DictLookup({("a.example", "TXT"): ("v=spf1 ip4:192.0.2.2 -all",)})

    async def both() -> list[str]:
        verdicts = await asyncio.gather(*(evaluate(lookup, "192.0.2.1", "x@a.example", "h.example")
                                          for lookup in (one, two)))
        return [v.result for v in verdicts]

    assert asyncio.run(both()) == ["pass", "fail"]
    assert spf.DNSLookup is before and ("a.example", "TXT") in one.asked and ("a.example", "TXT") in two.asked


def test_an_unanswered_question_makes_the_evaluation_an_error_not_a_verdict(black_hole: str) -> None:
    from mailplane.dns.spfeval import evaluate

    lookup = DnsLookup(make_resolver(parse_nameserver(black_hole), 0.2))
    verdict = asyncio.run(evaluate(lookup, "192.0.2.1", "x@a.example", "h.example"))
    assert verdict.result == "temperror" and verdict.dns_error is not None and "timeout" in verdict.dns_error


def test_dkim_keys_compare_as_keys_whatever_their_der_form(dns_data: DnsTestData) -> None:
    from mailplane.dns.checks import dkim_tag_problems, parse_dkim, rsa_key_from_dkim_p

    pem = next(iter(dns_data.keys.values()))
    spki = parse_dkim(rec.dkim_key_value(public_pem(pem)))["p"]
    pkcs1 = parse_dkim(pkcs1_value(pem))["p"]
    assert spki != pkcs1
    assert rsa_key_from_dkim_p(spki).public_numbers() == rsa_key_from_dkim_p(pkcs1).public_numbers()
    with pytest.raises(ValueError, match="not base64"):
        rsa_key_from_dkim_p("not*base64")
    assert dkim_tag_problems(parse_dkim("v=DKIM1; h=sha1:sha256; s=email:tlsrpt; p=x")) == ([], [])
    problems, warnings = dkim_tag_problems(parse_dkim("v=DKIM1; k=ed25519; h=sha1; s=tlsrpt; t=y:s; p="))
    assert len(problems) == 4 and warnings and "t=y" in warnings[0]
