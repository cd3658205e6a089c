"""``mailplane dns check`` against a real DNS server (knotd on loopback) serving the example stacks.

The good zone passes every check; each broken variant fails exactly the check of the record it
breaks and nothing else.  The zone is built with mailplane.cloud.records, so a variant breaks one
record the way a person publishing DNS by hand could.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from dns_server import DnsTestData, KnotServer, Zone, easy_dkim_tokens, good_zone, public_pem, stack_outputs
from typer.testing import CliRunner

from mailplane.cli import app
from mailplane.cloud import records as rec
from mailplane.dns.checks import SpfWalk, plan_checks, run_checks
from mailplane.dns.lookup import Answer, BoundedLookup, Lookup
from mailplane.dns.resolver import DnsLookup, make_resolver, parse_nameserver
from mailplane.model.loader import load_stack
from mailplane.model.stack import Fleet
from mailplane.model.tenant import Domain

ROOT = Path(__file__).resolve().parent.parent
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
            expected = {"dkim"} | ({"dmarc"} if domain.dmarc else set()) \
                | ({"mail-from-mx", "mail-from-spf"} if domain.mail_from else set()) \
                | ({"spf", "spf-lookups", "spf-void-lookups"} if domain.spf else set())
            assert checks == expected, domain.name
            dkim = [r for r in results if r["domain"] == domain.name and r["check"] == "dkim"]
            assert len(dkim) == (1 if domain.dkim.mode == "byo" else rec.EASY_DKIM_TOKENS)
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
    code, out, _ = dns_check("prod", good_dns.address, *zone_args)
    assert code == 0
    assert f"DNS check of prod ({good_dns.address})" in out
    fleet = dns_data.fleets["prod"]
    assert all(d.name in out for t in fleet.tenants for d in t.domains)
    assert "✓ ok" in out and "Not ok" not in out and out.rstrip().endswith("results: 37 ok"[-5:])


# --- broken variants: each fails exactly its record -------------------------------------------------

def _remove_easy_cname(zone: Zone, fleet: Fleet, data: DnsTestData) -> tuple[str, str, str]:
    domain = easy(fleet)
    record = rec.easy_dkim_records(domain.name, easy_dkim_tokens(domain.name), 300)[1]
    zone.set(record.name, "CNAME")
    return domain.name, "dkim", record.name


def _remove_byo_txt(zone: Zone, fleet: Fleet, data: DnsTestData) -> tuple[str, str, str]:
    domain = byo(fleet)
    zone.set(rec.byo_dkim_name(domain), "TXT")
    return domain.name, "dkim", rec.byo_dkim_name(domain)


def _other_byo_key(zone: Zone, fleet: Fleet, data: DnsTestData) -> tuple[str, str, str]:
    domain = byo(fleet)
    zone.set(rec.byo_dkim_name(domain), "TXT", rec.byo_dkim_record(domain, public_pem(data.other_key), 300).value)
    return domain.name, "dkim", rec.byo_dkim_name(domain)


def _two_spf_records(zone: Zone, fleet: Fleet, data: DnsTestData) -> tuple[str, str, str]:
    domain = with_spf(fleet)
    zone.add(domain.name, "TXT", "v=spf1 ip4:192.0.2.0/24 -all")
    return domain.name, "spf", domain.name


def _eleven_lookups(zone: Zone, fleet: Fleet, data: DnsTestData) -> tuple[str, str, str]:
    """The fleet's record has 2 lookups (amazonses.com and its own include); the include grows to 12."""
    domain = with_spf(fleet)
    target = domain.spf.include[0]  # type: ignore[union-attr]
    host, mx = f"host.{target}", f"mx.{target}"
    zone.add(host, "A", "192.0.2.1")
    zone.add(mx, "MX", f"10 {host}")
    zone.set(target, "TXT", f"v=spf1 include:l1.{target} include:l2.{target} -all")           # 2 → 4
    zone.set(f"l1.{target}", "TXT", f"v=spf1 a:{host} mx:{mx} include:l3.{target} ~all")      # → 7
    zone.set(f"l3.{target}", "TXT", f"v=spf1 a:{host} mx:{mx} ~all")                          # → 9
    zone.set(f"l2.{target}", "TXT", f"v=spf1 a:{host} exists:{host} mx:{mx} ~all")            # → 12
    return domain.name, "spf-lookups", domain.name


def _three_void_lookups(zone: Zone, fleet: Fleet, data: DnsTestData) -> tuple[str, str, str]:
    domain = with_spf(fleet)
    target = domain.spf.include[0]  # type: ignore[union-attr]
    # two names that do not exist (NXDOMAIN) and one that has no A/AAAA (NODATA): 3 voids, 5 lookups
    zone.set(target, "TXT", f"v=spf1 a:gone1.{target} mx:gone2.{target} a:{target} ~all")
    return domain.name, "spf-void-lookups", domain.name


def _dmarc_syntax_error(zone: Zone, fleet: Fleet, data: DnsTestData) -> tuple[str, str, str]:
    domain = easy(fleet)
    name = f"_dmarc.{domain.name}"
    zone.set(name, "TXT", zone.get(name, "TXT")[0].replace("v=DMARC1;", "v=DMARC1"))  # a missing ";"
    return domain.name, "dmarc", name


def _dmarc_weaker_policy(zone: Zone, fleet: Fleet, data: DnsTestData) -> tuple[str, str, str]:
    domain = _domain(fleet, lambda d: d.dmarc is not None and d.dmarc.policy != "none")
    name = f"_dmarc.{domain.name}"
    zone.set(name, "TXT", zone.get(name, "TXT")[0].replace(f"p={domain.dmarc.policy}", "p=none"))  # type: ignore
    return domain.name, "dmarc", name


def _mail_from_mx_elsewhere(zone: Zone, fleet: Fleet, data: DnsTestData) -> tuple[str, str, str]:
    domain = easy(fleet)
    zone.set(domain.mail_from, "MX", "10 feedback-smtp.us-east-1.amazonses.com")  # type: ignore[arg-type]
    return domain.name, "mail-from-mx", domain.mail_from  # type: ignore[return-value]


def _ptr_elsewhere(zone: Zone, fleet: Fleet, data: DnsTestData) -> tuple[str, str, str]:
    address, _ = ip_of(fleet, 4)
    reverse = ipaddress.ip_address(address).reverse_pointer
    zone.set(reverse, "PTR", "mta9.elsewhere.example.com")
    return address, "ptr", reverse


def _a_elsewhere(zone: Zone, fleet: Fleet, data: DnsTestData) -> tuple[str, str, str]:
    address, hostname = ip_of(fleet, 4, 1)
    zone.set(hostname, "A", "203.0.113.99")
    return address, "fcrdns", hostname


def _aaaa_elsewhere(zone: Zone, fleet: Fleet, data: DnsTestData) -> tuple[str, str, str]:
    address, hostname = ip_of(fleet, 6)
    zone.set(hostname, "AAAA", "2001:db8:ffff::99")
    return address, "fcrdns", hostname


VARIANTS = {
    "easy-dkim-cname-removed": _remove_easy_cname,
    "byodkim-txt-removed": _remove_byo_txt,
    "byodkim-other-key": _other_byo_key,
    "two-spf-records": _two_spf_records,
    "spf-over-10-lookups": _eleven_lookups,
    "spf-3-void-lookups": _three_void_lookups,
    "dmarc-syntax-error": _dmarc_syntax_error,
    "dmarc-weaker-policy": _dmarc_weaker_policy,
    "mail-from-mx-elsewhere": _mail_from_mx_elsewhere,
    "ptr-elsewhere": _ptr_elsewhere,
    "a-not-the-ip": _a_elsewhere,
    "aaaa-not-the-ip": _aaaa_elsewhere,
}


@pytest.fixture(scope="module")
def variants(dns_data: DnsTestData, tmp_path_factory: pytest.TempPathFactory,
             ) -> Iterator[dict[str, tuple[KnotServer, tuple[str, str, str]]]]:
    """One knotd per broken variant, all started at once (each mostly waits to be ready)."""
    built = {}
    for name, mutate in VARIANTS.items():
        zone = dns_data.zone.copy()
        broken = mutate(zone, dns_data.fleets["prod"], dns_data)
        built[name] = (KnotServer(zone, tmp_path_factory.mktemp(f"knot-{name}")), broken)
    try:
        KnotServer.start_all(server for server, _ in built.values())
    except RuntimeError as err:
        pytest.fail(str(err), pytrace=False)
    yield built
    for server, _ in built.values():
        server.stop()


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_broken_record_fails_its_check_and_nothing_else(
        variant: str, dns_data: DnsTestData, variants: dict[str, tuple[KnotServer, tuple[str, str, str]]]) -> None:
    server, broken = variants[variant]
    code, results = json_check("prod", server.address, "--outputs", str(dns_data.outputs_files["prod"]))
    assert not_ok(results) == {(*broken, "fail")}
    assert code == 1
    failed = next(r for r in results if r["status"] == "fail")
    assert failed["message"]
    if variant == "two-spf-records":
        skipped = {r["check"] for r in results if r["status"] == "skip"}
        assert skipped == {"spf-lookups", "spf-void-lookups"}
    if variant == "spf-over-10-lookups":
        assert failed["message"].startswith("12 DNS-querying terms, over the limit of 10")
    if variant == "spf-3-void-lookups":
        assert failed["message"].startswith("3 void lookups, over the limit of 2")
        assert "NXDOMAIN" in failed["message"] and "no A record" in failed["message"]


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
