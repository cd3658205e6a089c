"""Every From address passes DMARC on every route, as an independent receiver judges it.

For each sender From address of stacks/prod and stacks/dev and each route its tenant's mail can
take (:mod:`mailplane.model.routes`), the test builds the message as the sender composes it, signs
it as that route would, and hands it with the sending IP, the HELO name and the MAIL FROM to
``authheaders`` (dkimpy, pyspf and its own DMARC step: code nobody here wrote), which resolves
against the zone mailplane publishes for the stacks, served by Knot on loopback.

- PowerMTA: one case per IP of the route.  The key is chosen from the rendered config as PowerMTA
  chooses it (the ``domain-key`` lines of that IP's VMTA, in file order, the first whose domain is
  the From domain or a parent of it; a VMTA has no global fallback here, since mailplane renders
  none) and read from the key file the Ansible role writes (``dkim_private_keys[domain]`` of the
  stack outputs).  The envelope sender is what the sender hands PowerMTA.  HELO is the IP's PTR name.
- SES: a BYODKIM domain is signed with its key and selector; an Easy DKIM domain carries no
  signature we can make (SES holds that key), so SPF alignment through the domain's MAIL FROM must
  carry DMARC.  The sending IP is a test address inside the stand-in ``amazonses.com`` SPF record.

Then one record removed or one key swapped makes exactly the matching verdict fail.
"""

from __future__ import annotations

import dataclasses
import datetime
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import dkim
import dns.resolver
import pytest
from authheaders import authenticate_message
from dns_server import DnsTestData, KnotServer, Zone
from dns_server import public_pem as public_pem_of

from mailplane.model import records as rec
from mailplane.model.routes import Route, route_auth, tenant_routes
from mailplane.model.stack import Fleet
from mailplane.model.tenant import Domain, Tenant
from mailplane.mta.render import render_host
from mailplane.sender.core.compose import build_message, envelope_sender, wire_bytes
from mailplane.sender.core.gates import Granted
from mailplane.sender.core.messages import Message

DAY = datetime.date(2026, 12, 3)
SES_TEST_ADDRESS = "54.240.0.10"
"""Inside ``ip4:54.240.0.0/18`` of the stand-in ``amazonses.com`` SPF record the test zone serves."""
SES_HELO = "e240-10.smtp-out.eu-north-1.amazonses.com"
POWERMTA_SIGNED = ("from", "sender", "reply-to", "to", "cc", "subject", "date", "message-id", "in-reply-to",
                   "references", "mime-version", "content-type", "content-transfer-encoding", "list-id",
                   "list-unsubscribe", "list-unsubscribe-post")
"""Headers PowerMTA always signs when present (its DKIM defaults: rsa-sha256, relaxed/relaxed)."""


@dataclass(frozen=True)
class Case:
    """One From address on one route, through one sending IP."""

    stack: str
    tenant: Tenant
    domain: Domain
    address: str
    route: Route
    ip: str
    helo: str

    @property
    def id(self) -> str:
        via = "ses" if self.route.transport == "ses" else self.ip
        return f"{self.stack}:{self.address}:{self.route.stream}:{via}"


def from_addresses(tenant: Tenant) -> Iterator[str]:
    for sender in tenant.senders:
        for address in sender.from_:
            yield address.replace("*@", "hello@")


def cases(data: DnsTestData) -> list[Case]:
    out = []
    for stack, fleet in data.fleets.items():
        for tenant in fleet.tenants:
            for address in from_addresses(tenant):
                domain = fleet.domains[address.rpartition("@")[2]][1]
                for route in tenant_routes(tenant):
                    if route.transport == "ses":
                        out.append(Case(stack, tenant, domain, address, route, SES_TEST_ADDRESS, SES_HELO))
                    for ip in route.ips:
                        out.append(Case(stack, tenant, domain, address, route, ip.address, ip.hostname))
    return out


def queued(case: Case) -> Message:
    payload = {"subject": "Your order has shipped", "text": "It is on its way.\n", "html": "<p>It is on its way.</p>"}
    return Message(id=4711, tenant=case.tenant.name, sender=case.tenant.senders[0].name, stream=case.route.stream,
                   from_addr=case.address, to_addr="jane@receiver.example.net", payload=payload,
                   idempotency_key=None, state="sending", attempts=0, next_attempt_at=0.0, claimed_by=None,
                   claimed_until=None, transport=None, ip=None, last_error=None)


def powermta_key(fleet: Fleet, case: Case) -> tuple[str, str, str]:
    """(selector, domain, key file) PowerMTA signs ``case``'s mail with, read off the rendered config."""
    vmta = next(ip for ip in case.route.ips if ip.address == case.ip)
    config = render_host(fleet, vmta.host, DAY)
    name = next(m.group(1) for m in re.finditer(r"<virtual-mta (\S+)>\n  smtp-source-host (\S+) ", config)
                if m.group(2) == case.ip)
    block = config.split(f"<virtual-mta {name}>\n", 1)[1].split("</virtual-mta>", 1)[0]
    identity = case.address.rpartition("@")[2]
    for line in re.findall(r"^  domain-key (.+)$", block, re.M):
        selector, key_domain, key_file = (part.strip() for part in line.split(","))
        if key_domain == "*" or identity == key_domain or identity.endswith("." + key_domain):
            return selector, identity if key_domain == "*" else key_domain, key_file
    raise AssertionError(f"no domain-key of VMTA {name} matches {identity}: PowerMTA would send it unsigned")


def compose(data: DnsTestData, case: Case) -> tuple[bytes, str]:
    """The signed message and its MAIL FROM, as the route hands them to the receiver."""
    fleet = data.fleets[case.stack]
    message = queued(case)
    public_url = fleet.settings.sender.public_url if fleet.settings.sender else "https://mailplane.example.com"
    if case.route.transport == "pmta":
        granted = Granted("pmta", case.ip, "vmta", DAY)
        raw = wire_bytes(build_message(message, granted, public_url=public_url, unsubscribe_key="k" * 32))
        selector, key_domain, key_file = powermta_key(fleet, case)
        # the role writes dkim_private_keys[domain] to <dkim_dir>/<selector>.<domain>.pem
        assert PurePosixPath(key_file).name == f"{selector}.{key_domain}.pem"
        pem = data.outputs[case.stack]["dkim_private_keys"][key_domain]  # type: ignore[index]
        return sign(raw, selector, key_domain, pem), envelope_sender(message, fleet, case.ip)
    granted = Granted("ses", None, None, DAY)
    raw = wire_bytes(build_message(message, granted, public_url=public_url, unsubscribe_key="k" * 32))
    mail_from = f"0110019a-bounce@{case.domain.mail_from or 'eu-north-1.amazonses.com'}"
    if case.domain.dkim.mode == "byo":
        assert case.domain.dkim.selector
        raw = sign(raw, case.domain.dkim.selector, case.domain.name, data.keys[case.domain.name])
    return raw, mail_from


def sign(raw: bytes, selector: str, domain: str, pem: str) -> bytes:
    present = {line.split(b":", 1)[0].strip().lower().decode() for line in raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
               if line and line[:1] not in b" \t"}
    headers = [h.encode() for h in POWERMTA_SIGNED if h in present]
    signature = dkim.sign(raw, selector.encode(), domain.encode(), pem.encode(), include_headers=headers,
                          canonicalize=(b"relaxed", b"relaxed"))
    return signature + raw


def verdicts(raw: bytes, case: Case, mail_from: str) -> dict[str, str]:
    header = authenticate_message(raw, "mx.receiver.example.net", spf=True, dkim=True, dmarc=True, ip=case.ip,
                                  mail_from=mail_from, helo=case.helo)
    return dict(re.findall(r"(?:: |; )(spf|dkim|dmarc)=(\w+)", header))


@pytest.fixture
def resolve_at() -> Iterator[Callable[[KnotServer], None]]:
    """Point dnspython's default resolver (which pyspf and dkimpy use) at a test server; restore it after."""
    saved = dns.resolver.default_resolver

    def point(server: KnotServer) -> None:
        resolver = dns.resolver.Resolver(configure=False)
        host, port = server.address.rsplit(":", 1)
        resolver.nameservers = [host]
        resolver.port = int(port)
        resolver.lifetime = 5.0
        dns.resolver.default_resolver = resolver

    yield point
    dns.resolver.default_resolver = saved


def judge(data: DnsTestData, case: Case) -> tuple[dict[str, str], str]:
    raw, mail_from = compose(data, case)
    return verdicts(raw, case, mail_from), mail_from


def test_every_from_address_passes_dmarc_on_every_route(dns_data: DnsTestData, good_dns: KnotServer,
                                                        resolve_at: Callable[[KnotServer], None]) -> None:
    resolve_at(good_dns)
    all_cases = cases(dns_data)
    assert {c.route.transport for c in all_cases} == {"ses", "pmta"}
    assert {(c.route.transport, c.domain.dkim.mode) for c in all_cases} == {
        ("ses", "easy"), ("ses", "byo"), ("pmta", "easy"), ("pmta", "byo")}
    failures = []
    for case in all_cases:
        got, mail_from = judge(dns_data, case)
        # Easy DKIM through SES: the test cannot make SES's signature, and authheaders calls an unsigned
        # message dkim=fail; SPF through the MAIL FROM carries DMARC there.
        unsigned = case.route.transport == "ses" and case.domain.dkim.mode == "easy"
        want = {"spf": "pass", "dmarc": "pass", "dkim": "fail" if unsigned else "pass"}
        if got != want:
            failures.append(f"{case.id} (MAIL FROM {mail_from}): {got}")
    assert not failures, "\n".join(failures)


def _one(data: DnsTestData, **where: str) -> Case:
    found = [c for c in cases(data) if all(str(getattr(c, k) if k != "transport" else c.route.transport) == v
                                          for k, v in where.items())]
    assert found, where
    return found[0]


def _serve_broken(serve_zone: Callable[[Zone], KnotServer], data: DnsTestData,
                  change: Callable[[Zone], None]) -> KnotServer:
    zone = data.zone.copy()
    change(zone)
    return serve_zone(zone)


def test_removing_a_return_paths_spf_fails_spf_of_that_route_only(
        dns_data: DnsTestData, serve_zone: Callable[[Zone], KnotServer],
        resolve_at: Callable[[KnotServer], None]) -> None:
    case = _one(dns_data, address="no-reply@mail1.example.com", transport="pmta")
    other = _one(dns_data, address="hello@news.example.com", transport="pmta")
    rp = route_auth(case.route, case.domain).return_path
    resolve_at(_serve_broken(serve_zone, dns_data, lambda z: z.set(rp, "TXT")))
    got, _ = judge(dns_data, case)
    assert got["spf"] != "pass" and got["dkim"] == "pass" and got["dmarc"] == "pass"  # DKIM still carries it
    assert judge(dns_data, other)[0] == {"spf": "pass", "dkim": "pass", "dmarc": "pass"}


def test_swapping_powermtas_key_of_an_easy_dkim_domain_fails_its_dkim(
        dns_data: DnsTestData, serve_zone: Callable[[Zone], KnotServer],
        resolve_at: Callable[[KnotServer], None]) -> None:
    case = _one(dns_data, address="news@initech.example.org", transport="pmta")
    wrong = rec.powermta_dkim_record(case.domain, public_pem_of(dns_data.other_key), 300)
    resolve_at(_serve_broken(serve_zone, dns_data, lambda z: z.set(wrong.name, "TXT", wrong.value)))
    got, _ = judge(dns_data, case)
    assert got["dkim"] != "pass" and got["spf"] == "pass"


def test_without_dkim_and_spf_powermta_mail_fails_dmarc(
        dns_data: DnsTestData, serve_zone: Callable[[Zone], KnotServer],
        resolve_at: Callable[[KnotServer], None]) -> None:
    case = _one(dns_data, address="news@initech.example.org", transport="pmta")
    rp = route_auth(case.route, case.domain).return_path

    def break_both(zone: Zone) -> None:
        zone.set(rec.powermta_dkim_name(case.domain), "TXT")
        zone.set(rp, "TXT")

    resolve_at(_serve_broken(serve_zone, dns_data, break_both))
    got, _ = judge(dns_data, case)
    assert got["dmarc"] == "fail", got


def test_easy_dkim_through_ses_rests_on_the_mail_from_spf(
        dns_data: DnsTestData, serve_zone: Callable[[Zone], KnotServer],
        resolve_at: Callable[[KnotServer], None]) -> None:
    case = _one(dns_data, address="news@initech.example.org", transport="ses")
    assert case.domain.mail_from
    resolve_at(_serve_broken(serve_zone, dns_data, lambda z: z.set(case.domain.mail_from or "", "TXT")))
    got, _ = judge(dns_data, case)
    assert got["spf"] != "pass" and got["dmarc"] == "fail", got


def test_byodkim_through_ses_needs_its_published_key(
        dns_data: DnsTestData, serve_zone: Callable[[Zone], KnotServer],
        resolve_at: Callable[[KnotServer], None]) -> None:
    case = _one(dns_data, address="billing@globex.example.net", transport="ses")
    wrong = rec.byo_dkim_record(case.domain, public_pem_of(dns_data.other_key), 300)
    resolve_at(_serve_broken(serve_zone, dns_data, lambda z: z.set(wrong.name, "TXT", wrong.value)))
    got, _ = judge(dns_data, case)
    assert got["dkim"] != "pass" and got["spf"] == "pass" and got["dmarc"] == "pass"


def test_mail_from_the_from_address_itself_would_fail_spf_through_powermta(
        dns_data: DnsTestData, good_dns: KnotServer, resolve_at: Callable[[KnotServer], None]) -> None:
    """What mailplane did before routes had return paths: MAIL FROM = From, and no SPF there lists the IP."""
    resolve_at(good_dns)
    case = _one(dns_data, address="no-reply@mail1.example.com", transport="pmta")
    raw, _ = compose(dns_data, case)
    assert verdicts(raw, case, case.address)["spf"] == "none"


def test_verdicts_of_prod_for_the_record(dns_data: DnsTestData, good_dns: KnotServer,
                                         resolve_at: Callable[[KnotServer], None],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """Prints the receiver's verdict per From address and route (``pytest -s`` shows it)."""
    resolve_at(good_dns)
    lines = []
    for case in cases(dns_data):
        got, mail_from = judge(dns_data, case)
        lines.append(f"{case.id:70} MAIL FROM {mail_from:55} " + " ".join(f"{k}={v}" for k, v in sorted(got.items())))
    with capsys.disabled():
        print("\n" + "\n".join(lines))
    assert all("dmarc=pass" in line for line in lines)
    assert len(lines) == len({line.split()[0] for line in lines}), "one line per case"


def test_cases_cover_every_route_of_every_sender() -> None:
    """The case list itself: every (From address, route) pair of prod, each IP of a PowerMTA route."""
    from mailplane.model.loader import load_stack

    fleet = load_stack(Path(__file__).resolve().parents[2] / "stacks" / "prod")
    data = dataclasses.make_dataclass("D", [("fleets", dict)])({"prod": fleet})
    got = {(c.address, c.route.stream, c.ip) for c in cases(data)}  # type: ignore[arg-type]
    assert ("no-reply@mail1.example.com", "transactional", "203.0.113.21") in got
    assert ("hello@news.example.com", "marketing", "203.0.113.23") in got
    assert ("news@initech.example.org", "transactional", SES_TEST_ADDRESS) in got
    assert ("invoices@globex.example.net", "marketing", SES_TEST_ADDRESS) in got
    assert len(got) == 2 * 3 + 1 * 3 + 2 * 3
